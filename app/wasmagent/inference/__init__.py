"""Model calls of the core: sentence embeddings (batched) and the intent head."""

from .embedder import EMBEDDING_DIM, Embedder
from .intent import IntentClassifier, IntentResult

__all__ = ["EMBEDDING_DIM", "Embedder", "IntentClassifier", "IntentResult"]
