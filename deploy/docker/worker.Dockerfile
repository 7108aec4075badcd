# syntax=docker/dockerfile:1.7
# The worker image: Celery worker and beat, teachers, training (torch), export. Also runs the
# migrations job (`chatdistill db upgrade`), which the serving image could run as well.
# torch is pinned as in pyproject (`train` extra: torch>=2.13,<2.14). The default index is
# PyTorch's CPU build (a few hundred MB); for GPU workers build with
#   --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 --build-arg TORCH_VERSION=2.13.0
# Build from the repository root:
#   docker build -f deploy/docker/worker.Dockerfile -t chatdistill-worker:0.1.0 .
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ARG TORCH_VERSION=2.13.0
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --index-url "${TORCH_INDEX}" "torch==${TORCH_VERSION}"
COPY pyproject.toml README.md requirements.lock ./
COPY feedback ./feedback
COPY bundle_runtime ./bundle_runtime
COPY chat_api ./chat_api
COPY distill_worker ./distill_worker
COPY migrations ./migrations
# Everything else at the versions of the lock file (torch is locked as 2.13.0, which the CPU and
# CUDA builds both satisfy).
RUN /opt/venv/bin/pip install --no-compile -c requirements.lock ".[train]" \
    && /opt/venv/bin/python -c "import torch, distill_worker.stages.training; print('torch', torch.__version__)"

FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 chatdistill \
    && useradd --system --uid 10001 --gid 10001 --home-dir /data --no-create-home chatdistill \
    && mkdir -p /data \
    && chown 10001:10001 /data
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    CHATDISTILL_DATA_DIR=/data \
    OMP_NUM_THREADS=4
WORKDIR /data
USER 10001:10001
ENTRYPOINT ["chatdistill"]
CMD ["worker"]
