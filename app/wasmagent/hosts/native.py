"""The native host (CPython): onnxruntime, numpy, aiohttp and a SQL store behind the core's ports.

Blocking native calls run on one dedicated thread per resource (`blocking.OneThread`:
onnxruntime releases the GIL while it computes), so the event loop keeps serving. The stores
(SQLite, PostgreSQL) live in `sql.py`.

Start-up matters to `python -m wasmagent ask` (one question per process): model sessions
(`onnx_sessions`, through onnxruntime's C API where it loads, else the Python binding below)
are created on a thread from the process's first moments, alongside its imports and the
knowledge base's loading, from a graph onnxruntime optimised once and cached; numpy is imported
when vectors are first added, aiohttp when an LLM upstream is first called.
"""

from __future__ import annotations

import json
from array import array
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import RETRYABLE_STATUS, AgentError, ErrorCode, UpstreamError
from ..ports import Host, LoopClock, Tensor
from .onnx_sessions import (
    MINILM_ENV,
    MINILM_FILES,
    MODEL_FILES,
    MODELS_DIR,
    OnnxInference,
    exact_int8_kernels,
    minilm_weights,
    ort_cache_dir,
    start_loading,
)
from .sql import SqliteStore, SqlStore

if TYPE_CHECKING:
    import aiohttp
    import numpy as np
    import onnxruntime as ort

__all__ = ["MINILM_ENV", "MINILM_FILES", "MODELS_DIR", "MODEL_FILES", "AiohttpStream",
           "BindingSession", "NumpyVectors", "OnnxInference", "exact_int8_kernels",
           "minilm_weights", "native_host", "ort_cache_dir", "start_loading"]


class BindingSession:
    """A session of onnxruntime's Python binding, run as `ort_c.Session` is (the fallback where
    the C API is unavailable, or chosen with `$WASMAGENT_ORT_API=python`)."""

    def __init__(self, session: ort.InferenceSession) -> None:
        self._session = session
        self.outputs = [o.name for o in session.get_outputs()]

    @classmethod
    def create(cls, path: Path, *, threads: int, optimization: int, config: Mapping[str, str],
               save_to: Path | None = None) -> BindingSession:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        for key, value in config.items():
            options.add_session_config_entry(key, value)
        options.graph_optimization_level = ort.GraphOptimizationLevel(optimization)
        if save_to is not None:
            options.optimized_model_filepath = str(save_to)
        return cls(ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"]))

    @staticmethod
    def version() -> str:
        import onnxruntime as ort

        return str(ort.__version__)

    def run(self, feeds: Mapping[str, Tensor]) -> dict[str, Tensor]:
        import numpy as np

        kinds = {"int64": np.int64, "float32": np.float32}
        inputs = {name: np.frombuffer(t.data, dtype=kinds[t.dtype]).reshape(t.shape)
                  for name, t in feeds.items()}
        outputs = self._session.run(None, inputs)
        return {name: _tensor(value) for name, value in zip(self.outputs, outputs, strict=True)}

    def close(self) -> None:
        pass


def _tensor(value: Any) -> Tensor:
    import numpy as np

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
    matrix per segment made ingestion quadratic in the number of passages). numpy is imported
    by the methods, not with this module: a one-shot `ask` starts its model sessions first."""

    def __init__(self) -> None:
        self._spaces: dict[str, np.ndarray[Any, Any]] = {}
        self._rows: dict[str, int] = {}

    async def add(self, space: str, dim: int, rows: array) -> int:  # type: ignore[type-arg]
        import numpy as np

        return self._append(space, dim, np.frombuffer(rows, dtype=np.float32).reshape(-1, dim))

    async def add_parts(self, space: str, dim: int, parts: Sequence[bytes]) -> int:
        """Append the little-endian float32 rows of `parts` (a knowledge base's segments as
        stored). A new space gets them copied once into a matrix of exactly their size, which
        numpy allocates with huge pages (see `kb.add_rows`)."""
        import numpy as np

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
        import numpy as np

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
        import numpy as np

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
