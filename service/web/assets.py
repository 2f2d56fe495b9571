"""Where the browser packages are: the npm layout of @perspective-dev, served offline.

The pages load Perspective's self-contained ES modules from this service, never
from a CDN. The client finds its wasm relative to itself
(``../../../server/dist/wasm``), so the npm directory layout is served as is.
"""

from __future__ import annotations

import mimetypes
import os
from pathlib import Path

PACKAGES = ("client", "server", "viewer", "viewer-datagrid", "viewer-d3fc")
STATIC_DIR = Path(__file__).parent / "static"
TEMPLATE_DIR = Path(__file__).parent / "templates"

# WebAssembly.instantiateStreaming insists on this type.
mimetypes.add_type("application/wasm", ".wasm")
mimetypes.add_type("text/javascript", ".js")


def perspective_assets_dir() -> Path | None:
    """The ``@perspective-dev`` directory: $LIVETABLES_ASSETS, else the source tree's."""
    candidates = []
    if os.environ.get("LIVETABLES_ASSETS"):
        candidates.append(Path(os.environ["LIVETABLES_ASSETS"]))
    candidates.append(Path(__file__).resolve().parents[2] / "node_modules" / "@perspective-dev")
    for candidate in candidates:
        if all((candidate / package / "package.json").exists() for package in PACKAGES):
            return candidate
    return None


MISSING_ASSETS_HELP = (
    "the Perspective browser packages are not installed: run `npm ci` in the source tree "
    "(or `make setup`), or set LIVETABLES_ASSETS to a node_modules/@perspective-dev directory"
)
