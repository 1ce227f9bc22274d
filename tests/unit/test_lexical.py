"""BM25 search: the obviously right passage comes first, identifiers are findable."""

from __future__ import annotations

import pytest

from wasmagent.retrieval.fusion import fuse
from wasmagent.retrieval.lexical import BM25Index, analyze, stem

DOCS = [
    "open(file, mode) opens a file and returns a file object for reading or writing",
    "os.path.join joins one or more path components intelligently",
    "The sorted function returns a new sorted list from the items in an iterable",
    "A class may define __init__ to initialise new instances",
    "Lists are mutable sequences; tuples are immutable sequences",
    "The logging module provides a flexible event logging system",
]


def _index() -> BM25Index:
    index = BM25Index()
    for i, text in enumerate(DOCS):
        index.add(i, text)
    return index


def test_the_right_passage_ranks_first() -> None:
    index = _index()
    cases = {"how do I open a file": 0, "sort a list": 2, "immutable tuples": 4,
             "logging events": 5}
    for query, expected in cases.items():
        assert index.search(query, 3)[0][0] == expected, query


def test_identifiers_are_found_whole_and_by_parts() -> None:
    index = _index()
    assert index.search("os.path.join", 1)[0][0] == 1
    assert index.search("path join", 1)[0][0] == 1
    assert index.search("__init__", 1)[0][0] == 3
    assert index.search("init method", 1)[0][0] == 3


def test_word_forms_meet() -> None:
    for a, b in [("opening", "open"), ("files", "file"), ("parsed", "parse"),
                 ("dictionaries", "dictionary"), ("sorting", "sorted")]:
        assert stem(a) == stem(b), (a, b)
    assert "the" not in analyze("the file")


def test_no_match_and_empty_index_return_nothing() -> None:
    assert _index().search("zebra quantum", 5) == []
    assert BM25Index().search("anything", 5) == []


def test_serialisation_round_trips() -> None:
    index = _index()
    copy = BM25Index.from_bytes(index.to_bytes())
    for query in ("open file", "os.path.join", "sequences"):
        assert copy.search(query, 6) == index.search(query, 6)
    with pytest.raises(ValueError, match="format"):
        BM25Index.from_bytes(b'{"format": 99}')


def test_removing_a_document_removes_it_from_results() -> None:
    index = _index()
    index.remove(0)
    assert all(doc != 0 for doc, _ in index.search("open a file", 6))
    assert len(index) == len(DOCS) - 1


def test_fusion_rewards_agreement_between_rankings() -> None:
    fused = fuse([(1, 9.0), (2, 5.0), (3, 1.0)], [(3, 0.8), (1, 0.7), (4, 0.6)])
    assert fused[0].index == 1, "ranked high by both"
    assert {f.index for f in fused} == {1, 2, 3, 4}
    top = fused[0]
    assert top.lexical == 9.0
    assert top.dense == 0.7
    assert fuse([], []) == []


def test_a_warm_up_outlived_by_its_documents_ends_quietly() -> None:
    """The background warm-up of impact lists resumes after the knowledge base changed: terms
    whose documents were all removed meanwhile are skipped, not a crash of the warm-up task."""
    index = BM25Index()
    for n, text in enumerate(["open a file", "close the file", "sockets and files"]):
        index.add(n, text)
    slices = index.warm(budget=1)
    next(slices)
    for n in range(3):
        index.remove(n)
    assert sum(slices) == 0
    index.add(0, "json file")
    assert [doc for doc, _ in index.search("file", 3)] == [0]
