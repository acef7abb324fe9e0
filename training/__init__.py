"""Offline training: data sources, models, the trainer loop, metrics and ONNX export.

Kept free of heavy imports so that torch-free tools (``python -m training.evaluate``) can import
``training.data`` and ``training.metrics`` where only numpy and onnxruntime are installed.
"""
