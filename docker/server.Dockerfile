# syntax=docker/dockerfile:1
# The gRPC server on onnxruntime (CPU): serving/ and its runtime requirements, no PyTorch.
#   docker build -f docker/server.Dockerfile -t smallserve-server .
# Configured by SMALLSERVE_* variables (see `python -m serving --help`); the repository is
# expected at /models (a volume written by the trainer image).

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
COPY requirements-serving.txt /tmp/
RUN /opt/venv/bin/pip install --require-virtualenv -r /tmp/requirements-serving.txt
# serving/ alone rather than `pip install .`: the project's metadata requires torch
COPY serving /opt/smallserve/serving
COPY docker/healthcheck.py /opt/smallserve/healthcheck.py
# the final image runs as a user who cannot write here, so compile now
RUN /opt/venv/bin/python -m compileall -q /opt/smallserve

FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 smallserve \
    && useradd --system --uid 10001 --gid smallserve --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin smallserve \
    && install -d -o smallserve -g smallserve /models
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/smallserve /opt/smallserve
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/opt/smallserve \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SMALLSERVE_REPOSITORY=/models \
    SMALLSERVE_HOST=0.0.0.0 \
    SMALLSERVE_PORT=8001 \
    SMALLSERVE_HTTP_PORT=8000 \
    SMALLSERVE_PROVIDERS=cpu \
    SMALLSERVE_LOG_FORMAT=json
# numeric, so Kubernetes runAsNonRoot can verify it
USER 10001:10001
WORKDIR /opt/smallserve
EXPOSE 8000 8001 8002
# SERVING only once every model is loaded and warmed up; start-period covers that
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "/opt/smallserve/healthcheck.py"]
# settings come from the SMALLSERVE_* variables above (flags would override them)
ENTRYPOINT ["python", "-m", "serving"]
