"""A small model that loops on one sentence is stopped, and the reader never sees the repeat."""

from __future__ import annotations

from collections.abc import AsyncIterator

from wasmagent.llm.repetition import until_repeat


class Source:
    """Tokens as a model streams them; records whether the consumer stopped it early."""

    def __init__(self, *pieces: str) -> None:
        self.pieces = pieces
        self.closed_early = False

    async def stream(self) -> AsyncIterator[str]:
        sent = 0
        try:
            for piece in self.pieces:
                sent += 1
                yield piece
        finally:
            self.closed_early = sent < len(self.pieces)


async def _run(source: Source) -> list[str]:
    return [piece async for piece in until_repeat(source.stream())]


async def test_a_looping_answer_stops_after_the_first_time_and_decoding_is_stopped() -> None:
    tokens = ["The", " embedding", " model", " is", " MiniLM", " [1].", " The", " embedding",
              " model", " is", " MiniLM", " [1].", " The", " embedding", " model"]
    source = Source(*tokens)
    assert "".join(await _run(source)) == "The embedding model is MiniLM [1]."
    assert source.closed_early


async def test_a_sentence_that_only_starts_like_an_earlier_one_is_streamed_in_full() -> None:
    tokens = ["It runs in wasm.", " It runs", " offline", " too.", " Done here."]
    source = Source(*tokens)
    assert "".join(await _run(source)) == "It runs in wasm. It runs offline too. Done here."
    assert not source.closed_early


async def test_text_without_repeats_passes_through_piece_by_piece() -> None:
    tokens = ["Pyodide", " runs", " Python.", " ORT", " runs", " the", " model."]
    out = await _run(Source(*tokens))
    assert "".join(out) == "Pyodide runs Python. ORT runs the model."
    assert len(out) > 2, "streamed as it comes, not in one piece at the end"


async def test_short_sentences_may_recur() -> None:
    assert "".join(await _run(Source("Yes.", " Yes.", " It works."))) == "Yes. Yes. It works."


async def test_a_repeat_cut_off_at_the_end_is_dropped() -> None:
    out = "".join(await _run(Source("Install it with pip.", " Install it with pip.")))
    assert out == "Install it with pip."


async def test_a_line_repeated_without_a_full_stop_stops_too() -> None:
    source = Source(*["f-string debugging", " with =\n"] * 8)
    assert "".join(await _run(source)).rstrip() == "f-string debugging with ="
    assert source.closed_early


async def test_lines_that_differ_all_pass() -> None:
    lines = Source("- print(f'{x=}')\n", "- print(f'{y=}')\n", "- both work")
    assert "".join(await _run(lines)) == "- print(f'{x=}')\n- print(f'{y=}')\n- both work"
