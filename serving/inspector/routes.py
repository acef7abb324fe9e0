"""The inspector's routes on the REST app: `/` and `/inspect` redirect to the page, its static
files come from this package with strict security headers, and /inspect/api/models says what
the manifests say.

The static files are open (a browser cannot send a bearer token when it navigates to a page,
and they hold nothing secret); the model list and every REST call the page makes go through the
app's token check like any client's, with the token the user types into the page.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from serving.inspector.models import describe_models

if TYPE_CHECKING:
    from serving.services.context import ServerContext

log = logging.getLogger("serving.inspector")

PAGE = "/inspect/"
STATIC_DIR = Path(__file__).parent
CONTENT_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css",
                 ".svg": "image/svg+xml"}
# nothing but this origin's own files: no inline script or style, no plugin, no framing; the
# page draws uploaded images through canvases, so it loads no image from elsewhere either
CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; "
                           "img-src 'self'; connect-src 'self'; object-src 'none'; "
                           "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}
# revalidate every time: a server upgrade ships a new page, and the ETag makes an unchanged
# file a 304 of no body
STATIC_CACHE = "no-cache"


@dataclass(frozen=True)
class StaticFile:
    body: bytes
    content_type: str
    etag: str


def static_files(folder: Path = STATIC_DIR) -> dict[str, StaticFile]:
    """The page's files by name, read once: a few dozen kilobytes, served from memory."""
    files = {}
    for path in sorted(folder.iterdir()):
        if path.suffix in CONTENT_TYPES and path.is_file():
            body = path.read_bytes()
            files[path.name] = StaticFile(body, CONTENT_TYPES[path.suffix],
                                          '"' + hashlib.sha256(body).hexdigest()[:32] + '"')
    return files


FILES = static_files()
# what needs no token: the redirects and the static files (the model list does)
OPEN_PATHS = frozenset({"/", "/inspect", PAGE, *(PAGE + name for name in FILES)})


def add_routes(app: web.Application, ctx: ServerContext) -> None:
    inspector = Inspector(ctx, FILES)
    app.add_routes([
        web.get("/", inspector.redirect),
        web.get("/inspect", inspector.redirect),
        web.get(PAGE, inspector.index),
        web.get("/inspect/api/models", inspector.models),
        web.get(PAGE + "{file}", inspector.static),
    ])
    log.info("web inspector at %s on the HTTP port (--inspector off turns it off)", PAGE)


class Inspector:
    def __init__(self, ctx: ServerContext, files: dict[str, StaticFile]) -> None:
        self.ctx = ctx
        self.files = files

    async def redirect(self, request: web.Request) -> web.Response:
        # returned, not raised: the app's error middleware turns raised HTTP errors into JSON
        return web.Response(status=302, headers={"Location": PAGE, **SECURITY_HEADERS})

    async def index(self, request: web.Request) -> web.Response:
        return self._send(request, "index.html")

    async def static(self, request: web.Request) -> web.Response:
        return self._send(request, request.match_info["file"])

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response(describe_models(self.ctx), headers={
            "Cache-Control": "no-store", **SECURITY_HEADERS})

    def _send(self, request: web.Request, name: str) -> web.Response:
        file = self.files.get(name)
        if file is None:
            raise web.HTTPNotFound()
        headers = {"Cache-Control": STATIC_CACHE, "ETag": file.etag, **SECURITY_HEADERS}
        if file.etag in request.headers.get("If-None-Match", ""):
            return web.Response(status=304, headers=headers)
        return web.Response(body=file.body, content_type=file.content_type, charset="utf-8",
                            headers=headers)
