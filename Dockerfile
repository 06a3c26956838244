# Worker image: the locked environment, built with uv. Used by every hpo service in
# docker-compose.yml (init, worker, dashboard).
# The base images are build args so a machine without an image registry can substitute locally
# built ones (tests/compose/run.sh does); the defaults are what users get.
ARG PYTHON_IMAGE=python:3.11-slim
# The uv release that wrote uv.lock (lock format revision 5).
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13.8

FROM ${UV_IMAGE} AS uv

FROM ${PYTHON_IMAGE}
COPY --from=uv /uv /uvx /bin/

WORKDIR /app
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    PYTHONUNBUFFERED=1
# uv's cache during the build: a cache mount by default; a build that bind-mounts an existing
# uv cache elsewhere (podman build -v) points here so nothing is downloaded again.
ARG UV_CACHE_DIR=/root/.cache/uv

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
# Run as a plain user; /app/data is where torchvision datasets are downloaded. /artifacts is
# where docker-compose.yml mounts the shared artifact volume: Docker gives a new named volume
# the owner of the folder it is mounted on, and root's otherwise, where hpo could not write.
RUN useradd --create-home hpo && mkdir -p /app/data /artifacts && chown hpo /app/data /artifacts
USER hpo
CMD ["hpo", "--help"]
