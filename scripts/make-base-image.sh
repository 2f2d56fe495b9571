#!/usr/bin/env bash
# Makes a base image for the Dockerfile without any registry: Debian bookworm (debootstrap
# minbase) with python3, python3-venv and ca-certificates, imported into podman.
#   scripts/make-base-image.sh [IMAGE]      (default localhost/livetables-base:bookworm)
# The root filesystem tarball is cached in ~/.cache/livetables/base-image (kept across
# runs, like the Kafka jars); the image is imported from it when podman does not have it.
# Needs root (debootstrap and podman run as root here) and Debian's mirror.
set -euo pipefail

IMAGE="${1:-localhost/livetables-base:bookworm}"
SUITE="${DEBIAN_SUITE:-bookworm}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/livetables/base-image"
TARBALL="$CACHE/debian-$SUITE-python3.tar"
source "$(dirname "$0")/podman-env.sh"

if podman image exists "$IMAGE"; then
    exit 0
fi
mkdir -p "$CACHE"
if [ ! -s "$TARBALL" ]; then
    if ! command -v debootstrap >/dev/null 2>&1 && [ ! -x /usr/sbin/debootstrap ]; then
        echo "make-base-image: debootstrap is missing: bash scripts/install-system-deps.sh --test" >&2
        exit 1
    fi
    rootfs="$(mktemp -d)"
    trap 'rm -rf "$rootfs" "$TARBALL.partial"' EXIT
    echo "make-base-image: debootstrap $SUITE into $rootfs (once; cached in $CACHE)" >&2
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
        "$SUITE" "$rootfs" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 \
        || { tail -20 "$CACHE/debootstrap.log" >&2; exit 1; }
    # Package caches and documentation are of no use in an image.
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
        "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/*
    tar --numeric-owner -C "$rootfs" -cf "$TARBALL.partial" .
    mv "$TARBALL.partial" "$TARBALL"
fi
podman import --quiet --change 'CMD ["/bin/bash"]' "$TARBALL" "$IMAGE" >/dev/null
echo "make-base-image: $IMAGE" >&2
