"""The static server under hostile requests (issue 15, items 4 and 6).

Every response is either refused (400/404/414) or carries exactly the headers of the file it
serves: an encoded or dotted spelling of a page must never shed its `frame-ancestors`.
"""

from __future__ import annotations

import http.client
import re
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from wasmagent.hosts.server.static import make_server

DIST = Path(__file__).resolve().parents[2] / "dist"
ALLOWED = "https://shop.example"
POLICY = ["Content-Security-Policy", "Cross-Origin-Resource-Policy",
          "Cross-Origin-Embedder-Policy", "Cross-Origin-Opener-Policy",
          "Access-Control-Allow-Origin", "X-Content-Type-Options", "Cache-Control",
          "Content-Type"]
META = ("default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; object-src 'none'; "
        "base-uri 'none'")


def _page(csp: str | None = META) -> bytes:
    meta = f'<meta http-equiv="Content-Security-Policy" content="{csp}">' if csp else ""
    return f"<!doctype html><html><head>{meta}<title>t</title></head><body></body></html>".encode()


def _site(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "index.html").write_bytes(_page())
    (root / "embed.html").write_bytes(_page())
    (root / "embed-gate.html").write_bytes(_page("default-src 'self'"))
    for name in ["widget.js", "app.js", "a.wasm"]:
        (root / name).write_bytes(b"x")
    for folder, name in [("kb", "secret-kb-name.kv"), ("pyodide", "pyodide.mjs"),
                         ("models", "intent/intent.onnx"), ("icons", "icon-192.png")]:
        (root / folder / name).parent.mkdir(parents=True, exist_ok=True)
        (root / folder / name).write_bytes(b"x")
    return root


@contextmanager
def _serving(root: Path, **options: object) -> Iterator[tuple[str, int]]:
    server = make_server(root, port=0, **options)  # type: ignore[arg-type]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield "127.0.0.1", int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[str, int]]:
    with _serving(_site(tmp_path / "site"), embed_origins=[ALLOWED]) as address:
        yield address


def _get(address: tuple[str, int], target: str,
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, list[str]], bytes]:
    """One request with `target` sent byte for byte (no client-side normalisation)."""
    conn = http.client.HTTPConnection(*address, timeout=30)
    try:
        conn.putrequest("GET", target, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", "127.0.0.1")
        for key, value in (headers or {}).items():
            conn.putheader(key, value)
        conn.endheaders()
        response = conn.getresponse()
        body = response.read()
        policy = {key: response.headers.get_all(key) or [] for key in POLICY}
        return response.status, policy, body
    finally:
        conn.close()


def _raw(address: tuple[str, int], request: bytes) -> bytes:
    """Send raw bytes, read until the server closes: what a client actually gets back."""
    with socket.create_connection(address, timeout=30) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


# -- item 4: one normalisation, headers from the resolved file ------------------------------

def _spellings(name: str) -> list[str]:
    """Ways to spell `/<name>` that a path-based header rule could miss."""
    stem, ext = name.rsplit(".", 1)
    return [
        f"/{name}%2f.", f"/{name}%2F.", f"/{name}/.", f"/{name}/", f"/{name}%2f",
        f"/{name}/..%2f{name}", f"//{name}", f"///{name}", f"/./{name}", f"/%2e/{name}",
        f"/x/../{name}", f"/x%2f..%2f{name}", f"/x/%2e%2e/{name}", f"/%2f{name}",
        f"/{stem}%2e{ext}", f"/{stem}.{ext.upper()}", f"/{name.upper()}",
        f"/{name}%5c", f"/%5c{name}", f"/x%5c..%5c{name}", f"/{name}%3f", f"/{name}%23",
        f"/{name};x", f"/{name}%20", f"/{name}.", f"/../{name}", f"/%2e%2e/{name}",
        f"http://127.0.0.1/{name}", f"/{name}?x=%2f.", f"/{name}%00",
    ]


@pytest.mark.parametrize("name", ["index.html", "embed.html", "embed-gate.html", "widget.js",
                                  "app.js", "a.wasm"])
def test_every_spelling_of_a_file_is_refused_or_gets_its_exact_headers(
        site: tuple[str, int], name: str) -> None:
    status, canonical, _ = _get(site, f"/{name}")
    assert status == 200
    if name in ("index.html", "embed.html"):
        assert any("frame-ancestors" in csp for csp in canonical["Content-Security-Policy"])
    for target in _spellings(name):
        status, headers, _ = _get(site, target)
        assert status in (200, 400, 404), target
        if status == 200:
            assert headers == canonical, target


def test_the_reported_framing_bypasses_are_closed(site: tuple[str, int]) -> None:
    for target, ancestors in [("/index.html%2f.", "frame-ancestors 'self'"),
                              ("/embed.html%2f.", f"frame-ancestors 'self' {ALLOWED}")]:
        status, headers, _ = _get(site, target)
        assert status in (400, 404) or any(
            csp.endswith(ancestors) for csp in headers["Content-Security-Policy"]), target


@pytest.mark.parametrize("target", ["/", "//", "/.", "/./", "/%2e", "/%2e/", "/x/..", "/x/../",
                                    "/%2f", "/?a=b"])
def test_the_root_is_the_app_page_however_it_is_spelled(
        site: tuple[str, int], target: str) -> None:
    _, canonical, body = _get(site, "/index.html")
    status, headers, served = _get(site, target)
    assert status in (200, 400, 404), target
    if status == 200:
        assert (headers, served) == (canonical, body), target
    assert _get(site, "/")[0] == 200


def test_any_html_file_gets_the_framing_policy_whatever_its_extension_case(
        tmp_path: Path) -> None:
    root = _site(tmp_path / "site")
    for name in ["Page.HTML", "page.htm", "page.xhtml"]:
        (root / name).write_bytes(_page(None))
    with _serving(root) as address:
        for name in ["Page.HTML", "page.htm", "page.xhtml"]:
            status, headers, _ = _get(address, f"/{name}")
            assert status == 200
            assert headers["Content-Security-Policy"] == ["frame-ancestors 'self'"], name


def test_error_pages_and_redirects_are_framed_only_by_the_app(site: tuple[str, int]) -> None:
    status, headers, _ = _get(site, "/no-such-page.html")
    assert status == 404
    assert headers["Content-Security-Policy"] == ["default-src 'none'; frame-ancestors 'self'"]
    assert headers["X-Content-Type-Options"] == ["nosniff"]


# -- item 6: the app's CSP as a header -------------------------------------------------------

def test_each_page_sends_its_meta_csp_as_a_header_with_its_framing_rule(
        site: tuple[str, int]) -> None:
    assert _get(site, "/")[1]["Content-Security-Policy"] == [
        f"{META}; frame-ancestors 'self'"]
    assert _get(site, "/embed.html")[1]["Content-Security-Policy"] == [
        f"{META}; frame-ancestors 'self' {ALLOWED}"]
    assert _get(site, "/embed-gate.html")[1]["Content-Security-Policy"] == [
        "default-src 'self'"], "the gate may be framed anywhere: no frame-ancestors"
    assert _get(site, "/app.js")[1]["Content-Security-Policy"] == []


def _meta_csp(html: str) -> list[str]:
    return re.findall(r'<meta http-equiv="Content-Security-Policy" content="([^"]*)"', html)


@pytest.mark.skipif(not (DIST / "index.html").exists(), reason="dist/ is not built")
def test_every_built_page_sends_exactly_its_meta_csp() -> None:
    pages = sorted(DIST.glob("*.html"))
    assert {p.name for p in pages} >= {"index.html", "embed.html", "embed-gate.html"}
    with _serving(DIST) as address:
        for page in pages:
            [meta] = _meta_csp(page.read_text())
            [header] = _get(address, f"/{page.name}")[1]["Content-Security-Policy"]
            assert header.split("; frame-ancestors ")[0] == meta, page.name
            assert ("frame-ancestors" in header) == (page.name != "embed-gate.html"), page.name


def test_a_meta_csp_cannot_inject_headers_or_relax_framing(tmp_path: Path) -> None:
    root = _site(tmp_path / "site")
    (root / "inject.html").write_bytes(_page("default-src 'self'&#13;&#10;X-Evil: 1"))
    (root / "frame.html").write_bytes(_page("default-src 'self'; frame-ancestors *"))
    (root / "comma.html").write_bytes(_page("default-src 'self', script-src *"))
    with _serving(root) as address:
        response = _raw(address, b"GET /inject.html HTTP/1.0\r\n\r\n")
        assert b"\r\nX-Evil" not in response
        assert response.startswith(b"HTTP/1.0 200")
        assert _get(address, "/frame.html")[1]["Content-Security-Policy"] == [
            "default-src 'self'; frame-ancestors 'self'"]
        assert _get(address, "/comma.html")[1]["Content-Security-Policy"] == [
            "frame-ancestors 'self'"], "a comma would split it into two header policies"


# -- item 6: no listings, NUL, long request lines, symlinks ----------------------------------

@pytest.mark.parametrize("target", ["/kb/", "/kb", "/pyodide/", "/models/", "/models/intent/",
                                    "/icons/", "/icons", "/kb/.", "/kb%2f"])
def test_directories_are_never_listed(site: tuple[str, int], target: str) -> None:
    status, _, body = _get(site, target)
    assert status == 404, target
    assert b"secret-kb-name" not in body
    assert b"Directory listing" not in body


def test_a_directory_with_an_index_page_still_serves_it(tmp_path: Path) -> None:
    root = _site(tmp_path / "site")
    (root / "docs").mkdir()
    (root / "docs" / "index.html").write_bytes(_page())
    with _serving(root) as address:
        status, headers, _ = _get(address, "/docs/")
        assert status == 200
        assert headers["Content-Security-Policy"] == [f"{META}; frame-ancestors 'self'"]
        conn = http.client.HTTPConnection(*address, timeout=30)
        conn.request("GET", "/docs")
        response = conn.getresponse()
        assert (response.status, response.headers["Location"]) == (301, "/docs/")
        conn.close()


@pytest.mark.parametrize("target", ["/index.html%00", "/%00", "/kb%00/x.kv", "/%00.html",
                                    "/a%00b.js", "/%ff%fe.html", "/%0d%0aX-Evil:%201"])
def test_a_nul_or_undecodable_path_is_a_bad_request(site: tuple[str, int], target: str) -> None:
    status, headers, _ = _get(site, target)
    assert status == 400, target
    assert headers["X-Content-Type-Options"] == ["nosniff"]


def test_a_request_line_over_64k_is_answered_414(site: tuple[str, int]) -> None:
    line = b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n"
    response = _raw(site, line)
    assert response.startswith(b"HTTP/1.0 414 "), response[:80]


def test_a_malformed_request_line_gets_an_answer(site: tuple[str, int]) -> None:
    # Refused before the version is known, the stdlib answers HTTP/0.9-style (a bare body).
    assert b"Error code: 505" in _raw(site, b"GET / HTTP/9.9\r\n\r\n")
    assert b"Error code: 400" in _raw(site, b"GET / NOT-HTTP\r\n\r\n")


def test_symlinks_out_of_the_root_are_refused(tmp_path: Path) -> None:
    outside = tmp_path / "private"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret")
    (outside / "page.html").write_bytes(_page(None))
    root = _site(tmp_path / "site")
    (root / "leak.txt").symlink_to(outside / "secret.txt")
    (root / "framed.html").symlink_to(outside / "page.html")
    (root / "kb" / "out").symlink_to(outside)
    (root / "up").symlink_to(tmp_path)
    (root / "alias.js").symlink_to(root / "app.js")
    (root / "icons2").symlink_to(root / "icons")
    with _serving(root) as address:
        for target in ["/leak.txt", "/framed.html", "/kb/out/secret.txt", "/up/private/secret.txt",
                       "/up/private/page.html", "/kb/out/", "/up/"]:
            status, _, body = _get(address, target)
            assert status == 404, target
            assert b"secret" not in body
        assert _get(address, "/alias.js")[0] == 200, "links that stay inside are fine"
        assert _get(address, "/icons2/icon-192.png")[0] == 200
        assert _get(address, "/up/site/app.js")[0] == 200, "out and back in is inside"
    linked_root = tmp_path / "linked-dist"
    linked_root.symlink_to(root)
    with _serving(linked_root) as address:
        assert _get(address, "/")[0] == 200, "the root itself may be a link (dist -> build/x)"
        assert _get(address, "/leak.txt")[0] == 404


def test_assembled_roots_may_opt_in_to_following_links(tmp_path: Path) -> None:
    outside = tmp_path / "private"
    outside.mkdir()
    (outside / "shared.js").write_text("x")
    root = _site(tmp_path / "site")
    (root / "shared.js").symlink_to(outside / "shared.js")
    with _serving(root, follow_symlinks=True) as address:
        assert _get(address, "/shared.js")[0] == 200
        assert _get(address, "/kb/")[0] == 404


# -- unchanged behaviour ---------------------------------------------------------------------

def test_caching_and_embed_config_are_unchanged(site: tuple[str, int]) -> None:
    conn = http.client.HTTPConnection(*site, timeout=30)
    conn.request("GET", "/app.js")
    first = conn.getresponse()
    first.read()
    modified = first.headers["Last-Modified"]
    assert first.headers["Cache-Control"] == "no-cache"
    assert modified
    conn.close()
    status, headers, body = _get(site, "/app.js", {"If-Modified-Since": modified})
    assert (status, body) == (304, b"")
    assert headers["Cross-Origin-Resource-Policy"] == ["same-origin"]
    status, headers, body = _get(site, "/embed.json")
    assert (status, body) == (200, b'{"origins": ["https://shop.example"]}')
    assert headers["Content-Type"] == ["application/json"]
