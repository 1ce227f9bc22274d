"""Asking in the browser: documents in, streamed and cited answers out, through the bridge."""

from __future__ import annotations

from playwright.sync_api import expect

from .conftest import Booted

GUIDE = """# Setup guide

## Serving

Run ./build.sh serve to build everything and serve the app on port 8000.

## Offline use

After the first visit the app keeps working offline because a service worker caches it.

## Models

The embedding model is all-MiniLM-L6-v2, quantised to int8 and run by onnxruntime-web.
"""


def _ingest(app: Booted) -> dict[str, object]:
    result: dict[str, object] = app.page.evaluate("""async (text) => {
        const progress = [];
        const r = await wasmagentClient.request('ingest',
            {kb: 'default', documents: [{source: 'docs/guide.md', text}]},
            {onEvent: (e) => { if (e.type === 'progress') progress.push(e); }});
        return {result: r.result, progress: progress.length};
    }""", GUIDE)
    return result


def test_ingested_documents_answer_with_streamed_citations(app: Booted) -> None:
    ingested = _ingest(app)
    assert ingested["result"]["chunks_added"] == 3  # type: ignore[index]
    assert ingested["progress"] >= 1
    got = app.page.evaluate("""async () => {
        const r = await wasmagentClient.ask('how do I serve the app?');
        return {events: r.events, answer: r.answer};
    }""")
    kinds = [e["type"] for e in got["events"]]
    assert kinds[-1] == "done"
    assert kinds.index("delta") < kinds.index("citation") < kinds.index("answer")
    streamed = "".join(e["text"] for e in got["events"] if e["type"] == "delta")
    answer = got["answer"]
    assert streamed == answer["text"]
    assert "./build.sh serve" in answer["text"]
    assert answer["confident"] is True
    first = answer["citations"][0]
    assert (first["source"], first["anchor"], first["title"]) == ("docs/guide.md", "serving",
                                                                  "Serving")
    assert answer["timings_ms"]["total"] > 0


def test_tools_and_honest_unknowns(app: Booted) -> None:
    answers = app.page.evaluate("""async () => {
        const ask = async (q) => (await wasmagentClient.ask(q)).answer;
        return {calc: await ask('what is 17 * 23'), unknown: await ask(
            'which ingredients does a traditional neapolitan pizza dough need')};
    }""")
    assert answers["calc"]["text"] == "17 * 23 = 391"
    assert answers["calc"]["route"] == "tool"
    assert answers["unknown"]["confident"] is False
    assert answers["unknown"]["text"].startswith("I don't know")
    assert answers["unknown"]["citations"] == []


def test_a_user_can_ask_from_the_page(app: Booted) -> None:
    page = app.page
    page.get_by_role("textbox", name="Ask").fill("what is 2^10")
    page.get_by_role("button", name="Send").click()
    expect(page.get_by_role("log")).to_contain_text("2^10 = 1024")


def test_status_reports_model_batcher_and_latencies(app: Booted) -> None:
    status = app.page.evaluate("wasmagentClient.status()")
    assert status["model"] is True
    assert status["batcher"]["batches"] >= 1
    assert "route" in status["metrics"]["stages"]
    assert any(line["event"] == "stage" for line in status["log"])
