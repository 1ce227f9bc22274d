"""Serve the built static site (`dist/`) the way the app needs it served.

- Correct MIME types: a `.wasm` served as anything but `application/wasm` makes `loadPyodide`
  hang forever instead of failing, and `.mjs` must be a JavaScript type for module workers.
- COOP/COEP headers by default, so the page is `crossOriginIsolated` and onnxruntime-web can use
  threads; `isolate=False` serves without them (the single-thread path a widget host gets).
- `Cache-Control: no-cache`: browsers revalidate (cheap 304s) and the service worker, not the
  HTTP cache, decides what is kept offline.

This is a native-only module (the browser never serves), so threads are fine here.
"""

from __future__ import annotations

import functools
import http.server
from pathlib import Path
from typing import Any

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


class StaticHandler(http.server.SimpleHTTPRequestHandler):
    """SimpleHTTPRequestHandler with our MIME table and isolation headers."""

    extensions_map = {  # noqa: RUF012 - the stdlib declares it as a plain class attribute
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        **MIME_TYPES,
    }
    isolate = True
    quiet = True

    def end_headers(self) -> None:
        if self.isolate:
            self.send_header("Cross-Origin-Opener-Policy", "same-origin")
            self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        self.send_header("Cross-Origin-Resource-Policy", "same-origin")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        if not self.quiet:
            super().log_message(format, *args)


class StaticServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def make_server(root: Path, host: str = "127.0.0.1", port: int = 8000, *,
                isolate: bool = True, quiet: bool = True) -> StaticServer:
    """A server for `root`, bound but not yet serving (call `serve_forever`)."""
    if not (root / "index.html").exists():
        raise FileNotFoundError(f"{root} has no index.html: run ./build.sh first")
    handler = type("Handler", (StaticHandler,), {"isolate": isolate, "quiet": quiet})
    return StaticServer((host, port), functools.partial(handler, directory=str(root)))
