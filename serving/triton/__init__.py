"""The Triton form of a model repository: what NVIDIA Triton serves of ours, and how.

`python -m serving.triton export --repository exported --out triton-repo` writes a Triton model
repository. Classifiers and taggers become Triton's ONNX-platform model (the graph as it is,
for Triton images with the onnxruntime backend) or, with `--form python`, a python-backend
model; translators and captioners are always python-backend models. A python-backend model
carries its version folder verbatim (manifest, graphs, tokenizer files, sha256s) and runs this
package's own runner over it (serving.triton.backend), so Triton answers what this server
answers, with Triton's dynamic batching in front.

layout (python form)                       layout (onnx form)
  <name>/config.pbtxt                        <name>/config.pbtxt
  <name>/labels.txt     (classifier, tagger)  <name>/labels.txt
  <name>/<v>/model.py   (serving/triton/model.py)  <name>/<v>/model.onnx, manifest.json
  <name>/<v>/smallserve/  (the version folder)
"""
