#!/bin/sh
# The compose `trainer` service: train and publish the default models (the two MNIST classifiers
# scripts/quickstart.sh starts with) into the shared model repository, then exit so that the
# servers can start.
#   REPOSITORY  model repository (default /models, the named volume)
#   MODELS      space-separated KIND:NAME pairs (default "softmax:mnist-softmax mlp:mnist-mlp");
#               KIND is an MNIST classifier architecture (softmax, mlp, cnn) or another task:
#               tagger, caption (multi-digit canvases), translate (the toy grammar), e.g.
#               "mlp:mnist-mlp caption:captioner translate:translator". Each is trained from
#               its shipped run config (training/configs/<task>-<variant>.yaml in the image,
#               also printed by `python -m training <task> --help`)
#   DATA_DIR    an MNIST IDX folder for the classifiers, tagger and captioner; unset: the digits
#               bundled with the trainer
#   TRAIN_ARGS  extra options for every run, e.g. "--epochs 5" (each overrides one config key)
#   CONFIG_DIR  the run configs (default: the ones shipped in the installed training package)
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

# every kind is checked before anything trains
for pair in $MODELS; do
    case ${pair%%:*} in
        softmax|mlp|cnn|tagger|caption|translate) ;;
        *) echo "MODELS: unknown kind '${pair%%:*}' in '$pair' (softmax, mlp, cnn, tagger," \
                "caption or translate)" >&2; exit 2 ;;
    esac
done

CONFIG_DIR=${CONFIG_DIR:-$("$PYTHON" -c 'import training.run_config as c; print(c.PRESETS)')}

published() {
    for manifest in "$REPOSITORY/$1"/[0-9]*/manifest.json; do
        [ -f "$manifest" ] && return 0
    done
    return 1
}

for pair in $MODELS; do
    kind=${pair%%:*}
    name=${pair#*:}
    case $kind in
        softmax|mlp|cnn) task=mnist; config=mnist-$kind; data=${DATA_DIR:-} ;;
        translate) task=translate; config=translate-toy; data= ;;  # its --data-dir: TSV files
        *) task=$kind; config=$kind-multidigit; data=${DATA_DIR:-} ;;
    esac
    if [ "${RETRAIN:-0}" != 1 ] && published "$name"; then
        echo "== $name: already published in $REPOSITORY, kept (RETRAIN=1 trains a new version)"
        continue
    fi
    echo "== $name: training $task from $config.yaml ($PROCESSES process(es))"
    if [ "$PROCESSES" -gt 1 ]; then
        set -- "$PYTHON" -m torch.distributed.run --standalone --nproc_per_node="$PROCESSES"
    else
        set -- "$PYTHON"
    fi
    # TRAIN_ARGS and the data option are split into words on purpose: they carry several words
    # shellcheck disable=SC2086
    "$@" -m training "$task" --config "$CONFIG_DIR/$config.yaml" --name "$name" \
        --repository "$REPOSITORY" \
        ${data:+--data-dir "$data"} ${TRAIN_ARGS:-}
done
