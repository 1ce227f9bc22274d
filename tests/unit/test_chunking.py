"""Chunking: passages follow headings, overlap across cuts, skip junk and duplicates."""

from __future__ import annotations

import itertools

import pytest

from wasmagent.retrieval.chunking import ChunkDeduper, chunk_document, split_sentences
from wasmagent.retrieval.extract import Document, Section


def _doc(*sections: Section) -> Document:
    return Document("Guide", list(sections))


def test_chunks_never_span_two_sections_and_keep_their_anchor() -> None:
    doc = _doc(Section("Install", "install", 2, "Run the installer and wait for it to finish."),
               Section("Usage", "usage", 2, "Call the main function with a path to start it."))
    chunks = chunk_document(doc, source="guide.md")
    assert [(c.heading, c.anchor) for c in chunks] == [("Install", "install"), ("Usage", "usage")]
    assert all(c.source == "guide.md" and c.title == "Guide" for c in chunks)
    assert chunks[0].search_text.startswith("Guide: Install\n")


def test_long_sections_split_on_sentences_with_overlap() -> None:
    sentences = [f"Sentence number {i} talks about topic {i} in some detail." for i in range(60)]
    doc = _doc(Section("Long", "long", 2, " ".join(sentences)))
    chunks = chunk_document(doc, source="a.md", max_words=100, overlap_words=20)
    assert len(chunks) > 4
    for chunk in chunks:
        assert len(chunk.text.split()) <= 100
        assert chunk.text.endswith(".")
    for before, after in itertools.pairwise(chunks):
        assert before.text.split(". ")[-1] in after.text, "windows overlap"
    assert len({c.id for c in chunks}) == len(chunks)


def test_near_empty_sections_are_dropped() -> None:
    doc = _doc(Section("Empty", "e", 2, "See below."), Section("Real", "r", 2,
               "This section has enough words to be worth keeping around."))
    assert [c.anchor for c in chunk_document(doc, source="a")] == ["r"]


def test_deduper_catches_copies_that_differ_in_case_and_punctuation() -> None:
    first = _doc(Section("A", "a", 2, "Copyright 2024, the authors. All rights reserved here."))
    second = _doc(Section("B", "b", 2, "COPYRIGHT 2024 the authors -- all rights reserved here!"))
    deduper = ChunkDeduper()
    kept = [c for d in (first, second) for c in chunk_document(d, source="x")
            if not deduper.seen(c)]
    assert len(kept) == 1


def test_ids_are_stable() -> None:
    doc = _doc(Section("A", "a", 2, "The same text gives the same id every time it is chunked."))
    assert chunk_document(doc, source="s")[0].id == chunk_document(doc, source="s")[0].id


def test_sentence_splitting_keeps_versions_and_abbreviations_together() -> None:
    parts = split_sentences("Python 3.11 is faster. It was released in 2022. See e.g. the notes.")
    assert parts[0] == "Python 3.11 is faster."
    assert len(parts) == 3
    with pytest.raises(ValueError, match="overlap"):
        chunk_document(_doc(), source="x", max_words=10, overlap_words=10)
