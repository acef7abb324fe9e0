#!/bin/sh
# The compose `trainer` service: train and publish the default models (the two MNIST classifiers
# scripts/quickstart.sh starts with) into the shared model repository, then exit so that the
# servers can start.
#   REPOSITORY  model repository (default /models, the named volume)
#   MODELS      space-separated ARCH:NAME pairs (default "softmax:mnist-softmax mlp:mnist-mlp")
#   DATA_DIR    an MNIST IDX folder; unset: the digits bundled with the trainer
#   TRAIN_ARGS  extra options for every `python -m training mnist` run, e.g. "--epochs 5"
#   TRAIN_PROCESSES  above 1: data-parallel training under torchrun with that many processes
#               (DDP, gloo on CPU); the published model is the same kind either way
#   RETRAIN     1: publish a new version even when the model already has one. The default (0)
#               keeps a published model, so a second `docker compose up` does not retrain.
set -eu
REPOSITORY=${REPOSITORY:-/models}
MODELS=${MODELS:-softmax:mnist-softmax mlp:mnist-mlp}
PYTHON=${PYTHON:-python}
PROCESSES=${TRAIN_PROCESSES:-1}
case $PROCESSES in
    ''|*[!0-9]*) echo "TRAIN_PROCESSES must be a positive integer, got '$PROCESSES'" >&2; exit 2 ;;
esac

published() {
    for manifest in "$REPOSITORY/$1"/[0-9]*/manifest.json; do
        [ -f "$manifest" ] && return 0
    done
    return 1
}

for pair in $MODELS; do
    arch=${pair%%:*}
    name=${pair#*:}
    if [ "${RETRAIN:-0}" != 1 ] && published "$name"; then
        echo "== $name: already published in $REPOSITORY, kept (RETRAIN=1 trains a new version)"
        continue
    fi
    echo "== $name: training --arch $arch ($PROCESSES process(es))"
    if [ "$PROCESSES" -gt 1 ]; then
        set -- "$PYTHON" -m torch.distributed.run --standalone --nproc_per_node="$PROCESSES"
    else
        set -- "$PYTHON"
    fi
    # TRAIN_ARGS and DATA_DIR are split into words on purpose: they carry several options
    # shellcheck disable=SC2086
    "$@" -m training mnist --arch "$arch" --name "$name" --repository "$REPOSITORY" \
        ${DATA_DIR:+--data-dir "$DATA_DIR"} ${TRAIN_ARGS:-}
done
