#!/usr/bin/env bash
# Builds the livetables image with podman, from a base image made locally (no registry):
#   scripts/build-image.sh [TAG]            (default localhost/livetables:<version>)
# Needs `make setup` first: the browser files are copied from node_modules into the
# package while the image is built. Python dependencies are fetched from PyPI in a layer
# keyed on pyproject.toml alone, so rebuilds after a code change reuse them. BASE_IMAGE
# names another base you already have (then none is made). Elsewhere, `docker build .` works
# the same with the default python:3.11-slim base.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VERSION="$(sed -n 's/^version = "\(.*\)"$/\1/p' "$ROOT/pyproject.toml")"
TAG="${1:-localhost/livetables:$VERSION}"
LOCAL_BASE="localhost/livetables-base:bookworm"
BASE="${BASE_IMAGE:-$LOCAL_BASE}"
source "$ROOT/scripts/podman-env.sh"

for tool in podman runc; do
    if ! command -v "$tool" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$tool" ]; then
        echo "build-image: $tool is missing: bash scripts/install-system-deps.sh --test installs" \
            "podman, runc and debootstrap" >&2
        exit 1
    fi
done
if [ ! -f "$ROOT/node_modules/@perspective-dev/viewer/package.json" ]; then
    echo "build-image: node_modules/@perspective-dev is missing: run \`make setup\` (npm ci) first" >&2
    exit 1
fi
if [ "$BASE" = "$LOCAL_BASE" ]; then
    bash "$ROOT/scripts/make-base-image.sh" "$BASE"
fi
# The build's pip trusts what this host trusts (a proxy's CA, say): PIP_CERT, else the system
# bundle, passed as a build secret so it never lands in a layer.
ca="${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}"
secret=()
if [ -s "$ca" ]; then secret=(--secret "id=pip_ca,src=$ca"); fi
# --network host: the build's pip reaches PyPI without container networking plugins.
podman build --network host --layers "${secret[@]}" --build-arg "PYTHON_IMAGE=$BASE" \
    --tag "$TAG" --file "$ROOT/Dockerfile" "$ROOT"
