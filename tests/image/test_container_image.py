"""The container image, built from the Dockerfile and run with podman + runc against the broker.

No registry is reachable from the machines the suite runs on, so the base image is made
locally (scripts/make-base-image.sh: Debian bookworm by debootstrap, cached in
~/.cache/livetables) and passed as the Dockerfile's PYTHON_IMAGE build argument; the build
itself is scripts/build-image.sh, the command the README gives. The container then runs the
way the Helm chart runs it: as uid 10001, with a read-only root filesystem and only /tmp
writable, no capabilities, ``--network host`` to reach the test broker on loopback.

Skipped, saying why, where podman cannot run containers (not root, tools missing, or a
trivial container failing); any failure of the image itself fails the test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.localkafka.broker import free_port
from tests.helpers import http_get, json_bytes, produce, wait_until

ROOT = Path(__file__).resolve().parents[2]
BASE_IMAGE = "localhost/livetables-base:bookworm"
TOOLS = ("podman", "runc", "debootstrap")
USER = 10001
CONFIG = """\
kafka: {{bootstrap_servers: "{bootstrap}"}}
server: {{host: 127.0.0.1, port: {port}}}
tables:
  t:
    topic: {topic}
    schema: {{id: string, qty: integer}}
"""


def _podman_env(tmp: Path) -> dict[str, str]:
    """runc, and no default ulimits: what podman needs on these hosts (FIELD-NOTES)."""
    conf = tmp / "containers.conf"
    conf.write_text('[containers]\ndefault_ulimits = []\n\n[engine]\nruntime = "runc"\n')
    return {**os.environ, "CONTAINERS_CONF": str(conf)}


def _run(args: list[str], env: dict[str, str], timeout: float = 120, **kw):
    return subprocess.run(
        args, env=env, capture_output=True, text=True, timeout=timeout, check=False, **kw
    )


def _why_podman_cannot_run(env: dict[str, str]) -> str | None:
    if os.geteuid() != 0:
        return f"podman runs containers here as root only (this test runs as uid {os.geteuid()})"
    missing = [tool for tool in TOOLS if not shutil.which(tool)]
    if missing:
        return (
            f"{', '.join(missing)} not installed: `bash scripts/install-system-deps.sh --test` "
            "installs podman, runc and debootstrap (Debian/Ubuntu)"
        )
    info = _run(["podman", "info"], env)
    if info.returncode != 0:
        return f"`podman info` fails: {info.stderr.strip()[-300:]}"
    return None


@pytest.fixture(scope="module")
def podman_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    env = _podman_env(tmp_path_factory.mktemp("podman"))
    reason = _why_podman_cannot_run(env)
    if reason:
        pytest.skip(reason)
    made = _run(["bash", str(ROOT / "scripts" / "make-base-image.sh"), BASE_IMAGE], env, 900)
    if made.returncode != 0:
        reason = made.stderr[-500:]
        pytest.skip(f"no local base image (debootstrap needs Debian's mirror): {reason}")
    trial = _run(["podman", "run", "--rm", "--network", "host", BASE_IMAGE, "true"], env)
    if trial.returncode != 0:
        pytest.skip(f"podman cannot run a container here: {trial.stderr.strip()[-300:]}")
    return env


@pytest.fixture(scope="module")
def image(podman_env: dict[str, str]) -> Iterator[str]:
    tag = f"localhost/livetables-test:{uuid.uuid4().hex[:8]}"
    built = _run(["bash", str(ROOT / "scripts" / "build-image.sh"), tag], podman_env, 1800)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    try:
        yield tag
    finally:
        _run(["podman", "rmi", "--force", tag], podman_env)


@pytest.fixture
def container(image: str, podman_env: dict[str, str], kafka, topic_name: str, tmp_path: Path):
    """The image serving table ``t`` from the broker, as the chart runs it."""
    kafka.create_topic(topic_name, partitions=2)
    rows = ((i % 2, None, json_bytes({"id": f"c-{i}", "qty": i})) for i in range(500))
    produce(kafka.bootstrap, topic_name, rows)
    port = free_port()
    config = tmp_path / "livetables.yaml"
    config.write_text(CONFIG.format(bootstrap=kafka.bootstrap, port=port, topic=topic_name))
    config.chmod(0o644)
    name = f"livetables-test-{uuid.uuid4().hex[:8]}"
    started = _run(
        [
            "podman", "run", "--detach", "--name", name, "--network", "host",
            "--read-only", "--read-only-tmpfs=false", "--tmpfs", "/tmp:rw,size=64m,mode=1777",
            "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
            "--volume", f"{config}:/etc/livetables/livetables.yaml:ro",
            image,
        ],
        podman_env,
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    try:
        yield name, f"http://127.0.0.1:{port}"
    finally:
        logs = _run(["podman", "logs", name], podman_env)
        (tmp_path / "container.log").write_text(logs.stdout + logs.stderr)
        _run(["podman", "rm", "--force", "--time", "0", name], podman_env)


def test_the_image_serves_a_fed_table_as_non_root_on_a_read_only_root_and_stops_cleanly(
    container, podman_env: dict[str, str]
) -> None:
    name, url = container

    def logs() -> str:
        result = _run(["podman", "logs", name], podman_env)
        return (result.stdout + result.stderr)[-3000:]

    def ready() -> bool:
        state = _run(["podman", "inspect", "--format", "{{.State.Running}}", name], podman_env)
        assert state.stdout.strip() == "true", f"the container stopped:\n{logs()}"
        return http_get(f"{url}/readyz")[0] == 200

    wait_until(ready, 120, "/readyz 200 from the container")
    status, tables = http_get(f"{url}/api/tables")
    assert status == 200 and tables[0]["rows"] == 500, tables

    # The pages and the browser files packaged in the image.
    assert http_get(f"{url}/tables/t")[0] == 200
    assert http_get(f"{url}/static/perspective/viewer/dist/cdn/perspective-viewer.js")[0] == 200

    # Non-root: the process as the host kernel sees it.
    pid = _run(["podman", "inspect", "--format", "{{.State.Pid}}", name], podman_env).stdout
    status_lines = Path(f"/proc/{pid.strip()}/status").read_text().splitlines()
    uids = next(line for line in status_lines if line.startswith("Uid:")).split()[1:]
    assert uids == [str(USER)] * 4, uids

    # Read-only root: even root inside the container cannot write outside /tmp.
    write = _run(["podman", "exec", "--user", "0", name, "touch", "/opt/x"], podman_env)
    assert write.returncode != 0 and "Read-only file system" in write.stderr, write.stderr
    assert _run(["podman", "exec", name, "touch", "/tmp/x"], podman_env).returncode == 0

    # SIGTERM: consumers stop, websockets close, exit code 0.
    killed = _run(["podman", "kill", "--signal", "TERM", name], podman_env)
    assert killed.returncode == 0, killed.stderr
    waited = _run(["podman", "wait", name], podman_env, timeout=60)
    assert waited.stdout.strip() == "0", f"exit code {waited.stdout!r}\n{logs()}"
