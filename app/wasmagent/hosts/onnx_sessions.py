"""The native host's inference: onnxruntime sessions behind the `Inference` port.

Sessions come from onnxruntime's C API (`ort_c`) where it loads, else from its Python binding;
both run the same library build. Each model's graph is optimised once and cached
(`ort_cache_dir`); a process that answers one question starts its sessions first of all
(`start_loading`), on a thread, while it imports the rest and opens its knowledge base.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import re
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Protocol

from ..errors import AgentError, ErrorCode
from ..ports import Tensor
from . import ort_c
from .blocking import OneThread

MODELS_DIR = Path(__file__).resolve().parents[3] / "models"
MODEL_FILES = {
    "minilm": "all-minilm-l6-v2/model.int8.onnx",
    "intent": "intent/intent.onnx",
}
# MiniLM comes in two files with the same int8 weights (see models/MODEL_CARD.md): `int8` stores
# them signed (the browser's model; onnxruntime runs it on u8s8 kernels), `uint8` stores them
# + 128 (u8u8 kernels). On x86 without VNNI the u8s8 kernels sum pairs of products in 16-bit
# saturating arithmetic (vpmaddubsw), which bent vectors to cosine 0.96 of the browser's; the
# u8u8 kernels widen first and are exact, but 2-3x slower where VNNI makes u8s8 exact anyway.
MINILM_FILES = {
    "int8": "all-minilm-l6-v2/model.int8.onnx",
    "uint8": "all-minilm-l6-v2/model.uint8.onnx",
}
MINILM_ENV = "WASMAGENT_MINILM_WEIGHTS"  # int8 | uint8 | auto (the default)
CACHE_ENV = "WASMAGENT_CACHE_DIR"  # where optimised graphs are kept; "off" to keep none
ORT_API_ENV = "WASMAGENT_ORT_API"  # c | python | auto (the default: c where it loads)
DISABLE_ALL, ENABLE_EXTENDED = 0, 2  # onnxruntime's GraphOptimizationLevel


def exact_int8_kernels(cpuinfo: str | None, machine: str) -> bool:
    """Whether onnxruntime's u8s8 GEMM is exact here, mirroring MLAS's kernel choice (1.30,
    mlas/lib/platform.cpp). x86: the AVX2 and AVX-512-core kernels saturate (vpmaddubsw); with
    AVX-512 (F/BW/DQ/VL) only AVX512-VNNI replaces them, without it AVX-VNNI does; below AVX2
    the SSE kernel widens to 16 bits first (exact). ARM's kernels are exact. `cpuinfo` is
    /proc/cpuinfo's text; None (not Linux) on x86 means unknown: assume the worst."""
    if machine.lower() not in ("x86_64", "amd64", "i386", "i686", "x86"):
        return True
    if cpuinfo is None:
        return False
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    if "avx2" not in flags:
        return True
    if {"avx512f", "avx512bw", "avx512dq", "avx512vl"} <= flags:
        return "avx512_vnni" in flags
    return "avx_vnni" in flags


def minilm_weights(env: Mapping[str, str] = os.environ, cpuinfo: Path = Path("/proc/cpuinfo"),
                   machine: str | None = None) -> str:
    """The MiniLM file for this CPU (a key of MINILM_FILES); `$WASMAGENT_MINILM_WEIGHTS` forces
    one (tests run the uint8 model on a VNNI machine, or int8 under an emulated older CPU)."""
    forced = env.get(MINILM_ENV, "auto")
    if forced in MINILM_FILES:
        return forced
    if forced != "auto":
        raise ValueError(f"{MINILM_ENV} must be auto, int8 or uint8, not {forced!r}")
    text = cpuinfo.read_text(errors="replace") if cpuinfo.exists() else None
    exact = exact_int8_kernels(text, machine or platform.machine())
    return "int8" if exact else "uint8"


def ort_cache_dir(env: Mapping[str, str] = os.environ) -> Path | None:
    """Where optimised model graphs are cached: `$WASMAGENT_CACHE_DIR`, else the user's cache
    directory; None when turned off."""
    chosen = env.get(CACHE_ENV)
    if chosen == "off":
        return None
    if chosen:
        return Path(chosen)
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "wasmagent"


def _drop_stale(kept: Path, stem: str) -> None:
    """Removes the cached graphs of earlier versions of `stem`'s model or runtime: each is a
    full copy of the model (~23 MB), and every rebuild of the model file made a new one
    (19 were found in one cache). Another checkout still using one recreates it once."""
    pattern = re.compile(rf"{re.escape(stem)}-\d+-\d+-ort[\w.+-]+\.onnx")
    for old in kept.parent.iterdir():
        if old != kept and pattern.fullmatch(old.name):
            with contextlib.suppress(OSError):
                old.unlink()


class Session(Protocol):
    """A model's session: `ort_c.Session`, or `native.BindingSession` as the fallback."""

    def run(self, feeds: Mapping[str, Tensor]) -> dict[str, Tensor]: ...

    def close(self) -> None: ...


def _c_api(env: Mapping[str, str] = os.environ) -> ort_c.Api | None:
    """The C API unless `$WASMAGENT_ORT_API` is `python`, or it cannot be loaded here."""
    choice = env.get(ORT_API_ENV, "auto")
    if choice not in ("auto", "c", "python"):
        raise ValueError(f"{ORT_API_ENV} must be auto, c or python, not {choice!r}")
    if choice == "python":
        return None
    try:
        return ort_c.load()
    except ort_c.Unavailable:
        if choice == "c":
            raise
        return None


_early: dict[tuple[Path, str, int], Future[Session]] = {}


def start_loading(models: Sequence[str] = ("minilm", "intent"), models_dir: Path = MODELS_DIR,
                  threads: int = 0) -> None:
    """Start creating the sessions of a process that answers one question, first thing:
    through the C API they load on a thread without the GIL while the process imports the rest
    of the agent and opens its knowledge base. The `OnnxInference` created later with the
    same models directory and threads takes them over.

    These sessions do not prepack their weights: prepacking MiniLM's int8 matrices cost 20-30
    ms of CPU per session (of ~35-60) to save ~1-2 ms per inference, and such a process runs
    one or two; the outputs are the same (tests/unit/test_ort_c.py)."""
    inference = OnnxInference(models_dir, threads, preload=models, cache_dir=ort_cache_dir(),
                              prepack=False)
    for model, loading in inference._loading.items():
        _early[(models_dir, inference._files[model], threads)] = loading


class OnnxInference:
    """The `Inference` port over onnxruntime; one session per model, created on first use or,
    for the models in `preload`, at once on a thread of their own."""

    def __init__(self, models_dir: Path = MODELS_DIR, threads: int = 0,
                 minilm: str | None = None, *, preload: Sequence[str] = (),
                 cache_dir: Path | None = None, prepack: bool = True) -> None:
        self._dir = models_dir
        self._prepack = prepack
        self._threads = threads
        self.minilm = minilm or minilm_weights()
        self._files = {**MODEL_FILES, "minilm": MINILM_FILES[self.minilm]}
        self._cache = cache_dir
        self._sessions: dict[str, Session] = {}
        self._worker = OneThread("onnx")
        self._loading: dict[str, Future[Session]] = {}
        for model in preload:
            early = _early.pop((models_dir, self._files.get(model, ""), threads), None)
            if early is not None:
                self._loading[model] = early
        wanted = [m for m in preload if m in self._files and m not in self._loading]
        if wanted:
            # With the C API, sessions load beside whatever the process does before its first
            # inference. The Python binding holds the GIL while it initialises one (measured:
            # 50-100 ms in which no other Python thread ran), so only its file reads overlap.
            futures = [(model, Future[Session]()) for model in wanted]
            self._loading.update(futures)
            threading.Thread(target=self._load_all, args=(futures,), name="onnx-load",
                             daemon=True).start()

    def _load_all(self, futures: Sequence[tuple[str, Future[Session]]]) -> None:
        for model, loading in futures:
            if not loading.set_running_or_notify_cancel():
                continue
            try:
                loading.set_result(self._create(model))
            except BaseException as exc:  # handed to whoever waits for the session
                loading.set_exception(exc)

    def session(self, model: str) -> Session:
        if model not in self._sessions:
            loading = self._loading.pop(model, None)
            self._sessions[model] = loading.result() if loading else self._create(model)
        return self._sessions[model]

    def _create(self, model: str) -> Session:
        if model not in self._files:
            raise AgentError(ErrorCode.NOT_FOUND, f"unknown model {model!r}")
        path = self._dir / self._files[model]
        api = _c_api()
        version = api.version if api is not None else _binding_version()
        cached = self._cached_graph(path, version)
        if cached is not None and cached.exists():
            # Optimised already: creating the session from it takes half the time.
            return self._open(api, cached, DISABLE_ALL)
        # EXTENDED, not ALL: the levels above it add layout changes for convolutions only (none
        # here) that tie a saved graph to this CPU.
        if cached is not None:
            partial = cached.with_name(f"{cached.name}.{os.getpid()}.tmp")
            try:
                session = self._open(api, path, ENABLE_EXTENDED, save_to=partial)
                os.replace(partial, cached)
                _drop_stale(cached, path.stem)
                return session
            except Exception:
                # An unwritable cache must not cost the model: create it again without.
                with contextlib.suppress(OSError):
                    partial.unlink()
        return self._open(api, path, ENABLE_EXTENDED)

    def _open(self, api: ort_c.Api | None, path: Path, level: int, *,
              save_to: Path | None = None) -> Session:
        # Idle intra-op threads sleep instead of spinning: on 2 cores the spinning threads
        # took CPU from the event loop and the other requests. Measured: one short text
        # 7.5 -> 3.5 ms of CPU per embedding for +0.3 ms latency; 32x128 batches unchanged.
        config = {"session.intra_op.allow_spinning": "0"}
        if not self._prepack:
            config["session.disable_prepacking"] = "1"
        if api is not None:
            return ort_c.Session(api, path, threads=self._threads, optimization=level,
                                 config=config, save_to=save_to)
        # The Python binding, where the C API is unavailable (imported from native.py, the one
        # module allowed to import onnxruntime, only then).
        from .native import BindingSession

        return BindingSession.create(path, threads=self._threads, optimization=level,
                                     config=config, save_to=save_to)

    def _cached_graph(self, path: Path, version: str) -> Path | None:
        """The cache file for `path`'s optimised graph (new for a changed model or runtime)."""
        if self._cache is None:
            return None
        try:
            stat = path.stat()
            self._cache.mkdir(parents=True, exist_ok=True)
        except OSError:
            return None
        return self._cache / f"{path.stem}-{stat.st_size}-{stat.st_mtime_ns}-ort{version}.onnx"

    async def run(self, model: str, feeds: Mapping[str, Tensor]) -> dict[str, Tensor]:
        session = self._sessions.get(model)
        if session is None:
            loading = self._loading.pop(model, None)
            if loading is not None:
                session = self._sessions[model] = await asyncio.wrap_future(loading)
            else:
                session = await self._worker.call(self.session, model)
        try:
            return await self._worker.call(session.run, feeds)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise AgentError(ErrorCode.INFERENCE, f"onnxruntime failed on {model}: {exc}") from None

    def close(self) -> None:
        sessions = list(self._sessions.values())
        for loading in self._loading.values():
            # A session still loading is waited for, to be released with the others.
            if not loading.cancel():
                with contextlib.suppress(Exception):
                    sessions.append(loading.result())
        self._worker.close()
        for session in sessions:
            session.close()
        self._sessions.clear()
        self._loading.clear()


def _binding_version() -> str:
    from .native import BindingSession

    return BindingSession.version()
