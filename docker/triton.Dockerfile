# syntax=docker/dockerfile:1
# NVIDIA Triton serving the Triton form of the model repository (serving.triton): translators
# and captioners as python-backend models running this project's runner, classifiers and taggers
# the same way or on Triton's onnxruntime backend.
#   docker build -f docker/triton.Dockerfile -t smallserve-triton .
#   docker run --shm-size=256m -v models:/models:ro -p 8000:8000 -p 8001:8001 smallserve-triton
# How the python backend finds the serving package: its stub embeds the image's Python, ignores
# PYTHONPATH and takes its prefix from the first `python3` on PATH, so the venv put first on
# PATH below is the python backend's environment: the serving requirements pip-installed into
# it, and serving/ on its path through a .pth file (what an editable install writes).
# 25.xx images: Python 3.12 (the package needs 3.11 or newer; 24.xx have 3.10) and a python
# backend built for numpy 2 (24.10's pybind11 misreads numpy 2 arrays).

ARG TRITON_IMAGE=nvcr.io/nvidia/tritonserver:25.10-py3

FROM ${TRITON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# the image's pip installs into the venv (--python): no ensurepip needed, nothing system-wide
RUN python3 -m venv --without-pip /opt/venv
COPY requirements-serving.txt /tmp/
RUN python3 -m pip --python /opt/venv/bin/python install -r /tmp/requirements-serving.txt
COPY serving /opt/smallserve/serving
COPY docker/triton-serve.sh /opt/smallserve/triton-serve
RUN /opt/venv/bin/python -c "import pathlib, sysconfig; pathlib.Path(sysconfig.get_paths()['purelib'], 'smallserve.pth').write_text('/opt/smallserve\n')" \
    && /opt/venv/bin/python -m compileall -q /opt/smallserve

FROM ${TRITON_IMAGE}
RUN groupadd --system --gid 10001 smallserve \
    && useradd --system --uid 10001 --gid smallserve --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin smallserve
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/smallserve /opt/smallserve
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SMALLSERVE_REPOSITORY=/models \
    TRITON_MODEL_REPOSITORY=/tmp/triton-repo \
    TRITON_FORM=python
# numeric, so Kubernetes runAsNonRoot can verify it
USER 10001:10001
WORKDIR /opt/smallserve
EXPOSE 8000 8001 8002
# Triton's own readiness: every model loaded
HEALTHCHECK --interval=10s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8000/v2/health/ready', timeout=4)"]
# NVIDIA's entrypoint runs the command; KServe's Triton runtime replaces it with its own
# `tritonserver --model-store=/mnt/models ...`
ENTRYPOINT ["/opt/nvidia/nvidia_entrypoint.sh"]
CMD ["/opt/smallserve/triton-serve"]
