"""Browser tests of the web console: a real hub, Debian's Chromium driven by Playwright.

Playwright's own browser download is never used (``executable_path`` is Debian's
``/usr/bin/chromium``, installed by scripts/setup.sh). Every page a test opens is watched:
a console error or an uncaught exception fails the test, except a failed resource the
test said it expects (an org viewer's refused write, say).

Screenshots go to a temporary directory, or to ``$HEADRACE_SCREENSHOTS`` when set (the
committed ones in docs/console/ are made with ``HEADRACE_SCREENSHOTS=docs/console``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ADMIN_TOKEN, HubProcess, running_hub

CHROMIUM = os.environ.get("HEADRACE_CHROMIUM", "/usr/bin/chromium")
TIMEOUT_MS = 30_000  # the machine is shared: waits are generous

sync_api = pytest.importorskip("playwright.sync_api")


class Watch:
    """Console errors and uncaught exceptions of one page."""

    def __init__(self, page: Any):
        self.errors: list[str] = []
        self.expected: list[tuple[int, str]] = []  # (status, part of the URL)
        page.on("console", self._console)
        page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))
        page.on("request", self._request)
        self.changes = 0  # state-changing API requests seen

    def _request(self, req: Any) -> None:
        """Every state change the console sends carries the CSRF token (or the admin
        token); the login itself is the one exception."""
        if req.method in ("GET", "HEAD") or "/api/v1/" not in req.url:
            return
        self.changes += 1
        if req.method == "POST" and req.url.split("?")[0].endswith("/api/v1/session"):
            return
        h = req.headers
        if not h.get("x-csrf-token") and not h.get("authorization"):
            self.errors.append(f"{req.method} {req.url} without X-CSRF-Token")

    def expect(self, status: int, url_part: str) -> None:
        """A response the test provokes on purpose (Chromium logs each failed one)."""
        self.expected.append((status, url_part))

    def _console(self, msg: Any) -> None:
        if msg.type != "error":
            return
        url = (msg.location or {}).get("url", "")
        m = re.search(r"status of (\d+)", msg.text)
        failed = msg.text.startswith("Failed to load resource") and m is not None
        if failed and any(int(m.group(1)) == st and part in url for st, part in self.expected):  # type: ignore[union-attr]
            return
        self.errors.append(f"console error: {msg.text} ({url})")

    def check(self) -> None:
        assert not self.errors, "\n".join(self.errors)


class Console:
    """A browser page on the hub's console, with its watch and the hub's admin API."""

    def __init__(self, page: Any, hub: HubProcess, shots: Path):
        self.page = page
        self.hub = hub
        self.watch = Watch(page)
        self.shots = shots
        self.url = hub.url + "/console/"

    def open(self, route: str = "/") -> None:
        self.page.goto(self.url + "#" + route)

    def route(self, route: str) -> None:
        """Navigate inside the running console (no reload)."""
        self.page.evaluate("r => { location.hash = '#' + r; }", route)

    def shot(self, name: str, top: Any = None) -> None:
        """A screenshot of the viewport (``top``: a locator scrolled to the top first);
        the notices of the moment are left out."""
        self.page.evaluate("() => document.getElementById('toasts').replaceChildren()")
        if top is not None:
            top.evaluate("e => e.scrollIntoView({block: 'start'})")
        self.page.screenshot(path=str(self.shots / f"{name}.png"))

    def login_token(self) -> None:
        self.open("/login")
        self.page.get_by_text("Log in with the admin token instead").click()
        self.page.get_by_label("Admin token").fill(ADMIN_TOKEN)
        self.page.get_by_role("button", name="Use admin token").click()
        sync_api.expect(
            self.page.get_by_role("heading", name="Organizations", level=1)
        ).to_be_visible()

    def login(self, username: str, password: str) -> None:
        self.open("/login")
        self.page.get_by_label("Username").fill(username)
        self.page.get_by_label("Password").fill(password)
        self.page.get_by_role("button", name="Log in", exact=True).click()
        sync_api.expect(self.page.get_by_role("button", name="Log out")).to_be_visible()


# module scope, not session: Playwright's sync API runs an event loop on this thread while
# it is open, and the asyncio tests collected after these would find it running
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing: bash scripts/setup.sh installs Debian's chromium")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--headless=new", "--disable-gpu", "--disable-dev-shm-usage"],
        )
        yield b
        b.close()


# one hub per module; it keeps an hour of the outbound stream, for the rule pages' replay
@pytest.fixture(scope="module")
def console_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    data = tmp_path_factory.mktemp("console") / "data"
    yield from running_hub(data, ["--set", "stream.replay_seconds=3600"])


@pytest.fixture(scope="module")
def admin(console_hub: HubProcess) -> Iterator[httpx.Client]:
    with console_hub.client() as c:
        yield c


@pytest.fixture(scope="session")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = os.environ.get("HEADRACE_SCREENSHOTS")
    if target:
        p = Path(target)
        p.mkdir(parents=True, exist_ok=True)
        return p
    return tmp_path_factory.mktemp("screenshots")


def new_console(browser: Any, hub: HubProcess, shots: Path, **context: Any) -> Console:
    ctx = browser.new_context(
        viewport=context.pop("viewport", {"width": 1280, "height": 800}),
        accept_downloads=True,
        **context,
    )
    ctx.set_default_timeout(TIMEOUT_MS)
    page = ctx.new_page()
    return Console(page, hub, shots)


@pytest.fixture
def console(browser: Any, console_hub: HubProcess, shots: Path) -> Iterator[Console]:
    c = new_console(browser, console_hub, shots)
    sync_api.expect.set_options(timeout=TIMEOUT_MS)
    yield c
    try:
        c.watch.check()
    finally:
        c.page.context.close()


def has_accounts(hub: HubProcess) -> bool:
    """Does this hub have operator accounts (the session API)?"""
    r = httpx.get(hub.url + "/api/v1/session")
    return r.status_code != 404
