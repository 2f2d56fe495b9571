"""Real Chromium (Debian's package) driven by Playwright.

Every page a test opens collects its page errors and failed requests; a test
fails if there are any. Each test saves screenshots under
``test-output/screenshots/`` so a person can look at what was rendered.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-output" / "screenshots"


def chromium_path() -> str:
    for candidate in ("/usr/bin/chromium", shutil.which("chromium") or ""):
        if candidate and Path(candidate).exists():
            return candidate
    raise RuntimeError("Chromium is not installed: run scripts/install-system-deps.sh")


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    # Package scope: Playwright's sync API keeps an event loop marked running in this
    # thread while it is open, which would break asyncio.run() in later test packages.
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def expected_failure(url: str, failure: str | None) -> bool:
    """Failures that reconnecting pages cause on purpose while the service is down.

    Their websockets retry; a feed whose websocket fails before it opens asks
    ``/api/tables`` why (static/feed.js), which fails too while nothing listens.
    """
    if "/replicate/" in url or url.endswith("/websocket"):
        return True
    return url.split("?")[0].endswith("/api/tables") and failure == "net::ERR_CONNECTION_REFUSED"


class PageProblems:
    def __init__(self) -> None:
        self.errors: list[str] = []
        # (status, URL part): refusals a test provokes on purpose (see new_page).
        self.expected: list[tuple[int, str]] = []

    def unexpected(self, status: int, url: str) -> bool:
        return status >= 400 and not any(s == status and p in url for s, p in self.expected)

    def watch(self, page: Page) -> None:
        page.on("pageerror", lambda error: self.errors.append(f"page error: {error}"))
        # Chromium reports what the Content-Security-Policy blocked on the console, and
        # livetables' scripts report there what they could not do (a viewer that failed).
        page.on(
            "console",
            lambda message: (
                self.errors.append(f"CSP: {message.text}")
                if "Content Security Policy" in message.text
                else self.errors.append(f"console: {message.text}")
                if message.type == "error" and message.text.startswith("livetables:")
                else None
            ),
        )
        page.on(
            "requestfailed",
            lambda request: (
                None
                if expected_failure(request.url, request.failure)
                else self.errors.append(f"request failed: {request.url} {request.failure}")
            ),
        )
        page.on(
            "response",
            lambda response: (
                self.errors.append(f"HTTP {response.status}: {response.url}")
                if self.unexpected(response.status, response.url)
                else None
            ),
        )


@pytest.fixture
def new_page(browser: Browser, request: pytest.FixtureRequest) -> Iterator:
    """Open pages that fail the test on any page error or failed request."""
    problems = PageProblems()
    pages: list[Page] = []
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)

    def open_page(url: str) -> Page:
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        page = context.new_page()
        problems.watch(page)
        page.goto(url)
        pages.append(page)
        return page

    def screenshot(page: Page, label: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}-{label}.png"
        page.screenshot(path=str(path))
        return path

    def expect_refusal(status: int, url_part: str) -> None:
        """Let answers of ``status`` to URLs containing ``url_part`` pass: the test provokes
        them."""
        problems.expected.append((status, url_part))

    open_page.screenshot = screenshot  # type: ignore[attr-defined]
    open_page.expect_refusal = expect_refusal  # type: ignore[attr-defined]
    yield open_page
    for i, page in enumerate(pages):
        if not page.is_closed():
            screenshot(page, f"end-{i}")
            page.context.close()
    assert not problems.errors, problems.errors
