"""Serve the built static site (`dist/`) the way the app needs it served.

- Correct MIME types: a `.wasm` served as anything but `application/wasm` makes `loadPyodide`
  hang forever instead of failing, and `.mjs` must be a JavaScript type for module workers.
- Policy headers per file (`policy_headers`): the app itself gets COOP/COEP (so the page is
  `crossOriginIsolated` and onnxruntime-web can use threads; `isolate=False` leaves them out)
  and may be framed only by itself; the widget's pieces that other sites load are the
  exceptions (see `policy_headers`).
- `/embed.json` is the deployment's embed allowlist (see `server/embed.py`), answered from the
  server's configuration so the frame's own check and the `frame-ancestors` header agree.
- Caching: a URL with a `?v=` version (the worker asks for the runtime, the snapshot, models
  and knowledge bases that way, from `boot-manifest.json`) is `immutable` for a year, so a warm
  visit without the service worker (the widget's frame on other sites) revalidates none of its
  large files; everything else is `no-cache` (cheap 304s), and the service worker, not the
  HTTP cache, decides what is kept offline.
- Compression: a file with a `.gz` sibling (written by the build for large compressible files:
  the snapshot compresses ~6x) is sent gzip-encoded to clients that accept it.
- Each page's `<meta>` CSP is sent as a header too, with its `frame-ancestors` added.
- Hardened (issue 15): a path is decoded and normalised once and the headers come from the file
  it resolves to, so no spelling of a page (`/index.html%2f.`, `//x/../index.html`, `.HTML`)
  sheds its framing policy; no directory listings; NUL or undecodable paths are 400; an
  over-long request line gets its 414; symlinks out of the root are 404.

This is a native-only module (the browser never serves), so threads are fine here.
"""

from __future__ import annotations

import functools
import html.parser
import http.server
import io
import mimetypes
import os
import posixpath
from collections.abc import Sequence
from http import HTTPStatus
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote, unquote

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
    ".proto": "text/plain; charset=utf-8",
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
_EXTENSIONS = {**http.server.SimpleHTTPRequestHandler.extensions_map, **MIME_TYPES}
_PAGE_TYPES = ("text/html", "application/xhtml+xml")
_SELF_ONLY = "frame-ancestors 'self'"
# What an error page (the stdlib's, no scripts) may do: nothing, and only inside the app.
_ERROR_CSP = ("default-src 'none'",)
# Directives a `<meta>` CSP may not carry (browsers ignore them there), so neither may the header.
_META_IGNORED = {"frame-ancestors", "report-uri", "sandbox"}
_IMMUTABLE = "public, max-age=31536000, immutable"


def accepts_gzip(header: str | None) -> bool:
    """Whether an Accept-Encoding value allows gzip (`gzip;q=0` refuses it)."""
    for item in (header or "").split(","):
        coding, _, params = item.strip().partition(";")
        if coding.strip().lower() in ("gzip", "*"):
            q = params.strip().lower()
            return not (q.startswith("q=") and float(q[2:] or 0) == 0) if q else True
    return False


def is_versioned(target: str) -> bool:
    """Whether a request target names one version of a file (`?v=...`): cacheable for good."""
    query = target.split("#", 1)[0].partition("?")[2]
    return any(p.startswith("v=") and len(p) > 2 for p in query.split("&"))


def content_type(path: str) -> str:
    """The Content-Type for a file name: our table first, then `mimetypes` (as the stdlib)."""
    ext = posixpath.splitext(path)[1]
    for key in (ext, ext.lower()):
        if key in _EXTENSIONS:
            return _EXTENSIONS[key]
    guess, _ = mimetypes.guess_type(path)
    return guess or "application/octet-stream"


def is_page(path: str) -> bool:
    """Whether `path` (a canonical URL path) is served as a document a browser renders."""
    return path.endswith("/") or content_type(path).split(";")[0] in _PAGE_TYPES


def policy_headers(path: str, *, isolate: bool, ancestors: str,
                   page_csp: Sequence[str] = ()) -> list[tuple[str, str]]:
    """The cross-origin policy headers for one canonical path (as `StaticHandler` resolves it).

    - `widget.js` is loaded by `<script src>` on other sites, some of them cross-origin
      isolated themselves: `CORP: cross-origin`, and CORS so a host may pin it with SRI.
    - The frame pages go inside other sites' pages: `CORP: cross-origin` plus COEP, which a
      cross-origin isolated host requires of its frames. `embed.html` (the agent) may be
      framed only by the allowlist (`ancestors`, a `frame-ancestors` directive); the gate in
      front of it may be framed anywhere, because all it does is check and refuse or go on.
    - Everything else is the app's own: `CORP: same-origin`, COOP/COEP when `isolate`, and
      pages (any HTML, whatever the case of its extension) that only the app itself may frame.

    `page_csp` are the page's own `<meta>` policies (`meta_policies`), sent as the header's
    policies too, with the framing directive added to the first.
    """
    name = path.split("?", 1)[0].split("#", 1)[0]
    if name == WIDGET_SCRIPT:
        return [("Cross-Origin-Resource-Policy", "cross-origin"),
                ("Access-Control-Allow-Origin", "*")]
    if name in (EMBED_GATE, EMBED_PAGE):
        headers = [("Cross-Origin-Resource-Policy", "cross-origin"), _COEP]
        framing = ancestors if name == EMBED_PAGE else None
    else:
        headers = [("Cross-Origin-Resource-Policy", "same-origin")]
        if isolate:
            headers += [_COOP, _COEP]
        framing = _SELF_ONLY if is_page(name) else None
    policies = list(page_csp)
    if framing:
        policies[:1] = [f"{policies[0]}; {framing}" if policies else framing]
    if policies:
        headers.append(("Content-Security-Policy", ", ".join(policies)))
    return headers


def _header_policy(content: str) -> str | None:
    """A `<meta>` CSP as one header policy, or None if it cannot be one safely.

    Whitespace (CR/LF included) is collapsed, directives a meta policy may not carry are
    dropped, and a comma (which would split the header into two policies) or a non-ASCII
    character refuses the whole policy: the meta tag still applies it in the browser.
    """
    directives = []
    for part in content.split(";"):
        directive = " ".join(part.split())
        if directive and directive.split(" ", 1)[0].lower() not in _META_IGNORED:
            directives.append(directive)
    policy = "; ".join(directives)
    if not policy or "," in policy or not (policy.isascii() and policy.isprintable()):
        return None
    return policy


class _MetaPolicies(html.parser.HTMLParser):
    """The `<meta http-equiv="Content-Security-Policy">` contents of a document's head."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.policies: list[str] = []
        self.done = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "body":
            self.done = True
        if tag != "meta" or self.done:
            return
        values = {key.lower(): value or "" for key, value in attrs}
        if values.get("http-equiv", "").strip().lower() == "content-security-policy":
            self.policies.append(values.get("content", ""))

    def handle_endtag(self, tag: str) -> None:
        if tag == "head":
            self.done = True


@functools.lru_cache(maxsize=64)
def _meta_policies(path: str, mtime_ns: int, size: int) -> tuple[str, ...]:
    del mtime_ns, size  # the cache key: a rebuilt page is read again
    parser = _MetaPolicies()
    with open(path, "rb") as file:
        parser.feed(file.read(1 << 20).decode("utf-8", "replace"))
    return tuple(p for p in map(_header_policy, parser.policies) if p is not None)


def meta_policies(path: str) -> tuple[str, ...]:
    """The CSPs a page declares in `<meta>` tags, ready to send as header policies."""
    try:
        stat = os.stat(path)
        return _meta_policies(path, stat.st_mtime_ns, stat.st_size)
    except (OSError, ValueError):
        return ()


class _Refused(Exception):
    """A request answered with an error status instead of a file."""

    def __init__(self, status: HTTPStatus, location: str = "") -> None:
        super().__init__(status)
        self.status = status
        self.location = location


def canonical_parts(target: str) -> tuple[list[str], bool]:
    """A request target's path as segments, decoded and dot-normalised once.

    Returns (segments, names_a_directory). Raises `_Refused(400)` for what no file can be
    named: not origin-form, undecodable UTF-8, control characters (NUL: `open` would raise),
    backslashes, or `..` above the root.
    """
    raw = target.split("?", 1)[0].split("#", 1)[0]
    if not raw.startswith("/"):
        raise _Refused(HTTPStatus.BAD_REQUEST)
    try:
        decoded = unquote(raw, errors="strict")
    except UnicodeDecodeError:
        raise _Refused(HTTPStatus.BAD_REQUEST) from None
    if "\\" in decoded or any(ord(c) < 0x20 or ord(c) == 0x7F for c in decoded):
        raise _Refused(HTTPStatus.BAD_REQUEST)
    segments = decoded.split("/")[1:]
    parts: list[str] = []
    for segment in segments:
        if segment == "..":
            if not parts:
                raise _Refused(HTTPStatus.BAD_REQUEST)
            parts.pop()
        elif segment not in ("", "."):
            parts.append(segment)
    return parts, segments[-1] in ("", ".", "..")


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


class StaticHandler(http.server.SimpleHTTPRequestHandler):
    """SimpleHTTPRequestHandler with our MIME table, policy headers and embed allowlist.

    Every request path is normalised once (`canonical_parts`) and resolved to a regular file
    under the root, and the headers are chosen from that file's canonical name: there is no
    second spelling of a page that sheds its `frame-ancestors`. Directories are never listed
    (one with an `index.html` serves it: `/` is the app), and a path whose real location is
    outside the root (a symlink out of `dist/`) is 404 unless `follow_symlinks`.
    """

    extensions_map = _EXTENSIONS
    isolate = True
    quiet = True
    follow_symlinks = False
    ancestors = frame_ancestors([])
    embed_config = config_json([])
    _policy: list[tuple[str, str]] | None = None
    _file = ""
    _type = ""
    _gzip: bool | None = None  # None: no compressed sibling; else whether this reply uses it

    def handle_one_request(self) -> None:
        self._policy = None
        self._file = ""
        self._type = ""
        self._gzip = None
        super().handle_one_request()

    def send_head(self) -> io.BytesIO | BinaryIO | None:
        try:
            parts, directory = canonical_parts(self.path)
            name = "/" + "/".join(parts)
            if name == EMBED_CONFIG and not directory:
                return self._embed_config()
            name, self._file = self._locate(parts, directory)
        except _Refused as refused:
            if refused.location:
                self.send_response(refused.status)
                self.send_header("Location", refused.location)
                self.send_header("Content-Length", "0")
                self.end_headers()
            else:
                self.send_error(refused.status)
            return None
        page_csp = meta_policies(self._file) if is_page(name) else ()
        self._policy = policy_headers(name, isolate=self.isolate, ancestors=self.ancestors,
                                      page_csp=page_csp)
        self._type = content_type(self._file)
        packed = self._file + ".gz"
        if os.path.isfile(packed) and os.stat(packed).st_mtime >= os.stat(self._file).st_mtime:
            self._gzip = accepts_gzip(self.headers.get("Accept-Encoding"))
            if self._gzip:
                self._file = packed
        return super().send_head()  # headers, caching (304) and the file, via translate_path

    def _locate(self, parts: list[str], directory: bool) -> tuple[str, str]:
        """(canonical URL path, file to open) for the segments, or `_Refused`."""
        root = os.path.realpath(self.directory)
        path = os.path.join(root, *parts)
        name = "/" + "/".join(parts)
        try:
            if os.path.isdir(path):
                path = os.path.join(path, "index.html")
                if parts and not directory and os.path.isfile(path):
                    raise _Refused(HTTPStatus.MOVED_PERMANENTLY, quote(name + "/"))
                if parts and not directory:
                    raise _Refused(HTTPStatus.NOT_FOUND)
                name = name.rstrip("/") + "/"
            elif directory:
                raise _Refused(HTTPStatus.NOT_FOUND)
            if not os.path.isfile(path) or not (
                    self.follow_symlinks or _inside(os.path.realpath(path), root)):
                raise _Refused(HTTPStatus.NOT_FOUND)
        except (OSError, ValueError):
            raise _Refused(HTTPStatus.NOT_FOUND) from None
        return name, path

    def translate_path(self, path: str) -> str:
        return self._file or super().translate_path(path)

    def guess_type(self, path: str | os.PathLike[str]) -> str:
        return self._type or content_type(os.fspath(path))

    def list_directory(self, path: str | os.PathLike[str]) -> io.BytesIO | None:
        self.send_error(HTTPStatus.NOT_FOUND)  # never reached: `_locate` refuses directories
        return None

    def _embed_config(self) -> io.BytesIO:
        self._policy = policy_headers(EMBED_CONFIG, isolate=self.isolate,
                                      ancestors=self.ancestors)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.embed_config)))
        self.end_headers()
        return io.BytesIO(self.embed_config)

    def send_error(self, code: int, message: str | None = None,
                   explain: str | None = None) -> None:
        self._policy = None  # an error page is not the file: the error policy applies
        self._gzip = None
        super().send_error(code, message, explain)
        if code == HTTPStatus.REQUEST_URI_TOO_LONG:
            self._discard_request()

    def _discard_request(self) -> None:
        """Read the rest of a refused request, so closing does not reset the connection
        (a reset can destroy the 414 before the client reads it)."""
        try:
            self.connection.settimeout(1.0)
            for _ in range(64):  # at most 4 MiB
                line = self.rfile.readline(65537)
                if line in (b"", b"\r\n", b"\n"):
                    break
        except OSError:
            pass

    def end_headers(self) -> None:
        policy = self._policy
        if policy is None:  # errors, redirects, and requests refused before parsing
            policy = policy_headers("/", isolate=self.isolate, ancestors=self.ancestors,
                                    page_csp=_ERROR_CSP)
        for key, value in policy:
            self.send_header(key, value)
        self.send_header("X-Content-Type-Options", "nosniff")
        versioned = self._policy is not None and is_versioned(self.path)
        self.send_header("Cache-Control", _IMMUTABLE if versioned else "no-cache")
        if self._gzip is not None:
            self.send_header("Vary", "Accept-Encoding")
            if self._gzip:
                self.send_header("Content-Encoding", "gzip")
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
                embed_origins: Sequence[str] | None = None,
                follow_symlinks: bool = False) -> StaticServer:
    """A server for `root`, bound but not yet serving (call `serve_forever`).

    `embed_origins` are the sites allowed to embed the widget; None reads `root/embed.json`.
    Raises ValueError for an origin that is not one (see `server/embed.py`).
    `follow_symlinks` serves files that symlinks lead to outside `root` (for roots assembled
    from links, as tests and benches do); by default they are 404.
    """
    if not (root / "index.html").exists():
        raise FileNotFoundError(f"{root} has no index.html: run ./build.sh first")
    origins = (normalize_origins(embed_origins) if embed_origins is not None
               else read_origins(root / "embed.json"))
    handler = type("Handler", (StaticHandler,), {
        "isolate": isolate, "quiet": quiet, "follow_symlinks": follow_symlinks,
        "ancestors": frame_ancestors(origins),
        "embed_config": config_json(origins)})
    server = StaticServer((host, port), functools.partial(handler, directory=str(root)))
    server.embed_origins = tuple(origins)
    return server
