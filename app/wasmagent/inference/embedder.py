"""Sentence embeddings: tokenize in Python, batch concurrent requests, run MiniLM via a port.

Concurrent `embed` calls (a question while a large ingestion runs) are coalesced by the
micro-batcher into padded batches of similar length; interactive questions go before queued
background work. Buckets are 16 tokens wide: on real documentation chunks (~130 tokens) that
is ~25% faster than power-of-two buckets, which pad a 130-token text to 256. Each text
becomes one L2-normalised 384-d `array('f')` (pooling and
normalisation are inside the ONNX graph).

`max_wait_ms` defaults to 0: a lone question is not held back waiting for company (that cost
2 ms of every query), yet requests that arrive while a batch runs queue up and go together as
the next batch, which is where batching pays off (ingestion submits its texts all at once).

Note: the int8 model's output shifts slightly with batch composition (cosine ~0.99 between a
text embedded alone and inside a batch), because dynamic quantisation picks scales per batch.
Ranking tolerates it; exact equality across batchings is not promised.

While the host is still making the model's session (`ModelState` pending), `embed` waits for
it; a model that failed for good makes it raise `not_ready`. Callers that must not wait (the
router, answering from keyword search meanwhile) look at `model` first.
"""

from __future__ import annotations

import asyncio
from array import array
from collections.abc import Sequence
from typing import TypeAlias

from ..errors import AgentError, ErrorCode
from ..ports import Clock, Inference, ModelState, Tensor
from ..runtime.batcher import MicroBatcher, Priority
from ..runtime.context import Context
from ..text.tokenizer import WordPieceTokenizer

EMBEDDING_DIM = 384
MODEL = "minilm"
OUTPUT = "sentence_embedding"

Vector: TypeAlias = "array[float]"  # array('f') of EMBEDDING_DIM floats


def pad_batch(batch: Sequence[Sequence[int]]) -> dict[str, Tensor]:
    """Pad token id lists to the longest one: the model's three int64 inputs."""
    width = max(len(ids) for ids in batch)
    ids = array("q")
    mask = array("q")
    for row in batch:
        pad = width - len(row)
        ids.extend(row)
        ids.extend([0] * pad)
        mask.extend([1] * len(row))
        mask.extend([0] * pad)
    shape = (len(batch), width)
    return {
        "input_ids": Tensor("int64", shape, ids),
        "attention_mask": Tensor("int64", shape, mask),
        "token_type_ids": Tensor("int64", shape, array("q", bytes(8 * len(ids)))),
    }


class Embedder:
    """Embeds texts with MiniLM through an `Inference` port, batching concurrent calls."""

    def __init__(self, inference: Inference, tokenizer: WordPieceTokenizer, *,
                 max_batch: int = 32, max_wait_ms: float = 0.0, clock: Clock | None = None,
                 model: ModelState | None = None) -> None:
        self._inference = inference
        self.model = model or ModelState()
        self.tokenizer = tokenizer
        self.batcher: MicroBatcher[list[int], Vector] = MicroBatcher(
            self._run, max_batch=max_batch, max_wait_ms=max_wait_ms, length_of=len,
            bucket_width=16, clock=clock, name="embed")

    async def embed(self, texts: Sequence[str], *, priority: Priority = Priority.INTERACTIVE,
                    ctx: Context | None = None) -> list[Vector]:
        """One vector per text, in order, once the model is ready. Raises `AgentError`
        (`not_ready` when the model failed for good, inference, cancelled, ...)."""
        if not self.model.ready and not await self.usable(ctx):
            raise AgentError(ErrorCode.NOT_READY,
                             f"the embedding model is unavailable ({self.model.error})")
        encoded = [self.tokenizer.encode(text) for text in texts]
        jobs = [self.batcher.submit(ids, priority, ctx) for ids in encoded]
        return list(await asyncio.gather(*jobs))

    async def usable(self, ctx: Context | None = None) -> bool:
        """Once the model settles: True when it is ready, False when it failed for good."""
        waiting = self.model.wait()
        return await (waiting if ctx is None else ctx.run(waiting))

    async def embed_one(self, text: str, *, ctx: Context | None = None) -> Vector:
        return (await self.embed([text], ctx=ctx))[0]

    async def _run(self, batch: list[list[int]]) -> list[Vector]:
        outputs = await self._inference.run(MODEL, pad_batch(batch))
        if OUTPUT not in outputs:
            raise AgentError(ErrorCode.INFERENCE, f"the model has no {OUTPUT!r} output")
        flat = outputs[OUTPUT].data
        if len(flat) != len(batch) * EMBEDDING_DIM:
            raise AgentError(ErrorCode.INFERENCE, "the model returned a wrongly shaped output")
        return [flat[i * EMBEDDING_DIM:(i + 1) * EMBEDDING_DIM] for i in range(len(batch))]

    async def aclose(self) -> None:
        await self.batcher.aclose()
