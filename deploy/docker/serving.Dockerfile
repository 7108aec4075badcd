# syntax=docker/dockerfile:1.7
# The serving image: chat_api on ONNX Runtime (CPU) and tokenizers. No torch, no training code.
# Build from the repository root:
#   docker build -f deploy/docker/serving.Dockerfile -t chatdistill-api:0.1.0 .
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/venv
# Only what the serving package needs: the base layer, the bundle runtime, the API, the migrations.
# distill_worker is left out on purpose: `chatdistill distill|worker` then say which extra to install.
COPY pyproject.toml README.md requirements.lock ./
COPY feedback ./feedback
COPY bundle_runtime ./bundle_runtime
COPY chat_api ./chat_api
COPY migrations ./migrations
# The plain package (no `train` extra): fastapi, uvicorn, psycopg, redis, onnxruntime, tokenizers,
# at the versions of the lock file.
RUN /opt/venv/bin/pip install --no-compile -c requirements.lock . \
    && /opt/venv/bin/python -c "import importlib.util as u; assert u.find_spec('torch') is None, 'torch leaked into the serving image'"

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
    CHATDISTILL_API__HOST=0.0.0.0 \
    CHATDISTILL_API__PORT=8000
WORKDIR /data
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
ENTRYPOINT ["chatdistill"]
# One server process per container: scale with replicas, so /metrics describes one process.
# On PostgreSQL `serve` refuses an old schema: the migrations job runs `chatdistill db upgrade` first.
CMD ["serve", "--no-migrate"]
