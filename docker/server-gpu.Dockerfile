# syntax=docker/dockerfile:1
# The gRPC server on onnxruntime's CUDA build: serving/ and its runtime requirements, no PyTorch.
#   docker build -f docker/server-gpu.Dockerfile -t smallserve-server-gpu .
#   docker run --gpus all -v models:/models:ro -p 8001:8001 smallserve-server-gpu
# onnxruntime-gpu 1.31 is built for CUDA 13 + cuDNN 9: the NVIDIA runtime image supplies both.
# That image has no Python 3.11, so uv installs a standalone CPython into /opt/python.

ARG CUDA_IMAGE=nvidia/cuda:13.0.2-cudnn-runtime-ubuntu24.04
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13.8

FROM ${UV_IMAGE} AS uv

FROM ${CUDA_IMAGE} AS build
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_PYTHON_INSTALL_DIR=/opt/python UV_PYTHON_PREFERENCE=only-managed UV_NO_CACHE=1
# the pinned uv release pins the 3.11 patch release it installs
RUN uv venv --python 3.11 /opt/venv
COPY requirements-serving-gpu.txt /tmp/
RUN uv pip install --python /opt/venv/bin/python -r /tmp/requirements-serving-gpu.txt
COPY serving /opt/smallserve/serving
COPY docker/healthcheck.py /opt/smallserve/healthcheck.py
RUN /opt/venv/bin/python -m compileall -q /opt/smallserve

FROM ${CUDA_IMAGE}
RUN groupadd --system --gid 10001 smallserve \
    && useradd --system --uid 10001 --gid smallserve --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin smallserve \
    && install -d -o smallserve -g smallserve /models
# the venv's interpreter is a link into /opt/python: both keep their build-stage paths
COPY --from=build /opt/python /opt/python
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
    SMALLSERVE_PROVIDERS=cuda,cpu \
    SMALLSERVE_LOG_FORMAT=json
USER 10001:10001
WORKDIR /opt/smallserve
EXPOSE 8000 8001 8002
# first CUDA session creation is slow (kernel/JIT caches are cold): a longer start period
HEALTHCHECK --interval=10s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "/opt/smallserve/healthcheck.py"]
ENTRYPOINT ["python", "-m", "serving"]
