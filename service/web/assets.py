"""Where the browser packages are: the npm layout of @perspective-dev, served offline.

The pages load Perspective's self-contained ES modules from this service, never
from a CDN. The client finds its wasm relative to itself
(``../../../server/dist/wasm``), so the npm directory layout is served as is.

``SERVED_FILES`` is the one list of what the pages load. The wheel build (setup.py)
copies exactly these files out of ``node_modules`` into ``vendor/`` beside this
module, so an installed package serves working pages with no npm at run time; the
lookup below checks the same list, so a directory missing any of them is never
chosen. This module imports only the standard library: setup.py loads it by path.
"""

from __future__ import annotations

import json
import logging
import mimetypes
import os
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

log = logging.getLogger(__name__)

# Every file a page requests under /static/perspective/, per @perspective-dev package. The
# dist/cdn builds are self-contained: each inlines its workers, and fetches nothing else
# but the wasm files below (found relative to the module URL) and the theme stylesheet the
# templates link. Measured by recording every request of the table and dashboard pages
# (all chart plugins, both modes) in Chromium. The client's own wasm is fetched only by an
# embedding page that replicates without a viewer (static/perspective-modules.js): with a
# viewer on the page, the client borrows the viewer's.
SERVED_FILES: dict[str, tuple[str, ...]] = {
    "client": ("dist/cdn/perspective.js", "dist/wasm/perspective-js.wasm"),
    "server": ("dist/wasm/perspective-server.wasm",),
    "viewer": (
        "dist/cdn/perspective-viewer.js",
        "dist/wasm/perspective-viewer.wasm",
        "dist/css/themes.css",
    ),
    "viewer-datagrid": ("dist/cdn/perspective-viewer-datagrid.js",),
    "viewer-d3fc": ("dist/cdn/perspective-viewer-d3fc.js",),
}
# Shipped beside the served files: the version check reads package.json, and the
# packages' Apache-2.0 licence travels with their code.
PACKAGE_FILES = ("package.json", "LICENSE.md")
PACKAGES = tuple(SERVED_FILES)

STATIC_DIR = Path(__file__).parent / "static"
TEMPLATE_DIR = Path(__file__).parent / "templates"
# Filled by the wheel/sdist build from node_modules; git-ignored. The npm scope's "@" keeps
# setuptools from mistaking the directories below for Python packages.
VENDOR_DIR = Path(__file__).parent / "vendor" / "@perspective-dev"
SOURCE_TREE_DIR = Path(__file__).resolve().parents[2] / "node_modules" / "@perspective-dev"
ASSETS_ENV = "LIVETABLES_ASSETS"

# WebAssembly.instantiateStreaming insists on this type.
mimetypes.add_type("application/wasm", ".wasm")
mimetypes.add_type("text/javascript", ".js")

MISSING_ASSETS_HELP = (
    "the Perspective browser files are not installed. Install livetables from a wheel or "
    "sdist built with them (they are copied from node_modules at build time: run `npm ci` "
    "in the source tree, or `make setup`, before building); in a source tree, run `npm ci` "
    f"(or `make setup`); or set {ASSETS_ENV} to a node_modules/@perspective-dev directory "
    "of the same version as perspective-python"
)


def files_to_ship() -> list[str]:
    """Every file, relative to the @perspective-dev directory, that a build copies."""
    return [
        f"{package}/{name}"
        for package, served in SERVED_FILES.items()
        for name in (*PACKAGE_FILES, *served)
    ]


def engine_version() -> str | None:
    """The installed perspective-python version: the browser files must be the same one.

    The wire protocol has no version handshake, so a mismatch shows up as broken pages
    rather than an error; checking here turns it into a clear message.
    """
    try:
        return version("perspective-python")
    except PackageNotFoundError:
        return None


def problems_with(directory: Path, expected_version: str | None) -> list[str]:
    """Why ``directory`` cannot serve the pages (an empty list when it can)."""
    if not directory.is_dir():
        return [f"{directory} does not exist"]
    missing = [name for name in files_to_ship() if not (directory / name).is_file()]
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        shown = ", ".join(missing[:3]) + more
        return [f"{directory} lacks {shown}"]
    problems = []
    for package in PACKAGES:
        try:
            found = json.loads((directory / package / "package.json").read_text("utf-8"))
        except (OSError, ValueError) as exc:
            problems.append(f"{directory / package / 'package.json'} is unreadable: {exc}")
            continue
        if expected_version and found.get("version") != expected_version:
            problems.append(
                f"{directory / package} is version {found.get('version')}, but "
                f"perspective-python is {expected_version} (they must match exactly)"
            )
    return problems


@dataclass(frozen=True)
class AssetsLookup:
    """The directory the pages are served from, or why none was usable."""

    directory: Path | None
    # One line per place looked at and not used: "<where>: <why>".
    rejected: tuple[str, ...]


def find_perspective_assets() -> AssetsLookup:
    """$LIVETABLES_ASSETS, else the files packaged with livetables, else the source tree's.

    A candidate is used only if it has every served file in the version of the
    installed engine. An override that does not qualify is reported, and the next
    candidate is used, so a stale variable degrades to a warning, not to dead pages.
    """
    expected = engine_version()
    candidates: list[tuple[str, Path]] = []
    if os.environ.get(ASSETS_ENV):
        candidates.append((ASSETS_ENV, Path(os.environ[ASSETS_ENV])))
    candidates.append(("packaged", VENDOR_DIR))
    candidates.append(("source tree", SOURCE_TREE_DIR))
    rejected: list[str] = []
    for label, candidate in candidates:
        problems = problems_with(candidate, expected)
        if not problems:
            if label != ASSETS_ENV and os.environ.get(ASSETS_ENV):
                # Set on purpose, so worth a warning even though other files serve.
                log.warning("%s is not used: %s", ASSETS_ENV, rejected[0])
            return AssetsLookup(candidate, tuple(rejected))
        rejected.append(f"{label}: {'; '.join(problems)}")
    for reason in rejected:
        log.warning("browser files: not using %s", reason)
    return AssetsLookup(None, tuple(rejected))


def perspective_assets_dir() -> Path | None:
    """The ``@perspective-dev`` directory to serve, or None when there is none usable."""
    return find_perspective_assets().directory
