"""Build hooks: the browser files the pages load, and the C extensions.

Metadata lives in pyproject.toml. This file compiles the two C extensions,
``connectors/_kafkabatch.c`` (the consumer's data path) and
``connectors/decoders/_jsonrows.c`` (the JSON fast path): a C compiler and the
Python headers are all they need, see their headers. It also makes ``build_py`` (wheels) and
``sdist`` copy the files listed in ``service/web/assets.py`` out of
``node_modules/@perspective-dev`` into ``service/web/vendor/@perspective-dev`` first, so that an
installed livetables serves working pages with no npm at run time. Building from an
sdist (no node_modules there) reuses the files the sdist already carries. With
neither, the build stops and says to run ``npm ci``: a wheel without its pages would
install fine and only fail in a user's browser.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import sys
import tomllib
from pathlib import Path
from types import ModuleType

from setuptools import Extension, setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

ROOT = Path(__file__).resolve().parent
NODE_MODULES = ROOT / "node_modules" / "@perspective-dev"


class BrowserAssetsMissing(SystemExit):
    """Stops the build with a message (SystemExit: no traceback buries the advice)."""

    def __init__(self, message: str) -> None:
        super().__init__(f"livetables build: {message}")


def _assets_module() -> ModuleType:
    """service/web/assets.py, loaded by path: the build must not import the package."""
    path = ROOT / "service" / "web" / "assets.py"
    spec = importlib.util.spec_from_file_location("_livetables_build_assets", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while decorating
    spec.loader.exec_module(module)
    return module


def pinned_engine_version() -> str:
    """The perspective-python version pyproject.toml pins: the browser files must match it."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]
    for requirement in project["dependencies"]:
        found = re.fullmatch(r"perspective-python\s*==\s*([^\s;,]+)", requirement.strip())
        if found:
            return found.group(1)
    raise BrowserAssetsMissing("pyproject.toml does not pin perspective-python with ==")


def vendor_browser_assets() -> Path:
    """Fill the package's vendor directory from node_modules, or check an sdist's copy."""
    assets = _assets_module()
    target: Path = assets.VENDOR_DIR
    expected = pinned_engine_version()
    if NODE_MODULES.is_dir():
        problems = assets.problems_with(NODE_MODULES, expected)
        if problems:
            raise BrowserAssetsMissing(
                "node_modules/@perspective-dev cannot be packaged: "
                + "; ".join(problems)
                + ". Run `npm ci` (or `make setup`) to install the versions package-lock.json "
                "pins."
            )
        staging = target.with_name(target.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        for name in assets.files_to_ship():
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(NODE_MODULES / name, staging / name)
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
        return target
    problems = assets.problems_with(target, expected)
    if problems:
        raise BrowserAssetsMissing(
            "the Perspective browser files are missing: there is no node_modules/@perspective-dev "
            f"to copy them from ({'; '.join(problems)}). Run `npm ci` in the source tree (or "
            "`make setup`) before building the wheel or sdist."
        )
    return target


class BuildPyWithAssets(build_py):
    def run(self) -> None:
        # An editable install serves the source tree's node_modules directly.
        if not getattr(self, "editable_mode", False):
            vendor_browser_assets()
        super().run()


class SdistWithAssets(sdist):
    def run(self) -> None:
        vendor_browser_assets()
        super().run()


C_FLAGS = ["-O2", "-std=c11", "-D_GNU_SOURCE"]
# The consumer's data path: Kafka batches as Arrow columns (connectors/kafkabatch.py).
KAFKA_BATCH_READER = Extension(
    "connectors._kafkabatch",
    sources=["connectors/_kafkabatch.c"],
    extra_compile_args=C_FLAGS,
    libraries=["dl"],
)
# The JSON decoder's fast path for flat objects (connectors/decoders/json.py).
JSON_ROWS = Extension(
    "connectors.decoders._jsonrows",
    sources=["connectors/decoders/_jsonrows.c"],
    extra_compile_args=C_FLAGS,
)

setup(
    cmdclass={"build_py": BuildPyWithAssets, "sdist": SdistWithAssets},
    ext_modules=[KAFKA_BATCH_READER, JSON_ROWS],
)
