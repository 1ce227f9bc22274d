"""Chunks: retrievable pieces of a document that follow its headings.

- A chunk never spans two sections; a long section is cut into windows of at most `max_words`
  words on sentence boundaries, each window starting with the last `overlap_words` (or so)
  words of the previous one, so an answer that straddles a cut is still found whole.
- Near-empty chunks (fewer than `min_words` words) are dropped, and a `ChunkDeduper` kept
  across documents drops exact and near-exact duplicates (same text after case, spacing and
  punctuation are normalised), which documentation sites repeat a lot.
- Every chunk keeps its source path, the document title, its heading and the heading's anchor;
  its id is a stable hash of source, anchor and text.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from .extract import Document, Section

SENTENCE_END = re.compile(r"(?<=[.!?:])\s+(?=[A-Z0-9\"'(\[>`])|\n{2,}")


@dataclass(frozen=True, slots=True)
class Chunk:
    """One retrievable passage; plain fields so it serialises as a JSON object."""

    id: str
    source: str
    title: str
    heading: str
    anchor: str
    text: str

    @property
    def search_text(self) -> str:
        """What gets indexed and embedded: the titles give context the passage may not repeat."""
        if self.heading and self.heading != self.title:
            return f"{self.title}: {self.heading}\n{self.text}"
        return f"{self.title}\n{self.text}" if self.title else self.text


class ChunkDeduper:
    """Remembers normalised chunk texts; `seen` answers and records in one step."""

    def __init__(self) -> None:
        self._keys: set[str] = set()

    @staticmethod
    def key(text: str) -> str:
        flat = re.sub(r"[\W_]+", " ", text.lower()).strip()
        return hashlib.blake2b(flat.encode(), digest_size=12).hexdigest()

    def seen(self, chunk: Chunk) -> bool:
        key = self.key(chunk.text)
        if key in self._keys:
            return True
        self._keys.add(key)
        return False

    def __len__(self) -> int:
        return len(self._keys)


def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in SENTENCE_END.split(text) if s and s.strip()]


def _windows(sentences: list[str], max_words: int, overlap_words: int) -> list[str]:
    """Greedy windows of whole sentences; a sentence longer than a window is cut by words."""
    pieces: list[list[str]] = []
    for sentence in sentences:
        words = sentence.split()
        while len(words) > max_words:
            pieces.append(words[:max_words])
            words = words[max_words - overlap_words:]
        pieces.append(words)
    windows: list[str] = []
    current: list[list[str]] = []
    size = 0
    for words in pieces:
        if current and size + len(words) > max_words:
            windows.append(" ".join(" ".join(w) for w in current))
            carried: list[list[str]] = []
            kept = 0
            for prev in reversed(current):
                if kept >= overlap_words or kept + len(prev) > max_words // 2:
                    break
                carried.insert(0, prev)
                kept += len(prev)
            current, size = carried, kept
        current.append(words)
        size += len(words)
    if current:
        windows.append(" ".join(" ".join(w) for w in current))
    return windows


def _chunk_id(source: str, anchor: str, text: str) -> str:
    raw = f"{source}#{anchor}\n{text}".encode()
    return hashlib.blake2b(raw, digest_size=10).hexdigest()


def chunk_section(section: Section, *, title: str, source: str, max_words: int = 200,
                  overlap_words: int = 40, min_words: int = 5) -> list[Chunk]:
    if len(section.text.split()) < min_words:
        return []
    windows = _windows(split_sentences(section.text), max_words, overlap_words)
    return [Chunk(_chunk_id(source, section.anchor, w), source, title, section.heading,
                  section.anchor, w)
            for w in windows if len(w.split()) >= min_words]


def chunk_document(doc: Document, *, source: str, max_words: int = 200,
                   overlap_words: int = 40, min_words: int = 5) -> list[Chunk]:
    """Every chunk of a document, in document order; see the module docstring."""
    if overlap_words >= max_words:
        raise ValueError("overlap_words must be smaller than max_words")
    chunks: list[Chunk] = []
    for section in doc.sections:
        chunks.extend(chunk_section(section, title=doc.title, source=source,
                                    max_words=max_words, overlap_words=overlap_words,
                                    min_words=min_words))
    return chunks
