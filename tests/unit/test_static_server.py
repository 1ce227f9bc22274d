"""`python -m wasmagent serve`: what a browser needs from the static server."""

from __future__ import annotations

import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from wasmagent.server.static import make_server


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
