"""The native host's sessions through onnxruntime's C API (`hosts/ort_c.py`, issue 19): the
same outputs as the Python binding bit for bit, the binding as the fallback where the C API
cannot be loaded, sessions started first thing in a one-shot process taken over by its host,
and an `ask` that never imports the binding."""

from __future__ import annotations

import asyncio
from array import array
from pathlib import Path

import pytest

from tests.support.processes import imported_by_ask
from wasmagent.hosts import onnx_sessions, ort_c
from wasmagent.hosts.native import MODELS_DIR, BindingSession, OnnxInference
from wasmagent.inference.embedder import Embedder
from wasmagent.ports import Tensor
from wasmagent.text.tokenizer import WordPieceTokenizer

ROOT = Path(__file__).resolve().parents[2]
TEXTS = ["how do I read a file line by line", "Thanks a lot!", "?",
         "asyncio.gather runs awaitables concurrently " * 20]


def _feeds(ids: list[list[int]]) -> dict[str, Tensor]:
    width = max(len(row) for row in ids)
    flat = [t for row in ids for t in row + [0] * (width - len(row))]
    mask = [int(t != 0) for t in flat]
    shape = (len(ids), width)
    return {"input_ids": Tensor.int64(shape, flat), "attention_mask": Tensor.int64(shape, mask),
            "token_type_ids": Tensor.int64(shape, [0] * len(flat))}


@pytest.mark.parametrize("weights", ["int8", "uint8"])
def test_the_c_api_computes_what_the_python_binding_does(weights: str) -> None:
    vocab = (MODELS_DIR / "all-minilm-l6-v2/vocab.txt").read_text(encoding="utf-8")
    tokenizer = WordPieceTokenizer.from_vocab_text(vocab)
    ids = [tokenizer.encode(t)[:128] for t in TEXTS]
    model = MODELS_DIR / onnx_sessions.MINILM_FILES[weights]
    config = {"session.intra_op.allow_spinning": "0"}
    ours = ort_c.Session(ort_c.load(), model, threads=1, optimization=2, config=config)
    theirs = BindingSession.create(model, threads=1, optimization=2, config=config)
    # What a one-shot process's sessions do (`start_loading`): the same outputs.
    unpacked = ort_c.Session(ort_c.load(), model, threads=1, optimization=2,
                             config={**config, "session.disable_prepacking": "1"})
    try:
        assert ours.inputs == ["input_ids", "attention_mask", "token_type_ids"]
        for batch in ([ids[0]], ids):
            got, want = ours.run(_feeds(batch)), theirs.run(_feeds(batch))
            assert list(got) == list(want) == ["sentence_embedding"]
            assert got["sentence_embedding"].shape == (len(batch), 384)
            assert got["sentence_embedding"].data == want["sentence_embedding"].data
            assert unpacked.run(_feeds(batch)) == got
    finally:
        ours.close()
        unpacked.close()


def test_a_failing_call_raises_with_onnxruntimes_message() -> None:
    model = MODELS_DIR / onnx_sessions.MINILM_FILES["int8"]
    session = ort_c.Session(ort_c.load(), model, threads=1, optimization=2, config={})
    try:
        bad = {"input_ids": Tensor.int64((1, 2), [101, 102])}  # two of three inputs missing
        with pytest.raises(RuntimeError, match=r"onnxruntime Run: .*Missing Input"):
            session.run(bad)
        with pytest.raises(RuntimeError, match="CreateSession"):
            ort_c.Session(ort_c.load(), MODELS_DIR / "no-such.onnx", threads=1,
                          optimization=2, config={})
    finally:
        session.close()


def _intent_outputs(inference: OnnxInference) -> dict[str, Tensor]:
    feeds = {"embedding": Tensor.float32((1, 384), [((i * 7) % 13 - 6) / 40 for i in range(384)])}
    try:
        return asyncio.run(inference.run("intent", feeds))
    finally:
        inference.close()


def test_the_binding_is_the_fallback_where_the_c_api_is_unavailable(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    c_api = OnnxInference(cache_dir=None)
    assert isinstance(c_api.session("intent"), ort_c.Session)
    want = _intent_outputs(c_api)

    monkeypatch.setenv(onnx_sessions.ORT_API_ENV, "python")
    chosen = OnnxInference(cache_dir=None)
    assert isinstance(chosen.session("intent"), BindingSession)
    assert _intent_outputs(chosen) == want

    monkeypatch.setenv(onnx_sessions.ORT_API_ENV, "auto")
    monkeypatch.setattr(ort_c, "_loaded", {})
    monkeypatch.setattr(ort_c, "library_path", lambda: tmp_path / "libonnxruntime.so.0")
    missing = OnnxInference(cache_dir=None)
    assert isinstance(missing.session("intent"), BindingSession)
    assert _intent_outputs(missing) == want
    monkeypatch.setenv(onnx_sessions.ORT_API_ENV, "c")
    with pytest.raises(ort_c.Unavailable):
        OnnxInference(cache_dir=None).session("intent")


def test_sessions_started_first_thing_are_taken_over_by_the_host(tmp_path: Path) -> None:
    key = (MODELS_DIR, onnx_sessions.MODEL_FILES["intent"], 1)
    onnx_sessions.start_loading(("intent",), MODELS_DIR, threads=1)
    started = onnx_sessions._early[key]
    inference = OnnxInference(MODELS_DIR, 1, preload=("intent",), cache_dir=tmp_path)
    assert inference._loading["intent"] is started
    assert key not in onnx_sessions._early
    assert inference.session("intent") is started.result()
    inference.close()
    # Another models directory or thread count starts its own.
    onnx_sessions.start_loading(("intent",), MODELS_DIR, threads=1)
    other = OnnxInference(MODELS_DIR, 2, preload=("intent",), cache_dir=tmp_path)
    assert other._loading["intent"] is not started
    other.close()
    onnx_sessions._early.pop(key).result().close()


def test_embeddings_through_the_host_match_the_binding(monkeypatch: pytest.MonkeyPatch) -> None:
    vocab = (MODELS_DIR / "all-minilm-l6-v2/vocab.txt").read_text(encoding="utf-8")
    tokenizer = WordPieceTokenizer.from_vocab_text(vocab)

    async def embed() -> list[array]:  # type: ignore[type-arg]
        embedder = Embedder(OnnxInference(threads=1, minilm="int8", cache_dir=None), tokenizer)
        out = [await embedder.embed_one(t) for t in TEXTS]
        out += await embedder.embed(TEXTS)
        await embedder.aclose()
        return out

    c_api = asyncio.run(embed())
    monkeypatch.setenv(onnx_sessions.ORT_API_ENV, "python")
    assert asyncio.run(embed()) == c_api


def test_an_ask_never_imports_the_python_binding(tmp_path: Path) -> None:
    imported, stderr = imported_by_ask(tmp_path / "kb.sqlite", "what is a list?")
    assert "wasmagent.hosts.ort_c" in imported, stderr
    assert not [m for m in imported if m.startswith("onnxruntime")]
