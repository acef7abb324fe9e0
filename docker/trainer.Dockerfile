# syntax=docker/dockerfile:1
# The trainer: PyTorch (CPU build) + the project; `python -m training <task> [options]`.
#   docker build -f docker/trainer.Dockerfile -t smallserve-trainer .
#   docker run -v models:/models smallserve-trainer mnist --arch mlp --repository /models
#   docker run -v models:/models -v $PWD/run.yaml:/run.yaml smallserve-trainer mnist \
#       --config /run.yaml --repository /models
# docker-compose.yml runs docker/train-defaults.sh instead, which publishes the default models.

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
# torch first and from PyTorch's CPU index only: PyPI's torch wheel pulls ~3 GB of CUDA libraries.
# A layer of its own, kept in the cache while the other requirements change.
# hadolint ignore=DL3059
RUN /opt/venv/bin/pip install --require-virtualenv torch==2.13.0 \
        --index-url https://download.pytorch.org/whl/cpu
COPY requirements-serving.txt requirements-trainer.txt /tmp/
RUN /opt/venv/bin/pip install --require-virtualenv -r /tmp/requirements-trainer.txt
COPY pyproject.toml README.md /src/
COPY serving /src/serving
# training/ carries the run configs (training/configs/*.yaml, package data), which
# train-defaults runs and `python -m training <task> --config` reads
COPY training /src/training
# every dependency is already pinned above; pip check proves the project's own ranges agree
RUN /opt/venv/bin/pip install --require-virtualenv --no-deps /src \
    && /opt/venv/bin/pip check

FROM ${PYTHON_IMAGE}
# a home directory: matplotlib (via mlxtend) and torch keep caches there
RUN groupadd --system --gid 10001 smallserve \
    && useradd --system --uid 10001 --gid smallserve --create-home --home-dir /home/smallserve \
        --shell /usr/sbin/nologin smallserve \
    && install -d -o smallserve -g smallserve /models
COPY --from=build /opt/venv /opt/venv
COPY --chmod=0755 docker/train-defaults.sh /usr/local/bin/train-defaults
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    REPOSITORY=/models
# /models belongs to this user, so a fresh named volume mounted there does too (Docker copies
# the mount point's ownership into an empty volume) and the non-root servers can read it
USER 10001:10001
WORKDIR /home/smallserve
VOLUME ["/models"]
# a one-shot job, not a service: the check only tells that the interpreter, torch and the
# project still import (rarely: importing torch costs seconds of CPU)
HEALTHCHECK --interval=5m --timeout=30s --start-period=30s --retries=1 \
    CMD ["python", "-c", "import torch, training"]
ENTRYPOINT ["python", "-m", "training"]
CMD ["--help"]
