#!/usr/bin/env bash
# Builds the livetables image with podman, from a base image made locally (no registry):
#   scripts/build-image.sh [TAG]            (default localhost/livetables:<version>)
# Needs `make setup` first: the browser files are copied from node_modules into the
# package while the image is built. Python dependencies are fetched from PyPI in a layer
# that depends on pyproject.toml alone, with a pip cache mount, so rebuilds reuse them.
# Elsewhere, `docker build .` works the same with the default python:3.11-slim base.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VERSION="$(sed -n 's/^version = "\(.*\)"$/\1/p' "$ROOT/pyproject.toml")"
TAG="${1:-localhost/livetables:$VERSION}"
BASE="${BASE_IMAGE:-localhost/livetables-base:bookworm}"
source "$ROOT/scripts/podman-env.sh"

if [ ! -f "$ROOT/node_modules/@perspective-dev/viewer/package.json" ]; then
    echo "build-image: node_modules/@perspective-dev is missing: run \`make setup\` (npm ci) first" >&2
    exit 1
fi
bash "$ROOT/scripts/make-base-image.sh" "$BASE"
# The build's pip trusts what this host trusts (a proxy's CA, say): PIP_CERT, else the system
# bundle, passed as a build secret so it never lands in a layer.
ca="${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}"
secret=()
if [ -s "$ca" ]; then secret=(--secret "id=pip_ca,src=$ca"); fi
# --network host: the build's pip reaches PyPI without container networking plugins.
podman build --network host --layers "${secret[@]}" --build-arg "PYTHON_IMAGE=$BASE" \
    --tag "$TAG" --file "$ROOT/Dockerfile" "$ROOT"
