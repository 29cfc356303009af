# One image for the three rxsm services; docker-compose.yml picks the service with `rxsm serve <name>`.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    PATH="/app/.venv/bin:$PATH"

RUN pip install --no-cache-dir uv
WORKDIR /app

COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project

COPY schemas ./schemas
COPY plumbing ./plumbing
COPY services ./services
COPY rxsm ./rxsm
COPY localkafka ./localkafka
COPY demo ./demo
RUN uv sync --frozen --no-dev

RUN useradd --create-home rxsm && mkdir /data && chown rxsm /data
USER rxsm
ENV RXSM_DATA_DIR=/data RXSM_HTTP_HOST=0.0.0.0
CMD ["rxsm", "--help"]
