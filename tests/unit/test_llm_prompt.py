"""The prompt every model gets (server LLM or the browser's local one) and how an answer's
`[n]` markers become its citations. Plain test functions: the same file runs in Pyodide.
"""

from __future__ import annotations

from wasmagent.llm.wire import MAX_PASSAGE_CHARS, SYSTEM_PROMPT, build_messages
from wasmagent.pipeline.llm_worker import _citations
from wasmagent.protocol import PassageIn

PASSAGES = [PassageIn("guide.md", "Serving", "serving", "Run ./build.sh serve."),
            PassageIn("README.md", "Offline", "", "A service worker caches the app."),
            PassageIn("faq.md", "Models", "models", "MiniLM, int8.")]


def test_passages_are_numbered_with_where_they_come_from_then_the_question() -> None:
    system, user = build_messages("How do I serve it?", PASSAGES)
    assert system == {"role": "system", "content": SYSTEM_PROMPT}
    assert "[n]" not in SYSTEM_PROMPT
    assert "[1]" in SYSTEM_PROMPT, "the citation form is shown to the model"
    content = user["content"]
    assert content.index("[1] Serving (guide.md#serving)") < content.index(
        "[2] Offline (README.md)") < content.index("[3] Models (faq.md#models)")
    assert content.endswith("Question: How do I serve it?")


def test_earlier_turns_come_before_the_passages_and_long_passages_are_cut() -> None:
    long = PassageIn("big.md", "Big", "", "word " * MAX_PASSAGE_CHARS)
    messages = build_messages("And offline?", [long], [("How do I serve it?", "Run it [1].")])
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[1]["content"] == "How do I serve it?"
    body = messages[-1]["content"].split("\n", 3)[3]
    assert len(body.split("\n\nQuestion:")[0]) <= MAX_PASSAGE_CHARS


def test_no_passages_is_said_not_left_blank() -> None:
    assert "(no passages were found)" in build_messages("Anything?", [])[-1]["content"]


def test_an_answer_cites_the_passages_it_names_in_the_order_it_names_them() -> None:
    cited = _citations("Serve it [3], then [1]; as [3] says.", PASSAGES, [0.9, 0.8, 0.7])
    assert [(c.source, c.score) for c in cited] == [("faq.md", 0.7), ("guide.md", 0.9)]
    assert cited[0].snippet, "the words that back it come along"


def test_markers_naming_no_given_passage_are_ignored() -> None:
    # A small model writes [4] and [6] when it was given three passages: those cite nothing.
    cited = _citations("It is cached [2][4]. Really [6].", PASSAGES, [0.9, 0.8, 0.7])
    assert [c.source for c in cited] == ["README.md"]


def test_an_answer_without_markers_cites_every_passage_it_was_given() -> None:
    cited = _citations("It works offline.", PASSAGES[:2], [0.9, 0.8])
    assert [c.source for c in cited] == ["guide.md", "README.md"]
    assert _citations("It works offline.", [], []) == ()
