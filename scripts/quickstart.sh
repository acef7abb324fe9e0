#!/usr/bin/env bash
# The main job end to end: train small models of every kind on the bundled data (two MNIST
# classifiers, a multi-label tagger and an attention captioner on multi-digit canvases, an
# attention translator on the toy Spanish->English grammar), export them to the model
# repository, serve them over gRPC and REST, query each with the client (and one with curl),
# shut down. About 3 min on 2 cores.
#   PYTHON=.venv/bin/python  REPOSITORY=exported  PORT=8001  HTTP_PORT=8000
#   RUNS=runs (checkpoints, samples)
#   DATA_DIR=<MNIST IDX folder, optional>
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
REPOSITORY=${REPOSITORY:-exported}
PORT=${PORT:-8001}
HTTP_PORT=${HTTP_PORT:-8000}
RUNS=${RUNS:-runs}
TARGET=127.0.0.1:$PORT
DATA=()
[ -n "${DATA_DIR:-}" ] && DATA=(--data-dir "$DATA_DIR")

echo "== training (bundled MNIST digits unless DATA_DIR is set), from the shipped run configs"
CONFIGS=training/configs
train() {  # TASK CONFIG NAME [options]: one run, its config from $CONFIGS
    local task=$1 config=$2 name=$3
    shift 3
    "$PY" -m training "$task" --config "$CONFIGS/$config.yaml" --name "$name" \
        --repository "$REPOSITORY" --checkpoint-dir "$RUNS/$name" "$@"
}
train mnist mnist-softmax mnist-softmax "${DATA[@]}"
train mnist mnist-mlp mnist-mlp "${DATA[@]}"
# smaller than the configs' runs, to keep the demonstration short
CANVASES=(--train-canvases 8000 --val-canvases 500 --test-canvases 500)
train tagger tagger-multidigit tagger-multidigit --quiet "${CANVASES[@]}" --epochs 3 "${DATA[@]}"
train caption caption-multidigit caption-multidigit --quiet "${CANVASES[@]}" --epochs 5 \
    "${DATA[@]}"
train translate translate-toy translate-toy --quiet --epochs 3

echo "== serving $REPOSITORY on $TARGET"
"$PY" -m serving --repository "$REPOSITORY" --host 127.0.0.1 --port "$PORT" \
    --http-port "$HTTP_PORT" &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  "$PY" -m serving.client --target "$TARGET" --timeout 1 health 2>/dev/null | grep -q '"SERVING"' && break
  sleep 0.2
done

echo "== querying"
samples=$RUNS/quickstart
rm -rf "$samples"
"$PY" -m training.data.samples --out "$samples/digits" --count 3 "${DATA[@]}"
"$PY" -m training.data.samples --out "$samples/canvases" --count 2 --canvases "${DATA[@]}"
"$PY" -m serving.client --target "$TARGET" models
"$PY" -m serving.client --target "$TARGET" classify --model mnist-mlp --top-k 3 \
    "$samples"/digits/*.png
"$PY" -m serving.client --target "$TARGET" tag --model tagger-multidigit "$samples"/canvases/*.png
"$PY" -m serving.client --target "$TARGET" caption --model caption-multidigit \
    --plot "$samples/caption-attention.png" "$samples"/canvases/*.png
"$PY" -m serving.client --target "$TARGET" translate --model translate-toy \
    --plot "$samples/translation-attention.png" "los caballos no compran las manzanas negras"
echo "== the same translator over REST (KServe v2 / Open Inference Protocol)"
curl -sS --fail-with-body "http://127.0.0.1:$HTTP_PORT/v2/models/translate-toy/infer" -d '{
  "inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["el gato negro"]}],
  "outputs": [{"name": "translation"}]}'
echo

echo "== stopping the server (SIGTERM drains in-flight calls)"
kill -TERM "$server"
wait "$server"
trap - EXIT
echo "done: the models are in $REPOSITORY/, the sample images and attention plots in $samples/"
