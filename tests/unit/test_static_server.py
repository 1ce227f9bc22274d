"""`python -m wasmagent serve`: what a browser needs from the static server."""

from __future__ import annotations

import gzip
import json
import os
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from wasmagent.hosts.server.embed import normalize_origins
from wasmagent.hosts.server.static import make_server


@contextmanager
def _serving(root: Path, *, isolate: bool) -> Iterator[str]:
    server = make_server(root, port=0, isolate=isolate)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _site(tmp_path: Path) -> Path:
    for name in ["index.html", "a.wasm", "b.mjs", "c.js", "d.json", "e.whl", "f.onnx"]:
        (tmp_path / name).write_bytes(b"x")
    return tmp_path


def test_mime_types_and_isolation_headers(tmp_path: Path) -> None:
    expected = {
        "a.wasm": "application/wasm",
        "b.mjs": "text/javascript",
        "c.js": "text/javascript",
        "d.json": "application/json",
        "index.html": "text/html; charset=utf-8",
    }
    with _serving(_site(tmp_path), isolate=True) as base:
        for name, mime in expected.items():
            with urllib.request.urlopen(f"{base}/{name}") as response:
                assert response.headers["Content-Type"] == mime, name
                assert response.headers["Cross-Origin-Opener-Policy"] == "same-origin"
                assert response.headers["Cross-Origin-Embedder-Policy"] == "require-corp"


def test_no_isolation_headers_when_asked(tmp_path: Path) -> None:
    with _serving(_site(tmp_path), isolate=False) as base, urllib.request.urlopen(base) as r:
        assert "Cross-Origin-Embedder-Policy" not in r.headers
        assert "Cross-Origin-Opener-Policy" not in r.headers


def test_refuses_to_serve_an_unbuilt_site(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"build\.sh"):
        make_server(tmp_path, port=0)


def _headers(base: str, name: str) -> Any:
    with urllib.request.urlopen(f"{base}/{name}") as response:
        return response.headers


def _widget_site(tmp_path: Path) -> Path:
    site = _site(tmp_path)
    for name in ["widget.js", "embed.html", "embed-gate.html", "embed.js"]:
        (site / name).write_bytes(b"x")
    return site


def test_the_app_stays_isolated_and_unframeable_by_other_sites(tmp_path: Path) -> None:
    with _serving(_widget_site(tmp_path), isolate=True) as base:
        for name in ["", "index.html", "embed.js", "a.wasm"]:
            headers = _headers(base, name)
            assert headers["Cross-Origin-Resource-Policy"] == "same-origin", name
            assert headers["Cross-Origin-Embedder-Policy"] == "require-corp", name
        assert _headers(base, "index.html")["Content-Security-Policy"] == "frame-ancestors 'self'"
        assert _headers(base, "")["Content-Security-Policy"] == "frame-ancestors 'self'"


def test_the_widget_script_loads_on_any_site_even_isolated_ones(tmp_path: Path) -> None:
    with _serving(_widget_site(tmp_path), isolate=True) as base:
        headers = _headers(base, "widget.js?v=1")
    assert headers["Content-Type"] == "text/javascript"
    assert headers["Cross-Origin-Resource-Policy"] == "cross-origin"
    assert headers["Access-Control-Allow-Origin"] == "*", "so a host can pin it with SRI"
    assert "Cross-Origin-Opener-Policy" not in headers


def test_only_allowed_sites_may_frame_the_agent_page(tmp_path: Path) -> None:
    site = _widget_site(tmp_path)
    server = make_server(site, port=0, embed_origins=["https://Shop.example/",
                                                       "http://localhost:8080",
                                                       "https://*.docs.example:443"])
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        page = _headers(base, "embed.html")
        gate = _headers(base, "embed-gate.html")
        with urllib.request.urlopen(f"{base}/embed.json") as response:
            config = json.loads(response.read())
    finally:
        server.shutdown()
        server.server_close()
    allowed = "https://shop.example http://localhost:8080 https://*.docs.example"
    assert page["Content-Security-Policy"] == f"frame-ancestors 'self' {allowed}"
    assert page["Cross-Origin-Resource-Policy"] == "cross-origin"
    assert page["Cross-Origin-Embedder-Policy"] == "require-corp", "isolated hosts need it"
    assert "Content-Security-Policy" not in gate, "the gate shows refused sites why"
    assert gate["Cross-Origin-Resource-Policy"] == "cross-origin"
    assert config == {"origins": allowed.split()}


def test_the_allowlist_comes_from_embed_json_unless_given(tmp_path: Path) -> None:
    site = _widget_site(tmp_path)
    with _serving(site, isolate=False) as base:
        assert _headers(base, "embed.html")["Content-Security-Policy"] == "frame-ancestors 'self'"
    (site / "embed.json").write_text('{"origins": ["https://a.example"]}')
    with _serving(site, isolate=False) as base:
        assert _headers(base, "embed.html")["Content-Security-Policy"] == (
            "frame-ancestors 'self' https://a.example")
    server = make_server(site, port=0, embed_origins=[])
    assert server.embed_origins == (), "--embed-origin replaces the file's list"
    server.server_close()


@pytest.mark.parametrize("bad", ["example.com", "ftp://a.example", "https://a.example/path",
                                 "https://a.example:99999", "https://*", "javascript:alert(1)",
                                 "https://a.example; script-src *"])
def test_an_origin_that_is_not_one_is_refused(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValueError, match=r"is not an origin|no valid port"):
        make_server(_widget_site(tmp_path), port=0, embed_origins=[bad])


def test_origins_are_normalized() -> None:
    assert normalize_origins(["HTTPS://Shop.Example:443/", "http://[::1]:80", "*",
                              "https://shop.example"]) == [
        "https://shop.example", "http://[::1]", "*"]


def _fetch(url: str, headers: dict[str, str] | None = None) -> tuple[Any, bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request) as response:
        return response.headers, response.read()


def test_large_files_go_gzipped_to_browsers_that_accept_it(tmp_path: Path) -> None:
    site = _site(tmp_path)
    wasm = bytes(range(256)) * 64
    (site / "big.wasm").write_bytes(wasm)
    (site / "big.wasm.gz").write_bytes(gzip.compress(wasm))
    with _serving(site, isolate=True) as base:
        headers, body = _fetch(f"{base}/big.wasm", {"Accept-Encoding": "gzip, deflate, br"})
        assert headers["Content-Encoding"] == "gzip"
        assert headers["Content-Type"] == "application/wasm", "the file's type, not gzip's"
        assert headers["Vary"] == "Accept-Encoding"
        assert gzip.decompress(body) == wasm
        for refusing in ({}, {"Accept-Encoding": "identity"}, {"Accept-Encoding": "gzip;q=0"}):
            headers, body = _fetch(f"{base}/big.wasm", refusing)
            assert "Content-Encoding" not in headers
            assert headers["Vary"] == "Accept-Encoding"
            assert body == wasm
        headers, _ = _fetch(f"{base}/c.js", {"Accept-Encoding": "gzip"})
        assert "Content-Encoding" not in headers, "no .gz beside it"
        assert "Vary" not in headers


def test_a_stale_gz_is_never_served(tmp_path: Path) -> None:
    site = _site(tmp_path)
    (site / "big.wasm.gz").write_bytes(gzip.compress(b"old"))
    (site / "big.wasm").write_bytes(b"new")
    stale = (site / "big.wasm").stat().st_mtime - 60
    os.utime(site / "big.wasm.gz", (stale, stale))
    with _serving(site, isolate=True) as base:
        headers, body = _fetch(f"{base}/big.wasm", {"Accept-Encoding": "gzip"})
        assert body == b"new"
        assert "Content-Encoding" not in headers


def test_versioned_urls_are_cached_for_good_and_the_rest_revalidated(tmp_path: Path) -> None:
    with _serving(_site(tmp_path), isolate=True) as base:
        assert _fetch(f"{base}/a.wasm?v=3f2a")[0]["Cache-Control"] == (
            "public, max-age=31536000, immutable")
        for unversioned in ("/a.wasm", "/a.wasm?v=", "/a.wasm?version=3", "/", "/index.html"):
            assert _fetch(base + unversioned)[0]["Cache-Control"] == "no-cache", unversioned


def test_serve_defaults_to_the_dist_folder_build_sh_writes() -> None:
    # `./build.sh serve` runs `python -m wasmagent serve` without --dist: it must find the
    # site build.sh built at the repository's root, not a folder beside the package.
    from wasmagent.hosts.cli import build_parser

    args = build_parser().parse_args(["serve"])
    assert args.dist == Path(__file__).resolve().parents[2] / "dist"
