"""Serve the built static site (`dist/`) the way the app needs it served.

- Correct MIME types: a `.wasm` served as anything but `application/wasm` makes `loadPyodide`
  hang forever instead of failing, and `.mjs` must be a JavaScript type for module workers.
- Policy headers per file (`policy_headers`): the app itself gets COOP/COEP (so the page is
  `crossOriginIsolated` and onnxruntime-web can use threads; `isolate=False` leaves them out)
  and may be framed only by itself; the widget's pieces that other sites load are the
  exceptions (see `policy_headers`).
- `/embed.json` is the deployment's embed allowlist (see `server/embed.py`), answered from the
  server's configuration so the frame's own check and the `frame-ancestors` header agree.
- `Cache-Control: no-cache`: browsers revalidate (cheap 304s) and the service worker, not the
  HTTP cache, decides what is kept offline.

This is a native-only module (the browser never serves), so threads are fine here.
"""

from __future__ import annotations

import functools
import http.server
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .embed import config_json, frame_ancestors, normalize_origins, read_origins

MIME_TYPES = {
    ".wasm": "application/wasm",
    ".mjs": "text/javascript",
    ".js": "text/javascript",
    ".json": "application/json",
    ".webmanifest": "application/manifest+json",
    ".onnx": "application/octet-stream",
    ".whl": "application/zip",
    ".zip": "application/zip",
    ".txt": "text/plain; charset=utf-8",
    ".md": "text/markdown; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}

WIDGET_SCRIPT = "/widget.js"
EMBED_GATE = "/embed-gate.html"
EMBED_PAGE = "/embed.html"
EMBED_CONFIG = "/embed.json"
_COOP = ("Cross-Origin-Opener-Policy", "same-origin")
_COEP = ("Cross-Origin-Embedder-Policy", "require-corp")


def policy_headers(path: str, *, isolate: bool, ancestors: str) -> list[tuple[str, str]]:
    """The cross-origin policy headers for one request path.

    - `widget.js` is loaded by `<script src>` on other sites, some of them cross-origin
      isolated themselves: `CORP: cross-origin`, and CORS so a host may pin it with SRI.
    - The frame pages go inside other sites' pages: `CORP: cross-origin` plus COEP, which a
      cross-origin isolated host requires of its frames. `embed.html` (the agent) may be
      framed only by the allowlist (`ancestors`, a `frame-ancestors` directive); the gate in
      front of it may be framed anywhere, because all it does is check and refuse or go on.
    - Everything else is the app's own: `CORP: same-origin`, COOP/COEP when `isolate`, and
      pages that only the app itself may frame (no clickjacking of the full app).
    """
    name = urlsplit(path).path
    if name == WIDGET_SCRIPT:
        return [("Cross-Origin-Resource-Policy", "cross-origin"),
                ("Access-Control-Allow-Origin", "*")]
    if name in (EMBED_GATE, EMBED_PAGE):
        headers = [("Cross-Origin-Resource-Policy", "cross-origin"), _COEP]
        if name == EMBED_PAGE:
            headers.append(("Content-Security-Policy", ancestors))
        return headers
    headers = [("Cross-Origin-Resource-Policy", "same-origin")]
    if isolate:
        headers += [_COOP, _COEP]
    if name.endswith((".html", "/")):
        headers.append(("Content-Security-Policy", "frame-ancestors 'self'"))
    return headers


class StaticHandler(http.server.SimpleHTTPRequestHandler):
    """SimpleHTTPRequestHandler with our MIME table, policy headers and embed allowlist."""

    extensions_map = {  # noqa: RUF012 - the stdlib declares it as a plain class attribute
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        **MIME_TYPES,
    }
    isolate = True
    quiet = True
    ancestors = frame_ancestors([])
    embed_config = config_json([])

    def do_GET(self) -> None:
        if not self._embed_config(head=False):
            super().do_GET()

    def do_HEAD(self) -> None:
        if not self._embed_config(head=True):
            super().do_HEAD()

    def _embed_config(self, *, head: bool) -> bool:
        if urlsplit(self.path).path != EMBED_CONFIG:
            return False
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.embed_config)))
        self.end_headers()
        if not head:
            self.wfile.write(self.embed_config)
        return True

    def end_headers(self) -> None:
        for key, value in policy_headers(self.path, isolate=self.isolate,
                                         ancestors=self.ancestors):
            self.send_header(key, value)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        if not self.quiet:
            super().log_message(format, *args)


class StaticServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    embed_origins: tuple[str, ...] = ()


def make_server(root: Path, host: str = "127.0.0.1", port: int = 8000, *,
                isolate: bool = True, quiet: bool = True,
                embed_origins: Sequence[str] | None = None) -> StaticServer:
    """A server for `root`, bound but not yet serving (call `serve_forever`).

    `embed_origins` are the sites allowed to embed the widget; None reads `root/embed.json`.
    Raises ValueError for an origin that is not one (see `server/embed.py`).
    """
    if not (root / "index.html").exists():
        raise FileNotFoundError(f"{root} has no index.html: run ./build.sh first")
    origins = (normalize_origins(embed_origins) if embed_origins is not None
               else read_origins(root / "embed.json"))
    handler = type("Handler", (StaticHandler,), {
        "isolate": isolate, "quiet": quiet, "ancestors": frame_ancestors(origins),
        "embed_config": config_json(origins)})
    server = StaticServer((host, port), functools.partial(handler, directory=str(root)))
    server.embed_origins = tuple(origins)
    return server
