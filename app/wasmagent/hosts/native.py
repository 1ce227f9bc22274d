"""The native host (CPython): onnxruntime, SQLite and numpy behind the core's ports.

Blocking native calls run on one dedicated thread per resource (onnxruntime releases the GIL
while it computes; SQLite file I/O can stall), so the event loop keeps serving. That is fine
here: threads are ruled out only in shared core code, which must also run on Pyodide's single
thread.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from array import array
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import httpx
import numpy as np
import onnxruntime as ort

from ..errors import RETRYABLE_STATUS, AgentError, ErrorCode, UpstreamError
from ..ports import Host, LoopClock, Tensor, check_expect

T = TypeVar("T")

MODELS_DIR = Path(__file__).resolve().parents[3] / "models"
MODEL_FILES = {
    "minilm": "all-minilm-l6-v2/model.int8.onnx",
    "intent": "intent/intent.onnx",
}
_NP = {"int64": np.int64, "float32": np.float32}


class _OneThread:
    """Runs blocking calls in order on a single thread owned by this object."""

    def __init__(self, name: str) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def close(self) -> None:
        self._pool.shutdown(wait=True)


class OnnxInference:
    """The `Inference` port over onnxruntime; one session per model, created on first use."""

    def __init__(self, models_dir: Path = MODELS_DIR, threads: int = 0) -> None:
        self._dir = models_dir
        self._threads = threads
        self._sessions: dict[str, ort.InferenceSession] = {}
        self._worker = _OneThread("onnx")

    def session(self, model: str) -> ort.InferenceSession:
        if model not in self._sessions:
            if model not in MODEL_FILES:
                raise AgentError(ErrorCode.NOT_FOUND, f"unknown model {model!r}")
            options = ort.SessionOptions()
            options.intra_op_num_threads = self._threads
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            path = self._dir / MODEL_FILES[model]
            self._sessions[model] = ort.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"])
        return self._sessions[model]

    async def run(self, model: str, feeds: Mapping[str, Tensor]) -> dict[str, Tensor]:
        session = self.session(model)
        inputs = {name: np.frombuffer(t.data, dtype=_NP[t.dtype]).reshape(t.shape)
                  for name, t in feeds.items()}
        try:
            outputs = await self._worker.call(session.run, None, inputs)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise AgentError(ErrorCode.INFERENCE, f"onnxruntime failed on {model}: {exc}") from None
        names = [o.name for o in session.get_outputs()]
        return {name: _tensor(value) for name, value in zip(names, outputs, strict=True)}

    def close(self) -> None:
        self._worker.close()


def _tensor(value: Any) -> Tensor:
    value = np.ascontiguousarray(value)
    if value.dtype == np.float32:
        data = array("f", value.tobytes())
        return Tensor("float32", tuple(value.shape), data)
    if value.dtype == np.int64:
        return Tensor("int64", tuple(value.shape), array("q", value.tobytes()))
    raise AgentError(ErrorCode.INFERENCE, f"unsupported output type {value.dtype}")


class SqliteStore:
    """The `Store` port over one SQLite file in WAL mode (`:memory:` for tests)."""

    def __init__(self, path: str | Path) -> None:
        self._worker = _OneThread("sqlite")
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB NOT NULL)")

    async def _do(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        def run() -> list[Any]:
            return self._db.execute(sql, params).fetchall()

        try:
            return await self._worker.call(run)
        except sqlite3.Error as exc:
            raise AgentError(ErrorCode.STORAGE, f"SQLite failed: {exc}") from None

    async def get(self, key: str) -> bytes | None:
        rows = await self._do("SELECT value FROM kv WHERE key = ?", (key,))
        return bytes(rows[0][0]) if rows else None

    async def put(self, key: str, value: bytes) -> None:
        await self._do("INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)", (key, value))

    async def delete(self, key: str) -> None:
        await self._do("DELETE FROM kv WHERE key = ?", (key,))

    async def commit(self, puts: Mapping[str, bytes], deletes: Sequence[str] = (),
                     expect: Mapping[str, bytes | None] | None = None) -> None:
        def run() -> None:
            db = self._db
            # IMMEDIATE takes the write lock before the reads, so no other connection can
            # change an expected key between the check and the writes.
            db.execute("BEGIN IMMEDIATE")
            try:
                if expect:
                    current = {}
                    for key in expect:
                        row = db.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
                        current[key] = None if row is None else bytes(row[0])
                    check_expect(current, expect)
                db.executemany("DELETE FROM kv WHERE key = ?", [(k,) for k in deletes])
                db.executemany("INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)",
                               list(puts.items()))
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

        try:
            await self._worker.call(run)
        except sqlite3.Error as exc:
            raise AgentError(ErrorCode.STORAGE, f"SQLite failed: {exc}") from None

    async def keys(self, prefix: str = "") -> list[str]:
        rows = await self._do("SELECT key FROM kv WHERE substr(key, 1, ?) = ? ORDER BY key",
                              (len(prefix), prefix))
        return [r[0] for r in rows]

    def close(self) -> None:
        self._worker.close()
        self._db.close()


class NumpyVectors:
    """The `VectorSearch` port over numpy matrices (one growing float32 matrix per space)."""

    def __init__(self) -> None:
        self._spaces: dict[str, np.ndarray[Any, Any]] = {}

    async def add(self, space: str, dim: int, rows: array) -> int:  # type: ignore[type-arg]
        block = np.frombuffer(rows, dtype=np.float32).reshape(-1, dim)
        current = self._spaces.get(space)
        self._spaces[space] = block.copy() if current is None else np.vstack([current, block])
        return int(self._spaces[space].shape[0])

    async def search(self, space: str, query: array, k: int) -> list[tuple[int, float]]:  # type: ignore[type-arg]
        matrix = self._spaces.get(space)
        if matrix is None or k <= 0:
            return []
        scores = matrix @ np.frombuffer(query, dtype=np.float32)
        k = min(k, scores.shape[0])
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(int(i), float(scores[i])) for i in top]

    async def drop(self, space: str) -> None:
        self._spaces.pop(space, None)


class HttpxStream:
    """The `HttpStream` port over one pooled `httpx.AsyncClient` (keep-alive connections are
    reused across requests; `max_connections` bounds sockets to the upstream)."""

    def __init__(self, *, max_connections: int = 256, keepalive: int = 64) -> None:
        limits = httpx.Limits(max_connections=max_connections,
                              max_keepalive_connections=keepalive, keepalive_expiry=30)
        self._client = httpx.AsyncClient(limits=limits, timeout=None)

    async def post_stream(self, url: str, headers: Mapping[str, str], body: bytes, *,
                          timeout: float) -> AsyncIterator[bytes]:  # noqa: ASYNC109 - per read
        limit = httpx.Timeout(timeout, connect=min(timeout, 10.0), pool=timeout)
        try:
            async with self._client.stream("POST", url, headers=dict(headers), content=body,
                                           timeout=limit) as response:
                if response.status_code >= 300:
                    detail = (await response.aread())[:200].decode("utf-8", "replace")
                    raise UpstreamError(
                        f"the LLM upstream answered HTTP {response.status_code}: {detail}",
                        status=response.status_code,
                        retryable=response.status_code in RETRYABLE_STATUS)
                async for piece in response.aiter_raw():
                    yield piece
        except httpx.TimeoutException as exc:
            raise UpstreamError(f"the LLM upstream timed out ({type(exc).__name__})") from None
        except httpx.HTTPError as exc:
            raise UpstreamError(f"the LLM upstream failed: {type(exc).__name__}: {exc}"
                                ) from None

    async def aclose(self) -> None:
        await self._client.aclose()


def native_host(store_path: str | Path = ":memory:", *, models_dir: Path = MODELS_DIR,
                threads: int = 0) -> Host:
    """A host with every native port; the vocabulary is read from the models directory."""
    vocab_path = models_dir / "all-minilm-l6-v2/vocab.txt"
    labels_path = models_dir / "intent/labels.json"
    labels = tuple(json.loads(labels_path.read_text())) if labels_path.exists() else None
    return Host(
        name="native",
        clock=LoopClock(),
        store=SqliteStore(store_path),
        inference=OnnxInference(models_dir, threads),
        vectors=NumpyVectors(),
        http=HttpxStream(),
        vocab=vocab_path.read_text(encoding="utf-8"),
        intent_labels=labels,
        info={"threads": threads or "auto"},
    )
