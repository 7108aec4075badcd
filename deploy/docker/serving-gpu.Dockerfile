# syntax=docker/dockerfile:1.7
# The GPU serving image: chat_api with CHATDISTILL_SERVING__PROVIDER=tensorrt (FP16 engines built
# from the bundle's ONNX graphs and cached beside them) or =cuda (ONNX Runtime CUDA provider).
# Base: NVIDIA's TensorRT container (CUDA, cuDNN, TensorRT libraries). The project needs Python
# 3.11, which that image does not ship, so 3.11 comes from the deadsnakes PPA and the TensorRT
# Python bindings from the `tensorrt-cu12` wheels that match the libraries.
# Build from the repository root:
#   docker build -f deploy/docker/serving-gpu.Dockerfile -t chatdistill-api:0.1.0-gpu .
ARG TRT_IMAGE=nvcr.io/nvidia/tensorrt:25.01-py3

FROM ${TRT_IMAGE}
ARG TENSORRT_VERSION=10.8.0.43
ARG CUDA_PYTHON_VERSION=12.8.0
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends software-properties-common=0.99.* gpg-agent=2.4.* \
    && add-apt-repository -y ppa:deadsnakes/ppa \
    && apt-get update \
    && apt-get install -y --no-install-recommends python3.11=3.11.* python3.11-venv=3.11.* \
    && apt-get purge -y software-properties-common \
    && apt-get autoremove -y \
    && rm -rf /var/lib/apt/lists/*
RUN python3.11 -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml README.md requirements.lock ./
COPY feedback ./feedback
COPY bundle_runtime ./bundle_runtime
COPY chat_api ./chat_api
COPY migrations ./migrations
# The `gpu` extra brings onnxruntime-gpu; it replaces the CPU onnxruntime of the base install.
# The project's packages come at the lock file's versions; the TensorRT bindings and cuda-python
# are pinned here to match the base image's CUDA 12 libraries (the lock file's CUDA packages are
# torch's CUDA 13 ones, for the worker), so they are installed in a second step.
RUN /opt/venv/bin/pip install --no-compile -c requirements.lock ".[gpu]" \
    && /opt/venv/bin/pip install --no-compile \
        "tensorrt-cu12==${TENSORRT_VERSION}" "cuda-python==${CUDA_PYTHON_VERSION}" \
    && /opt/venv/bin/pip uninstall -y onnxruntime onnxruntime-gpu \
    && /opt/venv/bin/pip install --no-compile --no-deps -c requirements.lock onnxruntime-gpu \
    && /opt/venv/bin/python -c "import importlib.util as u; assert u.find_spec('torch') is None, 'torch leaked into the serving image'" \
    && rm -rf /src

RUN groupadd --system --gid 10001 chatdistill \
    && useradd --system --uid 10001 --gid 10001 --home-dir /data --no-create-home chatdistill \
    && mkdir -p /data \
    && chown 10001:10001 /data
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    CHATDISTILL_DATA_DIR=/data \
    CHATDISTILL_API__HOST=0.0.0.0 \
    CHATDISTILL_API__PORT=8000 \
    CHATDISTILL_SERVING__PROVIDER=tensorrt
WORKDIR /data
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
ENTRYPOINT ["chatdistill"]
CMD ["serve", "--no-migrate"]
