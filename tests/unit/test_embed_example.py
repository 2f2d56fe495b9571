"""The README's embedding example is the page the demo serves, under the policy it documents."""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

from service.demo.embedding import EXAMPLE_URL, example_origins, example_page, host_policy

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_shows_the_demos_example_page_word_for_word():
    assert f"```html\n{example_page(EXAMPLE_URL)}```" in README.read_text("utf-8")


def test_the_example_points_everything_at_the_url_it_is_given():
    page = example_page("http://127.0.0.1:9090/")
    assert "localhost:8080" not in page
    assert 'from "http://127.0.0.1:9090/static/livetables/embed.js"' in page
    assert 'const url = "http://127.0.0.1:9090/";' in page


def test_the_hosts_policy_allows_the_inline_script_by_its_hash_and_nothing_inline_else():
    url = "http://127.0.0.1:9090/"
    page = example_page(url)
    script = re.search(r'<script type="module">(.*?)</script>', page, re.S).group(1)
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    policy = host_policy(page, url)
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert f"'sha256-{digest}'" in directives["script-src"]
    assert "'unsafe-inline'" not in directives["script-src"]
    assert "'unsafe-eval'" not in directives["script-src"]
    assert directives["worker-src"] == "blob:"
    assert "ws://127.0.0.1:9090" in directives["connect-src"]
    assert directives["frame-src"] == "http://127.0.0.1:9090"


def test_the_demo_lists_the_examples_origins():
    assert example_origins("127.0.0.1", 8081) == ["http://localhost:8081", "http://127.0.0.1:8081"]
    assert example_origins("0.0.0.0", 8081) == ["http://localhost:8081", "http://127.0.0.1:8081"]
    assert "http://desk.example.test:8081" in example_origins("desk.example.test", 8081)
