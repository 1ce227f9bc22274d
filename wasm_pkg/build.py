"""Turn the `wasmagent` package into a Pyodide package and assemble `dist/`.

Steps, each skipped when its inputs did not change (so a re-run is fast):
1. build the pure-Python `wasmagent` wheel with `python -m build --wheel`, timestamps pinned by
   SOURCE_DATE_EPOCH so the same sources give the same bytes (and the same sha256 in the lock);
2. fetch the pinned micropip wheel from PyPI (cached in `.build/cache`);
3. write `dist/pyodide/pyodide-lock.json` with pyodide-build's `pyodide lockfile add-wheels`,
   starting from the lock shipped in the `pyodide` npm package but keeping only the entries whose
   wheels we serve, so a by-name load of anything else fails at once with "not in lock" instead
   of a confusing integrity error on a 404 page;
4. compile the stdlib and wasmagent to .pyc inside Pyodide itself and take a memory snapshot
   of the interpreter with wasmagent imported (`runtime.mjs`): what the worker boots from;
   the wheel and lock stay for site owners who load wasmagent into their own Pyodide;
5. copy the runtime files the page really fetches, the onnxruntime-web wasm build, the models,
   the web shell and PyScript (for the example of using wasmagent from PyScript) into `dist/`,
   and write `boot-manifest.json` (file sizes, for a byte-accurate progress bar),
   `protocol.schema.json` and `agent.proto`.

We do not use `pyodide build`: it downloads its cross-build environment metadata before doing
anything and fails offline, and a pure-Python wheel does not need a cross build anyway.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DIST = ROOT / "dist"
WORK = ROOT / ".build"
NODE = ROOT / "node_modules"

MICROPIP = "micropip==0.11.1"
# Fixed so that the wheel's bytes, and so its sha256 in the lock, depend only on its content.
SOURCE_DATE_EPOCH = "1700000000"

PYODIDE_FILES = ["pyodide.mjs", "pyodide.asm.mjs", "pyodide.asm.wasm", "python_stdlib.zip"]
# Only the plain SIMD+threads wasm build: the jsep/asyncify/jspi variants (17-28 MB each) are
# for WebGPU/JSPI execution providers we do not use.
ORT_FILES = ["ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm"]
MODEL_FILES = [
    "all-minilm-l6-v2/vocab.txt",
    "intent/intent.onnx",
    "intent/labels.json",
]


def digest(paths: list[Path]) -> str:
    """A hash over file names and contents, used to skip steps whose inputs did not change."""
    h = hashlib.sha256()
    for path in sorted(paths):
        h.update(str(path.relative_to(ROOT)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def stamp_ok(name: str, value: str) -> bool:
    stamp = WORK / f"{name}.stamp"
    return stamp.exists() and stamp.read_text() == value


def write_stamp(name: str, value: str) -> None:
    (WORK / f"{name}.stamp").write_text(value)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def copy_if_changed(src: Path, dst: Path) -> None:
    if dst.exists() and dst.stat().st_size == src.stat().st_size and sha256(dst) == sha256(src):
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)


def build_wheel() -> Path:
    sources = [*(ROOT / "app").rglob("*.py"), ROOT / "pyproject.toml",
               ROOT / "app/wasmagent/py.typed"]
    key = digest(sources)
    out = WORK / "wheel"
    wheels = sorted(out.glob("wasmagent-*.whl"))
    if wheels and stamp_ok("wheel", key):
        return wheels[-1]
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH}
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation",
         "--outdir", str(out), str(ROOT)],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    shutil.rmtree(ROOT / "build", ignore_errors=True)
    for egg in (ROOT / "app").glob("*.egg-info"):
        shutil.rmtree(egg)
    write_stamp("wheel", key)
    return next(out.glob("wasmagent-*.whl"))


def fetch_micropip() -> Path:
    cache = WORK / "cache"
    found = sorted(cache.glob("micropip-*.whl"))
    if found:
        return found[-1]
    cache.mkdir(parents=True, exist_ok=True)
    # micropip needs Python >= 3.13 (Pyodide's), so ask pip for that target explicitly.
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
         "--python-version", "3.13", "--dest", str(cache), MICROPIP],
        check=True,
    )
    return next(cache.glob("micropip-*.whl"))


def write_lock(wheels: list[Path], pyodide_cli: Path) -> None:
    out_dir = DIST / "pyodide"
    out_dir.mkdir(parents=True, exist_ok=True)
    served = [out_dir / w.name for w in wheels]
    for wheel, dst in zip(wheels, served, strict=True):
        copy_if_changed(wheel, dst)
    for stale in out_dir.glob("*.whl"):
        if stale not in served:
            stale.unlink()
    key = digest(served) + sha256(NODE / "pyodide/pyodide-lock.json")
    lock = out_dir / "pyodide-lock.json"
    if lock.exists() and stamp_ok("lock", key):
        return
    shipped = json.loads((NODE / "pyodide/pyodide-lock.json").read_text())
    base = WORK / "lock-base.json"
    base.write_text(json.dumps({"info": shipped["info"], "packages": {}}))
    subprocess.run(
        [str(pyodide_cli), "lockfile", "add-wheels", "--input", str(base), "--output", str(lock),
         "--base-path", str(out_dir), *map(str, served)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    check_lock(lock, out_dir)
    write_stamp("lock", key)


def check_lock(lock: Path, out_dir: Path) -> None:
    """Fail the build, not the browser, when a lock entry does not match the file we serve."""
    packages = json.loads(lock.read_text())["packages"]
    for name, entry in packages.items():
        wheel = out_dir / entry["file_name"]
        if not wheel.exists() or sha256(wheel) != entry["sha256"]:
            raise SystemExit(f"lock entry {name} does not match {wheel}")


def copy_tree(src: Path, dst: Path) -> None:
    for path in src.rglob("*"):
        if path.is_file():
            copy_if_changed(path, dst / path.relative_to(src))


# Served under the source model's name: the same weights and vectors, another graph.
BROWSER_MINILM = "all-minilm-l6-v2/model.int8.onnx"


def write_browser_model() -> None:
    """MiniLM with its graph optimised offline (models/optimize_minilm.py): onnxruntime-web
    creates the session ~2-4x faster from it."""
    src = ROOT / "models" / BROWSER_MINILM
    out = WORK / "models/model.int8.opt.onnx"
    key = digest([src, ROOT / "models/optimize_minilm.py"])
    if not (out.exists() and stamp_ok("browser-minilm", key)):
        out.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, str(ROOT / "models/optimize_minilm.py"), str(src),
                        str(out)], check=True)
        write_stamp("browser-minilm", key)
    copy_if_changed(out, DIST / "models" / BROWSER_MINILM)


SCORES_WASM = "worker/scores.wasm"


def write_scores_kernel() -> None:
    """The vector search kernel: web/worker/scores.wat compiled with wabt (wasm_pkg/scores.mjs)."""
    src, out = ROOT / "web/worker/scores.wat", DIST / SCORES_WASM
    key = digest([src, ROOT / "wasm_pkg/scores.mjs"])
    if not (out.exists() and stamp_ok("scores-kernel", key)):
        subprocess.run(["node", str(ROOT / "wasm_pkg/scores.mjs"), str(src), str(out)],
                       check=True, stdout=subprocess.DEVNULL)
        write_stamp("scores-kernel", key)


def copy_assets() -> None:
    for name in PYODIDE_FILES:
        copy_if_changed(NODE / "pyodide" / name, DIST / "pyodide" / name)
    for name in ORT_FILES:
        copy_if_changed(NODE / "onnxruntime-web/dist" / name, DIST / "ort" / name)
    for name in MODEL_FILES:
        src = ROOT / "models" / name
        if src.exists():
            copy_if_changed(src, DIST / "models" / name)
    copy_tree(ROOT / "web", DIST)
    # PyScript for the example page (/examples/pyscript.html): sites that already use PyScript
    # load wasmagent into their own PyScript worker. Served from here, never from a CDN.
    for path in (NODE / "@pyscript/core/dist").iterdir():
        if path.is_file() and path.suffix != ".map":
            copy_if_changed(path, DIST / "pyscript" / path.name)


STDLIB_ZIP = "pyodide/wasmagent-stdlib.zip"
SNAPSHOT = "pyodide/snapshot.bin"


def write_runtime() -> None:
    """The precompiled stdlib zip and the memory snapshot (wasm_pkg/runtime.mjs)."""
    pyodide = NODE / "pyodide"
    sources = [*(ROOT / "app/wasmagent").rglob("*.py"), ROOT / "wasm_pkg/runtime.mjs",
               *(pyodide / n for n in ("pyodide.mjs", "pyodide.asm.mjs", "pyodide.asm.wasm",
                                       "python_stdlib.zip", "pyodide-lock.json"))]
    key = digest(sources)
    zip_out, snapshot_out = DIST / STDLIB_ZIP, DIST / SNAPSHOT
    if not (zip_out.exists() and snapshot_out.exists() and stamp_ok("runtime", key)):
        zip_out.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["node", str(ROOT / "wasm_pkg/runtime.mjs"), str(pyodide),
                        str(ROOT / "app"), str(zip_out), str(snapshot_out)], check=True)
        write_stamp("runtime", key)


def write_manifest() -> None:
    """What the worker needs before it boots: the sizes of the files it fetches (progress shows
    real bytes), their versions (it asks for `path?v=VERSION`, which the static server lets
    browsers cache for good) and an inline lock (one request fewer).

    The `.mjs` files are left out: they arrive through `import`, whose bytes a page cannot count.
    """
    boot = ["pyodide/pyodide.asm.wasm", STDLIB_ZIP, SNAPSHOT, "ort/ort-wasm-simd-threaded.wasm"]
    boot += [f"models/{n}" for n in [BROWSER_MINILM, *MODEL_FILES]
             if (DIST / "models" / n).exists()]
    sizes = {name: (DIST / name).stat().st_size for name in boot}
    # The worker installs no packages (wasmagent is in the zip): the lock needs no entries.
    info = json.loads((NODE / "pyodide/pyodide-lock.json").read_text())["info"]
    versioned = [*boot, SCORES_WASM,
                 *(str(p.relative_to(DIST)) for p in sorted(DIST.glob("kb/*.kv")))]
    versions = {name: sha256(DIST / name)[:16] for name in versioned}
    manifest = {"files": sizes, "total": sum(sizes.values()), "versions": versions,
                "lock": {"info": info, "packages": {}}}
    (DIST / "boot-manifest.json").write_text(json.dumps(manifest, indent=1))


def write_schema() -> None:
    """The protocol for the JS side, generated from wasmagent.protocol: the JSON Schema, and
    protocol.js, which every page and worker script imports instead of spelling names; and the
    gRPC service's `.proto` beside the schema, for clients to generate their stubs from."""
    sys.path.insert(0, str(ROOT / "app"))
    from wasmagent.protocol import js_module, json_schema

    (DIST / "protocol.schema.json").write_text(json.dumps(json_schema(), indent=1))
    (DIST / "shared").mkdir(parents=True, exist_ok=True)
    (DIST / "shared/protocol.js").write_text(js_module())
    copy_if_changed(ROOT / "proto/wasmagent/v1/agent.proto", DIST / "agent.proto")


DEFAULT_KB_SOURCES = ["README.md", "BENCHMARKS.md", "models/MODEL_CARD.md"]


def write_default_kb() -> None:
    """The knowledge base the app ships with: the project's own docs, ingested natively with
    the same core, dumped as key/value pairs the browser loads into IndexedDB on first boot."""
    sources = [ROOT / p for p in DEFAULT_KB_SOURCES if (ROOT / p).exists()]
    model = ROOT / "models/all-minilm-l6-v2/model.int8.onnx"
    out = DIST / "kb" / "default.kv"
    key = digest([*sources, model, *(ROOT / "app").rglob("*.py")])
    if out.exists() and stamp_ok("default-kb", key):
        return
    db = WORK / "default-kb.sqlite"
    for stale in WORK.glob("default-kb.sqlite*"):
        stale.unlink()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "app")}
    wasmagent = [sys.executable, "-m", "wasmagent"]
    subprocess.run([*wasmagent, "ingest", *map(str, sources), "--kb", str(db),
                    "--name", "default"], check=True, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    subprocess.run([*wasmagent, "export", "--kb", str(db), "--name", "default",
                    "--out", str(out)], check=True, env=env, stdout=subprocess.DEVNULL, cwd=ROOT)
    write_stamp("default-kb", key)


def write_embed_config() -> None:
    """`dist/embed.json`: the sites allowed to embed the widget, from `EMBED_ORIGINS`
    (space-separated origins; see app/wasmagent/hosts/server/embed.py). Unset: no other site.
    `python -m wasmagent serve --embed-origin URL` replaces the list at serve time."""
    sys.path.insert(0, str(ROOT / "app"))
    from wasmagent.hosts.server.embed import config_json, normalize_origins

    try:
        origins = normalize_origins(os.environ.get("EMBED_ORIGINS", "").split())
    except ValueError as exc:
        raise SystemExit(f"EMBED_ORIGINS: {exc}") from None
    out = DIST / "embed.json"
    data = config_json(origins)
    if not out.exists() or out.read_bytes() != data:
        out.write_bytes(data)


def write_icons() -> None:
    sys.path.insert(0, str(ROOT / "wasm_pkg"))
    from icons import png

    for size in (192, 512):
        out = DIST / "icons" / f"icon-{size}.png"
        if not out.exists():
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(png(size))


def write_local_model() -> None:
    """The opt-in generative model and wllama (wasm_pkg/local_model.py)."""
    sys.path.insert(0, str(ROOT / "wasm_pkg"))
    from local_model import write_local_model as write

    write(DIST, NODE)


def write_service_worker() -> None:
    """Workbox's generateSW over everything in dist/ (revision hashes, no hand-kept list)."""
    subprocess.run(["node", str(ROOT / "wasm_pkg/service-worker.mjs"), str(DIST)], check=True,
                   stdout=subprocess.DEVNULL)


COMPRESSIBLE = {".wasm", ".bin", ".js", ".mjs", ".json", ".html", ".css", ".txt", ".kv",
                ".onnx", ".svg", ".webmanifest"}


def write_compressed() -> None:
    """A `.gz` beside each file that shrinks by 10% or more, for the static server to send
    gzip-encoded (app/wasmagent/hosts/server/static.py); rewritten only when its file changed."""
    for path in DIST.rglob("*"):
        packed = path.with_name(path.name + ".gz")
        if path.suffix == ".gz":
            if not path.with_suffix("").exists():
                path.unlink()
            continue
        if not path.is_file() or path.suffix not in COMPRESSIBLE or path.stat().st_size < 1024:
            continue
        if packed.exists() and packed.stat().st_mtime >= path.stat().st_mtime:
            continue
        data = path.read_bytes()
        small = gzip.compress(data, compresslevel=6, mtime=0)
        if len(small) <= 0.9 * len(data):
            packed.write_bytes(small)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pyodide-cli", type=Path, required=True, help="the `pyodide` command")
    args = parser.parse_args()
    WORK.mkdir(exist_ok=True)
    DIST.mkdir(exist_ok=True)
    wheels = [build_wheel(), fetch_micropip()]
    write_lock(wheels, args.pyodide_cli)
    copy_assets()
    write_scores_kernel()
    write_browser_model()
    write_runtime()
    write_default_kb()
    write_manifest()
    write_schema()
    write_embed_config()
    write_icons()
    write_local_model()
    write_service_worker()
    write_compressed()
    print(f"dist/ ready: {', '.join(w.name for w in wheels)}")


if __name__ == "__main__":
    main()
