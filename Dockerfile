# syntax=docker/dockerfile:1
#
# The livetables image, from the repository root after `make setup` (the browser files the
# package carries are copied from node_modules while it is built):
#   docker build -t livetables:0.1.0 .
# Where no registry is reachable, `make image` builds it with podman from a Debian base made
# locally (scripts/build-image.sh). Runs as an unprivileged user (uid 10001) and writes
# nothing outside /tmp, so it works with a read-only root filesystem. The Helm chart in
# helm/livetables mounts the configuration at /etc/livetables/livetables.yaml.

# The base of both stages: an image with Python 3.11+ as `python3`, its venv module and a CA
# bundle (python:3.11-slim, or Debian bookworm with python3, python3-venv, ca-certificates).
ARG PYTHON_IMAGE=python:3.11-slim

# ---------------------------------------------------------------------------------------------
# deps: a virtualenv with livetables' dependencies, read from pyproject.toml alone, so that this
# stage (and the runtime layer copied from it) is rebuilt only when they change. Every
# dependency ships binary wheels for linux/amd64 and linux/arm64, so no compiler is needed
# here (livetables' own C extension is compiled in the build stage).
# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS deps

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

WORKDIR /src
COPY pyproject.toml ./
# The pip cache mount keeps downloaded wheels across rebuilds. Behind a TLS-inspecting proxy,
# hand pip your CA bundle for the build only (a secret is never stored in the image):
#   --secret id=pip_ca,src=/etc/ssl/certs/ca-certificates.crt
# livetables itself goes to /opt/livetables-app (see build), found through a .pth file.
RUN --mount=type=cache,target=/root/.cache/pip,sharing=locked \
    --mount=type=secret,id=pip_ca \
    if [ -s /run/secrets/pip_ca ]; then export PIP_CERT=/run/secrets/pip_ca; fi \
 && python3 -m venv /opt/livetables \
 && python3 -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb")); \
print("\n".join(p["build-system"]["requires"] + p["project"]["dependencies"]))' \
      > /tmp/requirements.txt \
 && /opt/livetables/bin/pip install --requirement /tmp/requirements.txt \
 && site="$(/opt/livetables/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')" \
 && echo /opt/livetables-app > "$site/livetables-app.pth"

# ---------------------------------------------------------------------------------------------
# build: livetables itself, a regular (not editable) install into a directory of its own, so
# that a code change rebuilds a few megabytes, not the dependencies. Packages and data files
# land there compiled to bytecode now, because the runtime filesystem is read-only. The native
# Kafka batch reader (connectors/_kafkabatch.c) is compiled here: a C compiler and the Python
# headers are installed in this stage only, never in the runtime one.
# ---------------------------------------------------------------------------------------------
FROM deps AS build

RUN headers="$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["include"])')" \
 && packages="gcc libc6-dev" \
 && if [ ! -f "$headers/Python.h" ]; then packages="$packages python3-dev"; fi \
 && apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $packages \
 && rm -rf /var/lib/apt/lists/*

COPY setup.py README.md ./
COPY connectors ./connectors
COPY service ./service
# Only the browser files the pages load (.dockerignore lets nothing else of node_modules in);
# setup.py copies them into the package and checks their version. Missing: run `npm ci`.
COPY node_modules/@perspective-dev ./node_modules/@perspective-dev
RUN /opt/livetables/bin/pip install --no-deps --no-build-isolation \
      --target /opt/livetables-app . \
 && PATH=/opt/livetables-app/bin:$PATH livetables --version

# ---------------------------------------------------------------------------------------------
# venv: the dependencies without the installers (no pip, setuptools or wheel at run time).
# ---------------------------------------------------------------------------------------------
FROM deps AS venv
RUN /opt/livetables/bin/python -m pip uninstall --yes --quiet pip setuptools wheel

# ---------------------------------------------------------------------------------------------
# runtime: the interpreter, the virtualenv and nothing else (no pip, no compilers).
# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="livetables" \
      org.opencontainers.image.description="Kafka topics as live Perspective tables in the browser" \
      org.opencontainers.image.licenses="Apache-2.0"

# The base's own pip, if it has one, goes too.
RUN groupadd --system --gid 10001 livetables \
 && useradd --system --uid 10001 --gid livetables --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin livetables \
 && mkdir -p /etc/livetables \
 && if python3 -m pip --version >/dev/null 2>&1; then \
      python3 -m pip uninstall --yes --quiet pip setuptools wheel; \
    fi

COPY --from=venv /opt/livetables /opt/livetables
COPY --from=build /opt/livetables-app /opt/livetables-app

ENV PATH=/opt/livetables-app/bin:/opt/livetables/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp

WORKDIR /tmp
# Numeric, so that Kubernetes can verify runAsNonRoot.
USER 10001:10001
EXPOSE 8080

ENTRYPOINT ["livetables", "serve", "--config", "/etc/livetables/livetables.yaml"]
