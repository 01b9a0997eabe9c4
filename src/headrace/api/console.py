"""The web console: static files served at ``/console`` (docs/console.md).

The console is plain ES modules and CSS in ``headrace/console/`` (no build step); its
one npm dependency, uPlot, is installed by ``scripts/setup.sh`` (``npm ci`` in that
directory) and served from its ``node_modules`` under ``/console/vendor/``. Without it
the console answers a page saying how to install it (503), and the hub runs on.

The console talks to the admin API like any client (session cookie + CSRF header, or an
admin token); these routes only hand out files, so they need no authentication.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from litestar import Response, Router, get
from litestar.params import PathParameter

from ..errors import NotFound

ROOT = Path(__file__).resolve().parent.parent / "console"
# what /console/vendor/<name> serves: files of the npm packages, nothing else of node_modules
VENDOR = {
    "uPlot.esm.js": ROOT / "node_modules" / "uplot" / "dist" / "uPlot.esm.js",
    "uPlot.min.css": ROOT / "node_modules" / "uplot" / "dist" / "uPlot.min.css",
}
TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}
# everything from the hub itself; images also from blob: (file previews) and data:
CSP = (
    "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-cache",  # revalidated each time: a new hub version shows at once
}

NOT_INSTALLED = """<!doctype html><html lang="en"><meta charset="utf-8">
<title>headrace console: not installed</title>
<body style="font-family:sans-serif;max-width:40em;margin:3em auto">
<h1>The console's assets are not installed</h1>
<p>The hub is running; only the web console is missing its JavaScript dependency
(uPlot). Install it with <code>bash scripts/setup.sh</code> (it runs
<code>npm ci</code> in <code>src/headrace/console</code>), then reload this page.</p>
<p>The admin API works meanwhile: <a href="/api/docs">/api/docs</a>.</p>
</body></html>"""


def installed() -> bool:
    return all(p.is_file() for p in VENDOR.values())


def _file(path: Path) -> Response[Any]:
    try:
        body = path.read_bytes()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise NotFound("no such console file") from None
    return Response(body, media_type=TYPES[path.suffix], headers=HEADERS)


# "/console" and "/console/" are one route to Litestar; the page uses absolute paths
@get("/console", include_in_schema=False, sync_to_thread=False)
def console_index() -> Response[Any]:
    if not installed():
        return Response(NOT_INSTALLED, status_code=503, media_type=TYPES[".html"], headers=HEADERS)
    return _file(ROOT / "index.html")


@get("/console/{path:path}", include_in_schema=False, sync_to_thread=False)
def console_file(path: Annotated[str, PathParameter()]) -> Response[Any]:
    rel = path.lstrip("/")
    if rel.startswith("vendor/"):
        target = VENDOR.get(rel[len("vendor/") :])
        if target is None:
            raise NotFound("no such console file")
        return _file(target)
    parts = rel.split("/")
    # only the console's own files: no dot files, no node_modules, no parent directories
    if (
        not rel
        or any(not p or p.startswith(".") for p in parts)
        or parts[0] == "node_modules"
        or Path(rel).suffix not in TYPES
    ):
        raise NotFound("no such console file")
    target = (ROOT / rel).resolve()
    if not target.is_relative_to(ROOT):
        raise NotFound("no such console file")
    return _file(target)


console_router = Router(
    path="/", route_handlers=[console_index, console_file], include_in_schema=False
)
