# The venvlayers builder as a container image: for container jobs, `docker run`, or as a
# Docker-form action (inputs as INPUT_* variables, exactly like the composite action).
#
#   docker run --rm -v "$PWD:/src" -w /src ghcr.io/OWNER/venvlayers publish venvstacks.toml --output-dir _publish
#   docker run --rm -v "$PWD:/src" -w /src -e INPUT_COMMAND=show ghcr.io/OWNER/venvlayers
#
# BASE_IMAGE: another Debian-like image with python3 (>= 3.11) and its venv module, if you
# want one; by default the python image below (an index digest: amd64 and arm64 alike).
# Dependabot bumps that digest: it reads FROM lines, not ARG defaults. Unused stages are
# skipped (BuildKit, buildah), so a BASE_IMAGE build never pulls it.
ARG BASE_IMAGE=python-base
FROM python:3.12-slim@sha256:78387bc3881b8273120a12ebe6c1ab22b018ccc2c9adf565ae1ac9b536e184ea AS python-base
FROM ${BASE_IMAGE}

# Must match the uv version in uv.lock (the locked install below checks hashes).
ARG UV_VERSION=0.13.9
ARG SOURCE_URL=https://github.com/venvlayers/venvlayers
ARG VERSION=dev
ARG REVISION=unknown

LABEL org.opencontainers.image.title="venvlayers" \
      org.opencontainers.image.description="Build, publish and release layered Python environment stacks" \
      org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.url="${SOURCE_URL}" \
      org.opencontainers.image.documentation="${SOURCE_URL}/blob/main/docs/github-actions.md" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="MIT"

# UV_SYSTEM_CERTS: trust the image's CA store (mount yours over /etc/ssl/certs behind a TLS proxy).
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    UV_NO_CACHE=1 \
    UV_SYSTEM_CERTS=1 \
    VIRTUAL_ENV=/opt/venvlayers \
    PATH=/opt/venvlayers/bin:$PATH

# git: lock-diff reads the base branch's locks; the workspace is usually owned by another user.
RUN apt-get update \
    && apt-get install -y --no-install-recommends git \
    && rm -rf /var/lib/apt/lists/* \
    && git config --system --add safe.directory '*'

COPY pyproject.toml uv.lock README.md /opt/venvlayers-src/
COPY src /opt/venvlayers-src/src
COPY entrypoint /opt/venvlayers-src/entrypoint

# uv from PyPI (pinned), then the locked dependencies with hashes, then the builder itself,
# compiled now: PYTHONDONTWRITEBYTECODE means a run never writes bytecode, so without it every
# command would compile pydantic and venvlayers again (0.2-0.4 s each).
RUN python3 -m venv /opt/venvlayers \
    && /opt/venvlayers/bin/python -m pip install --no-cache-dir --disable-pip-version-check "uv==${UV_VERSION}" \
    && uv export --project /opt/venvlayers-src --frozen --no-dev --no-emit-project --quiet \
         --output-file /tmp/requirements.txt \
    && uv pip install --python /opt/venvlayers/bin/python --compile-bytecode --require-hashes -r /tmp/requirements.txt \
    && uv pip install --python /opt/venvlayers/bin/python --compile-bytecode --no-deps /opt/venvlayers-src \
    && rm /tmp/requirements.txt \
    && venvlayers --version

WORKDIR /src
ENTRYPOINT ["/opt/venvlayers/bin/python", "/opt/venvlayers-src/entrypoint/main.py"]
