"""Peers measured beside livetables, each in a virtual environment of its own.

The suite runs in livetables' environment; a peer's dependencies (csp pins its own pyarrow
range and brings pandas and sqlalchemy) stay out of it. ``run_csp_ingest`` builds the peer's
environment on first use and runs the peer as a subprocess, turning every way it can fail to
run into ``{"skipped": reason}`` so a results table can say why a figure is missing.
"""

import json
import subprocess
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
CSP_SETUP = HERE / "setup_csp_env.sh"
CSP_SCRIPT = HERE / "csp_ingest.py"
CSP_PYTHON = HERE.parent / ".venv-csp" / "bin" / "python"


def _tail(text: str, lines: int = 5) -> str:
    return " | ".join(text.strip().splitlines()[-lines:])


def run_csp_ingest(
    bootstrap: str,
    topic: str,
    records: int,
    *,
    index: str | None = None,
    limit: int | None = None,
    timeout: float = 300.0,
    extra_args: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Measure csp's Kafka adapter feeding a Perspective table; see ``csp_ingest``.

    The topic must have been produced with message keys: csp drops keyless records.
    Returns the peer's result line, or ``{"skipped": reason}``.
    """
    setup = subprocess.run(
        ["bash", str(CSP_SETUP)], capture_output=True, text=True, check=False, timeout=900
    )
    if setup.returncode != 0:
        return {"skipped": f"csp environment could not be built: {_tail(setup.stderr)}"}
    command = [str(CSP_PYTHON), str(CSP_SCRIPT), "--bootstrap", bootstrap, "--topic", topic]
    command += ["--records", str(records), "--schema", "json-small", "--timeout", str(timeout)]
    if index:
        command += ["--index", index]
    if limit:
        command += ["--limit", str(limit)]
    command += list(extra_args)
    try:
        run = subprocess.run(
            command, capture_output=True, text=True, check=False, timeout=timeout + 60
        )
    except subprocess.TimeoutExpired:
        return {"skipped": f"csp peer did not finish within {timeout + 60:.0f}s"}
    for line in reversed(run.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    return {"skipped": f"csp peer exited {run.returncode} without a result: {_tail(run.stderr)}"}
