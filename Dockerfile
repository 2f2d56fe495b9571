# syntax=docker/dockerfile:1
#
# The livetables image: `docker build -t livetables:0.1.0 .` from the repository root.
# Runs as an unprivileged user (uid 10001) and writes nothing outside /tmp, so it works with a
# read-only root filesystem. The Helm chart in helm/livetables mounts the configuration at
# /etc/livetables/livetables.yaml.

ARG PYTHON_IMAGE=python:3.11-slim

# ---------------------------------------------------------------------------------------------
# build: livetables and its dependencies, installed into a virtualenv that the runtime stage
# copies whole. Every dependency ships binary wheels for linux/amd64 and linux/arm64, so no
# compiler is needed; if one ever is, install it here, never in the runtime stage.
# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

RUN python -m venv /opt/livetables
WORKDIR /src
COPY pyproject.toml README.md ./
COPY connectors ./connectors
COPY service ./service
# A regular (not editable) install: the packages and their data files land in site-packages,
# compiled to bytecode now because the runtime filesystem is read-only.
RUN /opt/livetables/bin/pip install . \
 && /opt/livetables/bin/livetables --version \
 && /opt/livetables/bin/python -m pip uninstall --yes pip setuptools wheel

# ---------------------------------------------------------------------------------------------
# web-assets: the browser packages the pages load (@perspective-dev/*, pinned in
# package-lock.json to exactly the perspective-python version), installed from the lockfile
# and cut down to what the service serves: each package's package.json and dist/.
# ---------------------------------------------------------------------------------------------
FROM node:22-slim AS web-assets
WORKDIR /web
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error \
 && mkdir -p /assets \
 && for p in client server viewer viewer-datagrid viewer-d3fc; do \
      mkdir -p "/assets/$p" \
      && cp "node_modules/@perspective-dev/$p/package.json" "/assets/$p/" \
      && cp -r "node_modules/@perspective-dev/$p/dist" "/assets/$p/dist"; \
    done \
 && find /assets -name '*.map' -delete

# ---------------------------------------------------------------------------------------------
# runtime: the interpreter, the virtualenv and nothing else (no pip, no compilers).
# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="livetables" \
      org.opencontainers.image.description="Kafka topics as live Perspective tables in the browser" \
      org.opencontainers.image.licenses="Apache-2.0"

RUN groupadd --system --gid 10001 livetables \
 && useradd --system --uid 10001 --gid livetables --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin livetables \
 && mkdir -p /etc/livetables \
 && python -m pip uninstall --yes --quiet pip setuptools wheel

COPY --from=build /opt/livetables /opt/livetables
# Browser assets (see the web-assets stage).
COPY --from=web-assets /assets/ /opt/livetables-web/

ENV PATH=/opt/livetables/bin:$PATH \
    LIVETABLES_ASSETS=/opt/livetables-web \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp

WORKDIR /tmp
# Numeric, so that Kubernetes can verify runAsNonRoot.
USER 10001:10001
EXPOSE 8080

ENTRYPOINT ["livetables", "serve", "--config", "/etc/livetables/livetables.yaml"]
