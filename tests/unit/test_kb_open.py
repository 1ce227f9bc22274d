"""Opening a saved knowledge base (issue 19): what a reopened one answers is what the one that
ingested answered, whether it was saved packed (BM25 postings and chunks decoded on demand) or
by an earlier version (JSON index, sources in the meta, or the previous binary index; upgraded
when first opened); packed BM25 terms are found by bisecting their UTF-8 bytes; documents added
after reopening are found too; progress counts passages with a total and a time left. Runs in
Pyodide too."""

from __future__ import annotations

import json
from array import array
from collections.abc import Mapping

import pytest

from tests.support.vectors import ListVectors, hashed_embeddings
from wasmagent.inference.embedder import Embedder
from wasmagent.knowledge.kb import KnowledgeBase
from wasmagent.knowledge.library import Library
from wasmagent.ports import MemoryStore, Tensor
from wasmagent.protocol import DocumentIn
from wasmagent.retrieval.lexical import BM25Index
from wasmagent.text.tokenizer import WordPieceTokenizer

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", *"abcdefghijklmnopqrstuvwxyz0123456789.,:#"]
QUESTIONS = ["how to open file 3", "socket timeout 12", "parse json 7", "thread pool 19"]
TOPICS = ["open file", "socket timeout", "parse json", "thread pool", "regular expression"]


class HashModel:
    """A stand-in model: a text's vector is its character ids hashed into 384 buckets."""

    async def run(self, model: str, feeds: Mapping[str, Tensor]) -> dict[str, Tensor]:
        return {"sentence_embedding": hashed_embeddings(feeds["input_ids"])}


def _docs(n: int, start: int = 0) -> list[DocumentIn]:
    return [DocumentIn(f"page{i}.md", f"# Page {i}\n\n" + "\n\n".join(
        f"## {TOPICS[(i + p) % 5]} {i}\n\nHow to {TOPICS[(i + p) % 5]} number {i * 10 + p} "
        f"in section {p}. " * 4 for p in range(4)), "markdown") for i in range(start, start + n)]


def _library(store: MemoryStore, clock: object | None = None) -> Library:
    embedder = Embedder(HashModel(), WordPieceTokenizer(VOCAB))
    return Library(store, ListVectors(), embedder, clock=clock)  # type: ignore[arg-type]


async def _answers(library: Library) -> list[list[tuple[str, str]]]:
    kb = await library.get("kb")
    assert library.embedder is not None
    found = []
    for q in QUESTIONS:
        hits = await kb.search(q, await library.embedder.embed_one(q), 5)
        found.append([(h.chunk.source, h.chunk.text) for h in hits])
    return found


async def test_a_reopened_knowledge_base_answers_as_the_one_that_ingested_it() -> None:
    store = MemoryStore()
    writer = _library(store)
    await writer.ingest("kb", _docs(40))
    before = await _answers(writer)
    assert any(before)
    reader = _library(store)
    kb = await reader.get("kb")
    assert kb.lazily_loaded  # nothing decoded but what the questions below need
    assert await _answers(reader) == before
    assert kb.sources == (await writer.get("kb")).sources
    assert [c.text for c in kb.chunks] == [c.text for c in (await writer.get("kb")).chunks]


async def test_a_knowledge_base_saved_by_an_earlier_version_still_opens() -> None:
    store = MemoryStore()
    writer = _library(store)
    await writer.ingest("kb", _docs(30))
    before = await _answers(writer)
    kb = await writer.get("kb")
    # What the previous version stored: a JSON index, sources in the meta, no segment sizes.
    store.data["kb/kb/lexical"] = kb.lexical.to_bytes()
    meta = json.loads(store.data["kb/kb/meta"])
    del meta["sizes"]
    meta["sources"] = kb.sources
    store.data["kb/kb/meta"] = json.dumps(meta).encode()
    del store.data["kb/kb/sources"]
    reader = _library(store)
    assert await _answers(reader) == before
    assert (await reader.get("kb")).sources == kb.sources
    # Opening it once saved it in the current layout: the next opening is the fast one.
    upgraded = _library(store)
    assert (await upgraded.get("kb")).lazily_loaded
    assert await _answers(upgraded) == before
    await reader.ingest("kb", _docs(5, start=30))  # and it takes more documents
    again = await KnowledgeBase.load(store, "kb", None)
    assert again is not None
    assert len(again) == len(await reader.get("kb"))
    assert again.sources == (await reader.get("kb")).sources


async def test_documents_added_after_reopening_are_found_and_saved() -> None:
    store = MemoryStore()
    await _library(store).ingest("kb", _docs(20))
    reader = _library(store)
    await reader.ingest("kb", [DocumentIn("new.md", "# Zebra care\n\nFeeding a zebra 42 "
                                          "needs hay and water every day, twice.", "markdown")])
    kb = await reader.get("kb")
    assert kb.chunks[kb.lexical.search("zebra hay", 1)[0][0]].source == "new.md"
    reopened = await KnowledgeBase.load(store, "kb", None)
    assert reopened is not None
    assert reopened.chunks[reopened.lexical.search("zebra hay", 1)[0][0]].source == "new.md"
    assert reopened.sources["new.md"] == 1


async def test_an_index_saved_packed_round_trips_and_still_takes_documents() -> None:
    from wasmagent.knowledge.packed import decode_lexical, encode_lexical

    index = BM25Index()
    for n, text in enumerate(["open a file", "close the file", "sockets and files", "json"]):
        index.add(n, text)
    packed = decode_lexical(encode_lexical(index))
    assert packed.search("file", 4) == index.search("file", 4)
    assert len(packed.postings) == len(index.postings)
    packed.add(4, "file file file")
    index.add(4, "file file file")
    assert packed.search("file", 5) == index.search("file", 5)
    packed.remove(1)
    index.remove(1)
    assert packed.search("file", 5) == index.search("file", 5)
    assert dict(packed.postings.items()) == index.postings


def _v2_blob(index: BM25Index) -> bytes:
    """The index as the previous version stored it: a JSON header, then the arrays."""
    from wasmagent.knowledge.packed import MAGIC_V2, le_bytes

    terms = list(index.postings)
    docs, tfs = array("i"), array("i")
    for term in terms:
        docs.extend(index.postings[term].keys())
        tfs.extend(index.postings[term].values())
    header = json.dumps({"terms": terms, "counts": [len(index.postings[t]) for t in terms],
                         "docs": len(index.lengths)}).encode()
    return b"".join([MAGIC_V2, len(header).to_bytes(4, "little"), header,
                     le_bytes(array("i", index.lengths.keys())),
                     le_bytes(array("i", index.lengths.values())), le_bytes(docs), le_bytes(tfs)])


def test_questions_to_a_packed_index_decode_no_term() -> None:
    """A question reads its terms' postings straight from the packed arrays: in the browser,
    decoding them into dicts cost a visit's first questions milliseconds a term, and memory."""
    from wasmagent.knowledge.packed import LazyPostings, decode_lexical, encode_lexical

    index = BM25Index()
    texts = ["open a file", "close the file", "sockets and files", "json file", "json", "yaml"]
    for n, text in enumerate(texts):
        index.add(n, text)
    for blob in (encode_lexical(index), _v2_blob(index)):  # the current form, the previous one
        packed = decode_lexical(blob)
        postings = packed.postings
        assert isinstance(postings, LazyPostings)
        terms = postings.packed
        assert packed.search("json files", 6) == index.search("json files", 6)
        assert [postings.df(t) for t in index.postings] == [len(d) for d in index.postings.values()]
        assert postings.packed == terms


async def test_an_index_saved_in_the_previous_binary_form_opens_and_is_resaved() -> None:
    from wasmagent.knowledge.packed import MAGIC, decode_lexical

    store = MemoryStore()
    writer = _library(store)
    await writer.ingest("kb", _docs(30))
    before = await _answers(writer)
    kb = await writer.get("kb")
    store.data["kb/kb/lexical"] = _v2_blob(decode_lexical(store.data["kb/kb/lexical"]))
    reader = _library(store)
    assert await _answers(reader) == before
    assert store.data["kb/kb/lexical"].startswith(MAGIC)  # upgraded once opened
    again = _library(store)
    assert (await again.get("kb")).lazily_loaded
    assert await _answers(again) == before
    assert (await again.get("kb")).lexical.postings == kb.lexical.postings


async def test_packed_terms_are_found_by_their_bytes_and_save_again_unchanged() -> None:
    from wasmagent.knowledge.packed import LazyPostings, decode_lexical, encode_lexical

    index = BM25Index()
    texts = ["zebra café naïve", "ábaco zebra", "日本語 text", "a b c", "zz zzz", "café café"]
    for n, text in enumerate(texts):
        index.add(n, text)
    blob = encode_lexical(index)
    packed = decode_lexical(blob).postings
    assert isinstance(packed, LazyPostings)
    for term in [*index.postings, "", "aaa", "zzzz", "caf", "cafés", "\U0010ffff"]:
        assert (term in packed) == (term in index.postings), term
        assert packed.get(term) == index.postings.get(term), term
    assert packed.packed == 0
    # Saving an index only partly decoded (and added to) gives what saving it whole would.
    partial = decode_lexical(blob)
    whole = decode_lexical(blob)
    partial.postings.get("zebra")
    for one in (partial, whole, index):
        one.add(len(texts), "zebra crossing 日本語")
    whole.postings.materialize()
    assert encode_lexical(partial) == encode_lexical(whole) == encode_lexical(index)
    with pytest.raises(ValueError, match="truncated"):
        decode_lexical(blob[:-3])


class StepClock:
    """Each reading is a second later than the last: every step takes a second."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        self.now += 1.0
        return self.now

    def wall(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


async def test_progress_counts_passages_with_a_total_and_the_time_left() -> None:
    seen: list[tuple[int, int, str]] = []
    library = _library(MemoryStore(), StepClock())
    report = await library.ingest("kb", _docs(120),
                                  progress=lambda d, t, m: seen.append((d, t, m)))
    done = [d for d, _, _ in seen]
    assert done == sorted(done)
    assert len(seen) > 3
    assert all(t >= d for d, t, _ in seen)
    assert seen[-1][:2] == (report.chunks_added, report.chunks_added)
    # Mid-way the total is an estimate of the whole, not the passages so far.
    middle = seen[len(seen) // 2]
    assert middle[0] < middle[1]
    assert abs(middle[1] - report.chunks_added) <= report.chunks_added * 0.25
    assert "left" in middle[2]
    assert f"of about {middle[1]} passages" in middle[2]
