"""The console's static files (api/console.py): what is served, what never is, and the
page shown when the npm dependency is not installed."""

from __future__ import annotations

from pathlib import Path

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from headrace.api import console
from headrace.api.common import EXCEPTION_HANDLERS


def client() -> TestClient[Litestar]:
    return TestClient(
        Litestar(route_handlers=[console.console_router], exception_handlers=EXCEPTION_HANDLERS)
    )


@pytest.mark.skipif(not console.installed(), reason="npm ci has not run (scripts/setup.sh)")
def test_serves_the_page_its_modules_and_the_vendored_chart() -> None:
    with client() as c:
        for path in ("/console", "/console/"):
            r = c.get(path, follow_redirects=False)
            assert r.status_code == 200 and "<title>headrace console</title>" in r.text
            assert "default-src 'self'" in r.headers["content-security-policy"]
            assert r.headers["x-content-type-options"] == "nosniff"
        r = c.get("/console/js/app.js")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/javascript")
        r = c.get("/console/vendor/uPlot.esm.js")
        assert r.status_code == 200 and "export" in r.text
        assert c.get("/console/style.css").headers["content-type"].startswith("text/css")
        # every module the page imports is there (a missing one is a blank console)
        index = (console.ROOT / "index.html").read_text()
        for ref in ("/console/style.css", "/console/js/app.js", "/console/vendor/uPlot.min.css"):
            assert ref in index and c.get(ref).status_code == 200, ref


@pytest.mark.parametrize(
    "path",
    [
        "/console/../pyproject.toml",
        "/console/%2e%2e/api/console.py",
        "/console/js/../../api/console.py",
        "/console/node_modules/uplot/package.json",
        "/console/package.json",
        "/console/.hidden.js",
        "/console/vendor/uPlot.d.ts",
        "/console/vendor/../../app.py",
        "/console/js/nope.js",
        "/console/js",
    ],
)
def test_serves_nothing_else(path: str) -> None:
    with client() as c:
        r = c.get(path)
        assert r.status_code == 404, (path, r.status_code, r.text[:200])


def test_without_the_npm_dependency_the_page_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(console, "VENDOR", {"uPlot.esm.js": tmp_path / "missing.js"})
    with client() as c:
        r = c.get("/console")
        assert r.status_code == 503
        assert "scripts/setup.sh" in r.text and "npm ci" in r.text
        assert c.get("/console/vendor/uPlot.esm.js").status_code == 404
