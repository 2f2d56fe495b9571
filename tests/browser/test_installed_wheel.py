"""A user's install: the built wheel in a fresh virtualenv serves pages that render in Chromium.

No npm, no source tree, no LIVETABLES_ASSETS: the browser files must come from the
wheel. See tests/wheelhouse.py for how the virtualenv gets its dependencies.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect

from service.localkafka.broker import free_port
from tests.helpers import http_get, json_bytes, produce, wait_until
from tests.wheelhouse import ROOT, build, clean_env, fresh_venv, installed_from, the_one

CONFIG = """\
kafka: {{bootstrap_servers: "{bootstrap}"}}
server: {{host: 127.0.0.1, port: {port}}}
tables:
  t:
    topic: {topic}
    schema: {{id: string, sym: string, qty: integer}}
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``bin`` directory of a virtualenv that holds only the freshly built wheel."""
    out = tmp_path_factory.mktemp("dist")
    result = build(ROOT, out)
    assert result.returncode == 0, result.stdout + result.stderr
    return fresh_venv(tmp_path_factory.mktemp("fresh") / "venv", the_one(out, "*.whl"))


@pytest.fixture
def served(installed: Path, kafka, topic_name: str, tmp_path: Path) -> Iterator[str]:
    """``livetables serve`` from the fresh virtualenv, run from outside the source tree."""
    kafka.create_topic(topic_name, partitions=2)
    port = free_port()
    config = tmp_path / "livetables.yaml"
    config.write_text(CONFIG.format(bootstrap=kafka.bootstrap, port=port, topic=topic_name))
    log = (tmp_path / "serve.log").open("w")
    process = subprocess.Popen(
        [str(installed / "livetables"), "serve", "--config", str(config)],
        cwd=tmp_path,
        env=clean_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: http_get(f"{url}/readyz")[0] == 200, 60, "/readyz 200")
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0, (tmp_path / "serve.log").read_text()
        log.close()


def test_the_wheel_installs_the_package_and_its_browser_files(installed: Path) -> None:
    venv = installed.parent
    assert installed_from(installed, "service").is_relative_to(venv)
    code = "from service.web.assets import perspective_assets_dir as d; print(d())"
    out = subprocess.run(
        [str(installed / "python"), "-c", code],
        cwd=venv,
        env=clean_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(out.stdout.strip()).is_relative_to(venv), out.stdout


def test_a_table_page_renders_rows_from_an_installed_wheel(
    served: str, kafka, topic_name: str, new_page
) -> None:
    page = new_page(f"{served}/tables/t")
    page.wait_for_function("() => document.documentElement.dataset.state === 'live'", timeout=30000)
    rows = ((i % 2, None, json_bytes({"id": f"w-{i}", "sym": "WHL", "qty": i})) for i in range(10))
    produce(kafka.bootstrap, topic_name, rows)
    grid = page.locator("perspective-viewer-datagrid regular-table")
    expect(grid.get_by_text("w-9", exact=True)).to_be_visible(timeout=20000)
    new_page.screenshot(page, "installed-wheel")
