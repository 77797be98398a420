"""The service's own page and its static files (``wildfer/serve/static``): a fixed table of
assets, read once from the package, and their handlers; :mod:`wildfer.serve.routes` mounts
them on its router."""

from __future__ import annotations

import functools
from importlib import resources

from fastapi.responses import Response

#: The page's assets: URL path -> (file in ``wildfer/serve/static``, media type). A fixed
#: table: the client's path is only ever a key in it, never a file system path.
ASSETS = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/docs": ("docs.html", "text/html; charset=utf-8"),
    "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/static/docs.js": ("docs.js", "text/javascript; charset=utf-8"),
    "/static/style.css": ("style.css", "text/css; charset=utf-8"),
    "/favicon.svg": ("favicon.svg", "image/svg+xml"),
    "/favicon.ico": ("favicon.svg", "image/svg+xml"),
}
#: Content security policy of the pages: only this server's own scripts, styles and API.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
       "media-src 'self' blob: mediastream:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
       "frame-ancestors 'none'; form-action 'self'")


@functools.cache
def load_assets() -> dict[str, tuple[bytes, str]]:
    """:data:`ASSETS` read from the package: URL path -> (body, media type)."""
    root = resources.files("wildfer.serve") / "static"
    return {url: ((root / name).read_bytes(), mt) for url, (name, mt) in ASSETS.items()}


def asset_endpoint(url: str):
    """The handler of the asset at ``url`` (a key of :data:`ASSETS`): its bytes, not cached
    by the browser, and the :data:`CSP` on a page."""

    def asset() -> Response:
        body, mt = load_assets()[url]
        headers = {"Cache-Control": "no-cache"}
        if mt.startswith("text/html"):
            headers["Content-Security-Policy"] = CSP
        return Response(body, media_type=mt, headers=headers)

    return asset


__all__ = ["ASSETS", "CSP", "load_assets", "asset_endpoint"]
