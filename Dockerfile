# Worker image: the locked environment, built with uv. Used by every hpo service in
# docker-compose.yml (init, worker, dashboard).
FROM python:3.11-slim

# The uv release that wrote uv.lock (lock format revision 5).
COPY --from=ghcr.io/astral-sh/uv:0.13.8 /uv /uvx /bin/

WORKDIR /app
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    PYTHONUNBUFFERED=1

# Dependencies first (cached while only the code changes), exactly as locked in uv.lock.
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-dev --no-install-project

COPY README.md ./
COPY hpo ./hpo
COPY models ./models
COPY studies ./studies
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-dev

ENV PATH="/app/.venv/bin:$PATH"
# Run as a plain user; /app/data is where torchvision datasets are downloaded.
RUN useradd --create-home hpo && mkdir -p /app/data && chown hpo /app/data
USER hpo
CMD ["hpo", "--help"]
