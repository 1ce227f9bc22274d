"""Retrieval logic (pure): extraction, chunking, BM25, rank fusion."""

from .chunking import Chunk, ChunkDeduper, chunk_document
from .extract import Document, Kind, Section, detect_kind, extract_sections
from .fusion import Fused, fuse
from .lexical import BM25Index, analyze

__all__ = ["BM25Index", "Chunk", "ChunkDeduper", "Document", "Fused", "Kind", "Section",
           "analyze", "chunk_document", "detect_kind", "extract_sections", "fuse"]
