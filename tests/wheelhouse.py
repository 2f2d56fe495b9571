"""Build livetables' wheel and sdist, and install the wheel into a virtualenv of its own.

The fresh virtualenv lives outside the source tree and runs with no PYTHONPATH, so
``service`` can only come from the wheel. Its third-party dependencies are borrowed from
the project's virtualenv through a ``.pth`` line instead of being downloaded again: the
test then needs no network and takes seconds. A ``.pth`` line only adds a directory to
``sys.path``; the ``.pth`` files inside that directory (the project's editable-install
hook among them) are not run, so the source tree stays out of reach. ``installed_from``
asserts it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        args, cwd=cwd, capture_output=True, text=True, timeout=300, check=False, env=env
    )
    assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def clean_env() -> dict[str, str]:
    """This environment without anything that would put the source tree on sys.path."""
    drop = ("PYTHONPATH", "PYTHONHOME", "LIVETABLES_", "VIRTUAL_ENV")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


def build(source: Path, out: Path, kind: str = "wheel") -> subprocess.CompletedProcess[str]:
    """``pip wheel`` (or the PEP 517 sdist hook) on ``source``, without build isolation.

    Build isolation would download setuptools for every build; the project's
    virtualenv already has the build requirements of pyproject.toml.
    """
    out.mkdir(parents=True, exist_ok=True)
    if kind == "wheel":
        args = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
        args += ["--wheel-dir", str(out), str(source)]
    else:
        hook = "import sys; from setuptools import build_meta; build_meta.build_sdist(sys.argv[1])"
        args = [sys.executable, "-c", hook, str(out)]
    return subprocess.run(
        args, cwd=source, capture_output=True, text=True, timeout=300, check=False
    )


def the_one(directory: Path, pattern: str) -> Path:
    found = sorted(directory.glob(pattern))
    assert len(found) == 1, f"expected one {pattern} in {directory}, found {found}"
    return found[0]


def wheel_files(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        return {name for name in archive.namelist() if not name.endswith("/")}


def fresh_venv(directory: Path, wheel: Path) -> Path:
    """A virtualenv holding the wheel; returns its ``bin`` directory."""
    venv.EnvBuilder(with_pip=False, symlinks=True).create(directory)
    python = directory / "bin" / "python"
    _run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", str(wheel)],
        cwd=directory,
        env=clean_env(),
    )
    site = _run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        cwd=directory,
        env=clean_env(),
    ).strip()
    project_site = sysconfig.get_paths()["purelib"]
    (Path(site) / "zz_project_dependencies.pth").write_text(project_site + "\n", "utf-8")
    return directory / "bin"


def installed_from(bin_dir: Path, module: str) -> Path:
    """Where the fresh virtualenv's interpreter imports ``module`` from, run outside the tree."""
    code = f"import {module}; print({module}.__file__)"
    out = _run([str(bin_dir / "python"), "-c", code], cwd=bin_dir.parent, env=clean_env())
    return Path(out.strip())
