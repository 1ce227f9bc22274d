"""Text processing for the models: the BERT WordPiece tokenizer (pure Python, runs in Pyodide)."""

from .tokenizer import Encoding, WordPieceTokenizer

__all__ = ["Encoding", "WordPieceTokenizer"]
