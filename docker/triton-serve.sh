#!/bin/sh
# The triton image's command (compose profile `triton`): write the Triton form of the model
# repository (python -m serving.triton export), then run tritonserver on it; arguments go to
# tritonserver. New versions in the repository are served after a restart.
#   SMALLSERVE_REPOSITORY    this server's model repository (default /models)
#   TRITON_MODEL_REPOSITORY  where the Triton form is written (default /tmp/triton-repo)
#   TRITON_FORM              classifiers and taggers as python-backend models running this
#                            server's runner (python, the default: the same answers and the
#                            same UINT8 pixel contract as the server) or on Triton's
#                            onnxruntime backend (onnx: the graph's FP32 input)
set -eu
REPOSITORY=${SMALLSERVE_REPOSITORY:-/models}
TRITON_REPOSITORY=${TRITON_MODEL_REPOSITORY:-/tmp/triton-repo}
FORM=${TRITON_FORM:-python}
PYTHON=${PYTHON:-python}
"$PYTHON" -m serving.triton export --repository "$REPOSITORY" --out "$TRITON_REPOSITORY" \
    --form "$FORM"
exec "${TRITONSERVER:-tritonserver}" --model-repository "$TRITON_REPOSITORY" "$@"
