# One image for the three rxsm services; docker-compose.yml picks the service with `rxsm serve <name>`.
# The COPY lines bring everything a service reads at start (code, config/flags.json, the care-team demo
# data). Without Docker, `uv run python -m deploy.image` builds this file set in a clean folder and starts
# each service from it to ready (tests/test_image.py, in CI). Lint: `make lint-docker` (hadolint).
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    PATH="/app/.venv/bin:$PATH"

RUN pip install --no-cache-dir uv==0.13.9
WORKDIR /app

COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project

COPY schemas ./schemas
COPY plumbing ./plumbing
COPY services ./services
COPY rxsm ./rxsm
COPY config ./config
RUN uv sync --frozen --no-dev

# A user of its own (numeric, so Kubernetes' runAsNonRoot can check it) that owns only the data volume.
RUN useradd --uid 10001 --create-home rxsm && mkdir /data && chown 10001 /data
USER 10001
ENV RXSM_DATA_DIR=/data RXSM_HTTP_HOST=0.0.0.0
CMD ["rxsm", "--help"]
