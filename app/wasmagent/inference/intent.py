"""The intent head: a tiny ONNX classifier over sentence embeddings, used by the router."""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import AgentError, ErrorCode
from ..ports import Inference, Tensor

MODEL = "intent"


@dataclass(frozen=True, slots=True)
class IntentResult:
    """The most likely label, its probability, and every label's probability."""

    label: str
    confidence: float
    scores: dict[str, float]


class IntentClassifier:
    """Classifies embeddings into the labels the router knows (question, tool, ...)."""

    def __init__(self, inference: Inference, labels: Sequence[str]) -> None:
        self._inference = inference
        self.labels = list(labels)

    async def classify(self, embedding: array) -> IntentResult:  # type: ignore[type-arg]
        feeds = {"embedding": Tensor("float32", (1, len(embedding)), embedding)}
        outputs = await self._inference.run(MODEL, feeds)
        probs = outputs.get("probabilities")
        if probs is None or len(probs.data) != len(self.labels):
            raise AgentError(ErrorCode.INFERENCE, "the intent model returned an unexpected output")
        scores = {label: float(p) for label, p in zip(self.labels, probs.data, strict=True)}
        best = max(scores, key=scores.__getitem__)
        return IntentResult(best, scores[best], scores)
