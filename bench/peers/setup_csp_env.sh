#!/usr/bin/env bash
# Creates bench/.venv-csp: a virtualenv of its own for the csp peer benchmark.
#
# csp pins its own pyarrow range (<24) and pulls pandas, sqlalchemy and pydantic, none of which
# livetables wants in its environment, so the peer runs in a separate venv. The Kafka adapter
# ships inside the csp wheel (librdkafka is linked into it), so nothing else is needed for it.
# perspective-python is the version livetables pins, so both sides apply rows to the same engine.
# Idempotent: a venv that already imports csp, its Kafka adapter and perspective is kept.
set -euo pipefail

CSP_VERSION="${CSP_VERSION:-0.19.1}"
PERSPECTIVE_VERSION="${PERSPECTIVE_VERSION:-4.3.0}"
PYTHON="${PYTHON:-python3}"

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
VENV="$ROOT/bench/.venv-csp"

ready() {
    [ -x "$VENV/bin/python" ] && "$VENV/bin/python" - "$CSP_VERSION" "$PERSPECTIVE_VERSION" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version

import csp.adapters.kafka  # noqa: F401 - the compiled adapter must load, not just the package
import perspective  # noqa: F401

sys.exit(0 if (version("csp"), version("perspective-python")) == tuple(sys.argv[1:]) else 1)
PY
}

if ready; then
    echo "setup_csp_env: $VENV is ready (csp $CSP_VERSION, perspective-python $PERSPECTIVE_VERSION)" >&2
    exit 0
fi

echo "setup_csp_env: creating $VENV (csp $CSP_VERSION, perspective-python $PERSPECTIVE_VERSION)" >&2
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet --only-binary=csp \
    "csp==$CSP_VERSION" "perspective-python==$PERSPECTIVE_VERSION"

if ! ready; then
    echo "setup_csp_env: $VENV was built but csp's Kafka adapter or perspective does not import" >&2
    exit 1
fi
echo "setup_csp_env: $VENV is ready" >&2
