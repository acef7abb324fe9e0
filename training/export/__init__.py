"""ONNX export and the PyTorch/onnxruntime parity gate."""
