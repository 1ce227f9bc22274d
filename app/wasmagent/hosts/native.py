"""The native host (CPython): onnxruntime, numpy, aiohttp and a SQL store behind the core's ports.

Blocking native calls run on one dedicated thread per resource (`blocking.OneThread`:
onnxruntime releases the GIL while it computes), so the event loop keeps serving. The stores
(SQLite, PostgreSQL) live in `sql.py`.

Start-up matters to `python -m wasmagent ask` (one question per process): model sessions are
created on a thread as soon as the host exists, alongside the knowledge base's loading, from a
graph onnxruntime optimised once and cached (`ort_cache_dir`); aiohttp is imported only when
an LLM upstream is first called.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import re
from array import array
from collections.abc import AsyncIterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnxruntime as ort

from ..errors import RETRYABLE_STATUS, AgentError, ErrorCode, UpstreamError
from ..ports import Host, LoopClock, Tensor
from .blocking import OneThread
from .sql import SqliteStore, SqlStore

if TYPE_CHECKING:
    import aiohttp

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
_NP = {"int64": np.int64, "float32": np.float32}


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


class OnnxInference:
    """The `Inference` port over onnxruntime; one session per model, created on first use or,
    for the models in `preload`, at once on a thread of their own."""

    def __init__(self, models_dir: Path = MODELS_DIR, threads: int = 0,
                 minilm: str | None = None, *, preload: Sequence[str] = (),
                 cache_dir: Path | None = None) -> None:
        self._dir = models_dir
        self._threads = threads
        self.minilm = minilm or minilm_weights()
        self._files = {**MODEL_FILES, "minilm": MINILM_FILES[self.minilm]}
        self._cache = cache_dir
        self._sessions: dict[str, ort.InferenceSession] = {}
        self._worker = OneThread("onnx")
        self._loader: ThreadPoolExecutor | None = None
        self._loading: dict[str, Future[ort.InferenceSession]] = {}
        if preload:
            # Done here, loading the model file (which releases the GIL) overlaps whatever the
            # process does before its first inference. Initialising the session does not:
            # onnxruntime's Python binding holds the GIL through it (measured: 50-100 ms in
            # which no other Python thread ran, of ~75-130 ms in all for MiniLM).
            self._loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="onnx-load")
            for model in preload:
                if model in self._files:
                    self._loading[model] = self._loader.submit(self._create, model)

    def session(self, model: str) -> ort.InferenceSession:
        if model not in self._sessions:
            loading = self._loading.pop(model, None)
            self._sessions[model] = loading.result() if loading else self._create(model)
        return self._sessions[model]

    def _create(self, model: str) -> ort.InferenceSession:
        if model not in self._files:
            raise AgentError(ErrorCode.NOT_FOUND, f"unknown model {model!r}")
        options = self._options()
        path = self._dir / self._files[model]
        cached = self._cached_graph(path)
        if cached is not None and cached.exists():
            # Optimised already: creating the session from it takes half the time.
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            return ort.InferenceSession(str(cached), options, providers=["CPUExecutionProvider"])
        # EXTENDED, not ALL: the levels above it add layout changes for convolutions only (none
        # here) that tie a saved graph to this CPU.
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        if cached is not None:
            partial = cached.with_name(f"{cached.name}.{os.getpid()}.tmp")
            options.optimized_model_filepath = str(partial)
            try:
                session = ort.InferenceSession(str(path), options,
                                               providers=["CPUExecutionProvider"])
                os.replace(partial, cached)
                _drop_stale(cached, path.stem)
                return session
            except Exception:
                # An unwritable cache must not cost the model: create it again without.
                with contextlib.suppress(OSError):
                    partial.unlink()
                options = self._options()
                options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def _options(self) -> ort.SessionOptions:
        options = ort.SessionOptions()
        options.intra_op_num_threads = self._threads
        # Idle intra-op threads sleep instead of spinning: on 2 cores the spinning threads
        # took CPU from the event loop and the other requests. Measured: one short text
        # 7.5 -> 3.5 ms of CPU per embedding for +0.3 ms latency; 32x128 batches unchanged.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return options

    def _cached_graph(self, path: Path) -> Path | None:
        """The cache file for `path`'s optimised graph (new for a changed model or runtime)."""
        if self._cache is None:
            return None
        try:
            stat = path.stat()
            self._cache.mkdir(parents=True, exist_ok=True)
        except OSError:
            return None
        return self._cache / (f"{path.stem}-{stat.st_size}-{stat.st_mtime_ns}"
                              f"-ort{ort.__version__}.onnx")

    async def run(self, model: str, feeds: Mapping[str, Tensor]) -> dict[str, Tensor]:
        session: ort.InferenceSession | None = self._sessions.get(model)
        if session is None:
            loading = self._loading.pop(model, None)
            if loading is not None:
                session = self._sessions[model] = await asyncio.wrap_future(loading)
            else:
                session = await self._worker.call(self.session, model)
        assert session is not None
        inputs = {name: np.frombuffer(t.data, dtype=_NP[t.dtype]).reshape(t.shape)
                  for name, t in feeds.items()}
        try:
            outputs = await self._worker.call(session.run, None, inputs)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise AgentError(ErrorCode.INFERENCE, f"onnxruntime failed on {model}: {exc}") from None
        names = [o.name for o in session.get_outputs()]
        return {name: _tensor(value) for name, value in zip(names, outputs, strict=True)}

    def close(self) -> None:
        if self._loader is not None:
            self._loader.shutdown(wait=True)
        self._worker.close()


def _tensor(value: Any) -> Tensor:
    value = np.ascontiguousarray(value)
    if value.dtype == np.float32:
        data = array("f", value.tobytes())
        return Tensor("float32", tuple(value.shape), data)
    if value.dtype == np.int64:
        return Tensor("int64", tuple(value.shape), array("q", value.tobytes()))
    raise AgentError(ErrorCode.INFERENCE, f"unsupported output type {value.dtype}")


class NumpyVectors:
    """The `VectorSearch` port over numpy: one float32 matrix per space, grown by doubling its
    capacity (appending a segment never copies the rows already there; re-stacking the whole
    matrix per segment made ingestion quadratic in the number of passages)."""

    def __init__(self) -> None:
        self._spaces: dict[str, np.ndarray[Any, Any]] = {}
        self._rows: dict[str, int] = {}

    async def add(self, space: str, dim: int, rows: array) -> int:  # type: ignore[type-arg]
        return self._append(space, dim, np.frombuffer(rows, dtype=np.float32).reshape(-1, dim))

    async def add_parts(self, space: str, dim: int, parts: Sequence[bytes]) -> int:
        """Append the little-endian float32 rows of `parts` (a knowledge base's segments as
        stored). A new space gets them copied once into a matrix of exactly their size, which
        numpy allocates with huge pages (see `kb.add_rows`)."""
        blocks = [np.frombuffer(part, dtype="<f4").reshape(-1, dim) for part in parts]
        if space in self._spaces or len(blocks) < 2:
            for block in blocks:
                self._append(space, dim, block)
            return self._rows.get(space, 0)
        matrix = np.concatenate(blocks).astype(np.float32, copy=False)
        rows = int(matrix.shape[0])
        self._spaces[space], self._rows[space] = matrix, rows
        return rows

    def _append(self, space: str, dim: int, block: np.ndarray[Any, Any]) -> int:
        current = self._spaces.get(space)
        used = self._rows.get(space, 0)
        if current is None:
            # A new space takes the rows as they are, without a copy. The view keeps `rows`
            # alive and exported (the caller hands it over and never resizes it).
            rows = int(block.shape[0])
            self._spaces[space], self._rows[space] = block, rows
            return rows
        if current.shape[0] < used + block.shape[0]:
            capacity = max(used + block.shape[0], 2 * current.shape[0])
            grown = np.empty((capacity, dim), dtype=np.float32)
            grown[:used] = current[:used]
            self._spaces[space] = current = grown
        current[used:used + block.shape[0]] = block
        self._rows[space] = used + block.shape[0]
        return self._rows[space]

    async def search(self, space: str, query: array, k: int) -> list[tuple[int, float]]:  # type: ignore[type-arg]
        matrix = self._spaces.get(space)
        if matrix is None or k <= 0:
            return []
        scores = matrix[:self._rows[space]] @ np.frombuffer(query, dtype=np.float32)
        k = min(k, scores.shape[0])
        if k == 0:
            return []
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(int(i), float(scores[i])) for i in top]

    async def drop(self, space: str) -> None:
        self._spaces.pop(space, None)
        self._rows.pop(space, None)


class AiohttpStream:
    """The `HttpStream` port over one pooled `aiohttp.ClientSession` (keep-alive connections are
    reused across requests; `max_connections` bounds sockets to the upstream).

    aiohttp rather than httpx: measured on the 2-core box against the fake upstream, a streamed
    completion cost httpx 1.7 ms of CPU at 10 requests in flight and 9.5-11.4 ms at 100 (its
    pool re-examines every connection for every request), aiohttp 0.35-0.45 ms at both; at 200
    answers/s that was the difference between keeping up and falling seconds behind. aiohttp is
    imported on the first request: a CLI question that never calls an LLM does not pay for it."""

    def __init__(self, *, max_connections: int = 256, keepalive_s: float = 30.0) -> None:
        self._limit = max_connections
        self._keepalive_s = keepalive_s
        self._session_: aiohttp.ClientSession | None = None

    @property
    def _session(self) -> aiohttp.ClientSession:
        if self._session_ is None:
            import aiohttp

            connector = aiohttp.TCPConnector(limit=self._limit,
                                             keepalive_timeout=self._keepalive_s)
            self._session_ = aiohttp.ClientSession(connector=connector, auto_decompress=True)
        return self._session_

    async def post_stream(self, url: str, headers: Mapping[str, str], body: bytes, *,
                          timeout: float) -> AsyncIterator[bytes]:  # noqa: ASYNC109 - per read
        import aiohttp

        # `timeout` bounds each wait: for a pooled connection, for connecting (at most 10 s),
        # and for every read of the stream; a slow but steady stream is never cut.
        limit = aiohttp.ClientTimeout(total=None, connect=timeout,
                                      sock_connect=min(timeout, 10.0), sock_read=timeout)
        try:
            async with self._session.post(url, headers=dict(headers), data=body,
                                          timeout=limit) as response:
                if response.status >= 300:
                    detail = (await response.content.read(200)).decode("utf-8", "replace")
                    raise UpstreamError(
                        f"the LLM upstream answered HTTP {response.status}: {detail}",
                        status=response.status, retryable=response.status in RETRYABLE_STATUS)
                async for piece in response.content.iter_any():
                    yield piece
        except TimeoutError as exc:  # aiohttp's timeouts are TimeoutErrors
            raise UpstreamError(f"the LLM upstream timed out ({type(exc).__name__})") from None
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"the LLM upstream failed: {type(exc).__name__}: {exc}"
                                ) from None

    async def aclose(self) -> None:
        if self._session_ is not None:
            await self._session_.close()


def native_host(store: str | Path | SqlStore = ":memory:", *, models_dir: Path = MODELS_DIR,
                threads: int = 0) -> Host:
    """A host with every native port; the vocabulary is read from the models directory.

    `store` is an open store (from `sql.open_store`, which the server uses for PostgreSQL) or a
    SQLite file path to open here. The caller closes the store it passed; `info["storage"]`
    names its kind for `status` and `/readyz`.
    """
    if isinstance(store, str | Path):
        store = SqliteStore(store)
    vocab = (models_dir / "all-minilm-l6-v2/vocab.txt").read_text(encoding="utf-8")
    labels_path = models_dir / "intent/labels.json"
    labels = tuple(json.loads(labels_path.read_text())) if labels_path.exists() else None
    # Files are read before the sessions start loading: that thread holds the GIL for tens of
    # ms at a time, and each read here waited for it (4-12 ms apiece, measured).
    inference = OnnxInference(models_dir, threads, preload=("minilm", "intent"),
                              cache_dir=ort_cache_dir())
    return Host(
        name="native",
        clock=LoopClock(),
        store=store,
        inference=inference,
        vectors=NumpyVectors(),
        http=AiohttpStream(),
        vocab=vocab,
        intent_labels=labels,
        info={"threads": threads or "auto", "storage": store.kind, "minilm": inference.minilm},
    )
