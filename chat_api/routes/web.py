"""The browser screens' static files: the chat widget script, a demo host page and the
operator dashboard (plain ES modules, no build step). Nothing here touches the database; the
screens talk to the widget and operator APIs like any other client.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, RedirectResponse

from chat_api.errors import NotFoundError
from chat_api.routing import TransactionEndingRoute

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
DASHBOARD_DIR = WEB_DIR / "dashboard"

_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".svg": "image/svg+xml",
}
# The dashboard loads only its own files and talks only to this origin.
DASHBOARD_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
_NO_CACHE = {"Cache-Control": "no-cache"}

router = APIRouter(route_class=TransactionEndingRoute, include_in_schema=False)


def _file(path: Path, headers: dict[str, str] | None = None) -> FileResponse:
    return FileResponse(
        path,
        media_type=_TYPES[path.suffix],
        headers={**_NO_CACHE, "X-Content-Type-Options": "nosniff", **(headers or {})},
    )


@router.get("/widget.js")
def widget_script() -> FileResponse:
    """The embeddable widget: `<script src="https://api.example.com/widget.js" data-...>`."""
    return _file(WEB_DIR / "widget.js")


@router.get("/widget.css")
def widget_styles() -> FileResponse:
    """The widget's styles; widget.js loads them from beside itself into its shadow root."""
    return _file(WEB_DIR / "widget.css")


@router.get("/demo")
def demo_page() -> FileResponse:
    """A host page with the widget on it, for trying the widget against this server."""
    return _file(WEB_DIR / "demo.html")


@router.get("/dashboard")
def dashboard_root() -> RedirectResponse:
    return RedirectResponse("/dashboard/")


@router.get("/dashboard/")
def dashboard_page() -> FileResponse:
    return _file(DASHBOARD_DIR / "index.html", {"Content-Security-Policy": DASHBOARD_CSP})


@router.get("/dashboard/{asset:path}")
def dashboard_asset(asset: str) -> FileResponse:
    path = (DASHBOARD_DIR / asset).resolve()
    if not path.is_relative_to(DASHBOARD_DIR) or not path.is_file() or path.suffix not in _TYPES:
        raise NotFoundError(f"no dashboard file {asset!r}")
    return _file(path)
