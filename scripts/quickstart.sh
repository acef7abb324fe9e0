#!/usr/bin/env bash
# The main job end to end: train two small MNIST classifiers on the bundled digits, export them
# to the model repository, serve them over gRPC, query them with the client, shut down.
#   PYTHON=.venv/bin/python  REPOSITORY=exported  PORT=8001  DATA_DIR=<IDX folder, optional>
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
REPOSITORY=${REPOSITORY:-exported}
PORT=${PORT:-8001}
TARGET=127.0.0.1:$PORT
DATA=()
[ -n "${DATA_DIR:-}" ] && DATA=(--data-dir "$DATA_DIR")

echo "== training (bundled MNIST digits unless DATA_DIR is set)"
"$PY" -m training mnist --arch softmax --name mnist-softmax --repository "$REPOSITORY" "${DATA[@]}"
"$PY" -m training mnist --arch mlp --name mnist-mlp --repository "$REPOSITORY" "${DATA[@]}"

echo "== serving $REPOSITORY on $TARGET"
"$PY" -m serving --repository "$REPOSITORY" --host 127.0.0.1 --port "$PORT" &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  "$PY" -m serving.client --target "$TARGET" --timeout 1 health 2>/dev/null | grep -q '"SERVING"' && break
  sleep 0.2
done

echo "== querying"
samples=runs/quickstart
"$PY" -m training.data.samples --out "$samples" --count 3 "${DATA[@]}"
"$PY" -m serving.client --target "$TARGET" models
"$PY" -m serving.client --target "$TARGET" classify --model mnist-mlp --top-k 3 "$samples"/*.png

echo "== stopping the server (SIGTERM drains in-flight calls)"
kill -TERM "$server"
wait "$server"
trap - EXIT
echo "done: the models are in $REPOSITORY/, the sample digits in $samples/"
