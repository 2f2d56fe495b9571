#!/usr/bin/env bash
# Installs the chart tooling into .tools/bin of this repository: helm and kubeconform,
# built from their Go modules. A tool already there at the pinned version is kept.
#
# kubeconform validates against local Kubernetes JSON schemas only: they come from the
# PyPI package kubernetes-validate (the `dev` extra), see tests/helm/test_chart.py.
set -euo pipefail

HELM_VERSION="${HELM_VERSION:-v3.22.0}"
KUBECONFORM_VERSION="${KUBECONFORM_VERSION:-v0.8.0}"

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="$ROOT/.tools/bin"
mkdir -p "$BIN"

if ! command -v go >/dev/null 2>&1; then
    for candidate in /usr/local/go/bin /usr/lib/go/bin; do
        if [ -x "$candidate/go" ]; then
            PATH="$candidate:$PATH"
            break
        fi
    done
fi
if ! command -v go >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    # Debian's Go; a module that needs a newer one fetches that toolchain from the Go proxy.
    echo "install-helm-tools: installing Go (golang-go)" >&2
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends golang-go >/dev/null
fi
if ! command -v go >/dev/null 2>&1; then
    echo "install-helm-tools: Go is needed to build helm and kubeconform: install it first" >&2
    exit 1
fi

# The module version a Go binary was built from, or nothing if absent (binaries built with
# `go install` report no release version of their own, so it is read with `go version -m`).
built_version() {
    local binary="$1" module="$2"
    [ -x "$binary" ] || return 0
    go version -m "$binary" 2>/dev/null | awk -v m="$module" '$1 == "mod" && $2 == m { print $3 }'
}

install() {
    local module="$1"
    echo "install-helm-tools: go install $module"
    GOBIN="$BIN" CGO_ENABLED=0 go install "$module"
}

if [ "$(built_version "$BIN/helm" helm.sh/helm/v3)" = "$HELM_VERSION" ]; then
    echo "install-helm-tools: helm $HELM_VERSION already installed"
else
    install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
fi

if [ "$(built_version "$BIN/kubeconform" github.com/yannh/kubeconform)" = "$KUBECONFORM_VERSION" ]; then
    echo "install-helm-tools: kubeconform $KUBECONFORM_VERSION already installed"
else
    install "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION"
fi

echo "install-helm-tools: $BIN: helm $(built_version "$BIN/helm" helm.sh/helm/v3)," \
    "kubeconform $(built_version "$BIN/kubeconform" github.com/yannh/kubeconform)"
