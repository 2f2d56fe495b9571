"""The wheel and sdist carry the browser files the pages load, and the lookup that finds them.

Builds run the real setuptools backend (setup.py's hooks) with pip, as a user's
``pip install .`` or ``pip wheel .`` would; no broker is needed.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import tarfile
from pathlib import Path

import pytest

from service.web import assets
from tests.wheelhouse import ROOT, build, the_one, wheel_files

NODE_MODULES = ROOT / "node_modules" / "@perspective-dev"
VENDORED = "service/web/vendor/@perspective-dev/"
SOURCES = ("pyproject.toml", "setup.py", "README.md", "service", "connectors")


def _copy_sources(target: Path) -> Path:
    """The files a build reads, without node_modules and without a vendored copy."""
    target.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "vendor", "*.egg-info")
    for name in SOURCES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, target / name, ignore=ignore)
        else:
            shutil.copy(source, target / name)
    return target


def _copy_browser_files(target: Path, version: str | None = None) -> Path:
    """The shipped files of node_modules/@perspective-dev; optionally claiming another version."""
    for name in assets.files_to_ship():
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(NODE_MODULES / name, target / name)
    if version:
        manifest = target / "viewer" / "package.json"
        data = json.loads(manifest.read_text("utf-8"))
        manifest.write_text(json.dumps({**data, "version": version}), "utf-8")
    return target


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not NODE_MODULES.is_dir():
        pytest.fail("node_modules is missing: run `make setup` (npm ci)", pytrace=False)
    out = tmp_path_factory.mktemp("wheel")
    result = build(ROOT, out)
    assert result.returncode == 0, result.stdout + result.stderr
    return the_one(out, "livetables-*.whl")


def test_the_wheel_carries_exactly_the_served_browser_files(wheel: Path) -> None:
    files = wheel_files(wheel)
    vendored = {name.removeprefix(VENDORED) for name in files if name.startswith(VENDORED)}
    assert vendored == set(assets.files_to_ship())
    # Nothing else of node_modules: no source maps, no esm builds, no sources.
    assert not [name for name in files if name.endswith(".map") or "/dist/esm/" in name]
    with_pages = {"service/web/templates/table.html", "service/web/static/livetables.js"}
    assert with_pages <= files


def test_the_wheel_carries_the_compiled_c_extensions(wheel: Path) -> None:
    """The native Kafka reader and the JSON fast path are compiled into the wheel."""
    files = wheel_files(wheel)
    for module in ("connectors/_kafkabatch.", "connectors/decoders/_jsonrows."):
        built = [name for name in files if name.startswith(module)]
        assert any(name.endswith(".so") for name in built), module
        # Besides the compiled module, only its type stub (no C source, no build leftovers).
        assert all(name.endswith((".so", ".pyi")) for name in built), built


def test_the_shipped_files_are_the_ones_the_pages_load() -> None:
    """Every module the page scripts (and embed.js) import and every stylesheet a template
    links is shipped."""
    shipped = set(assets.files_to_ship())
    web = ROOT / "service" / "web"
    scripts = "".join(p.read_text("utf-8") for p in (web / "static").glob("*.js"))
    templates = "".join(p.read_text("utf-8") for p in (web / "templates").glob("*.html"))
    loaded = set(re.findall(r'asset\(root, "([^"]+)"\)', scripts))
    loaded |= set(re.findall(r"static/perspective/([^\"'\s]+)", templates))
    assert loaded, "found no asset references: has the page script changed its helper?"
    assert loaded <= shipped, loaded - shipped
    # And the wasm each module fetches relative to its own URL.
    for module, wasm in [
        ("client/dist/cdn/perspective.js", "../../../server/dist/wasm/perspective-server.wasm"),
        ("viewer/dist/cdn/perspective-viewer.js", "../wasm/perspective-viewer.wasm"),
    ]:
        assert wasm in (NODE_MODULES / module).read_text("utf-8")
        resolved = Path("/", module).parent.joinpath(wasm).resolve().relative_to("/")
        assert str(resolved) in shipped


def test_the_sdist_carries_them_and_builds_a_wheel_without_node_modules(tmp_path: Path) -> None:
    result = build(ROOT, tmp_path / "sdist", kind="sdist")
    assert result.returncode == 0, result.stdout + result.stderr
    with tarfile.open(the_one(tmp_path / "sdist", "livetables-*.tar.gz")) as archive:
        # The "data" filter (Python 3.11.4+) refuses paths that leave the target.
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        archive.extractall(tmp_path / "unpacked", **safe)
    unpacked = the_one(tmp_path / "unpacked", "livetables-*")
    assert not (unpacked / "node_modules").exists()
    result = build(unpacked, tmp_path / "wheel")
    assert result.returncode == 0, result.stdout + result.stderr
    files = wheel_files(the_one(tmp_path / "wheel", "livetables-*.whl"))
    assert {VENDORED + name for name in assets.files_to_ship()} <= files


def test_a_build_without_node_modules_stops_and_says_to_run_npm_ci(tmp_path: Path) -> None:
    source = _copy_sources(tmp_path / "src")
    result = build(source, tmp_path / "out")
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "the Perspective browser files are missing" in output
    assert "Run `npm ci`" in output
    assert not list((tmp_path / "out").glob("*.whl"))


def test_a_build_with_other_browser_versions_stops(tmp_path: Path) -> None:
    source = _copy_sources(tmp_path / "src")
    _copy_browser_files(source / "node_modules" / "@perspective-dev", version="9.9.9")
    result = build(source, tmp_path / "out")
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "viewer is version 9.9.9, but perspective-python is" in output
    assert "npm ci" in output


# ---------------------------------------------------------------------------------------------
# the lookup at run time


def test_an_override_is_used_when_complete(monkeypatch, tmp_path: Path) -> None:
    override = _copy_browser_files(tmp_path / "assets")
    monkeypatch.setenv(assets.ASSETS_ENV, str(override))
    assert assets.find_perspective_assets().directory == override


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        ("remove", "lacks viewer/dist/wasm/perspective-viewer.wasm"),
        ("version", "viewer is version 9.9.9, but perspective-python is"),
    ],
)
def test_an_unusable_override_is_reported_and_the_next_place_serves(
    monkeypatch, tmp_path: Path, caplog, damage: str, reason: str
) -> None:
    override = _copy_browser_files(tmp_path / "assets", "9.9.9" if damage == "version" else None)
    if damage == "remove":
        (override / "viewer" / "dist" / "wasm" / "perspective-viewer.wasm").unlink()
    fallback = _copy_browser_files(tmp_path / "packaged")
    monkeypatch.setenv(assets.ASSETS_ENV, str(override))
    monkeypatch.setattr(assets, "VENDOR_DIR", fallback)
    with caplog.at_level(logging.WARNING, logger=assets.__name__):
        lookup = assets.find_perspective_assets()
    assert lookup.directory == fallback
    assert f"{assets.ASSETS_ENV} is not used" in caplog.text
    assert reason in caplog.text


def test_nothing_usable_names_every_place_looked_at(monkeypatch, tmp_path: Path, caplog) -> None:
    monkeypatch.delenv(assets.ASSETS_ENV, raising=False)
    monkeypatch.setattr(assets, "VENDOR_DIR", tmp_path / "no-vendor")
    monkeypatch.setattr(assets, "SOURCE_TREE_DIR", tmp_path / "no-node-modules")
    with caplog.at_level(logging.WARNING, logger=assets.__name__):
        lookup = assets.find_perspective_assets()
    assert lookup.directory is None
    assert [line.split(":")[0] for line in lookup.rejected] == ["packaged", "source tree"]
    assert str(tmp_path / "no-vendor") in caplog.text
    assert "npm ci" in assets.MISSING_ASSETS_HELP
