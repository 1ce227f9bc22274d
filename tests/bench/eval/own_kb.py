"""The app's own questions, asked natively of small mixed knowledge bases (issue 20).

The whole-corpus evaluation (dev / test / legacy) is one large, uniform site; users' knowledge
bases are small and mixed: the app ships with its own docs (README.md, BENCHMARKS.md,
models/MODEL_CARD.md: `DEFAULT_KB_SOURCES` of wasm_pkg/build.py) and people add a page or two
of their own. A ranking fitted on the Python docs once let a long README section outrank a
short user's guide that was about the question (and the answer lost its confidence), which
only the browser tests saw. `CASES` are the questions the e2e tests ask of such knowledge bases
(tests/e2e/test_ask.py, test_app.py, test_widget.py, test_pyscript.py, test_boot.py), with
what those tests require of the answer; `check()` asks them through the agent's protocol with
the native host, no browser, in a few seconds. tests/unit/test_own_kb_answers.py runs it, and
fit_rank.py reports it for every fit (a fit that fails it is not taken).

The native runtime and onnxruntime-web move a cosine by up to ~0.005 (`COSINE_TIE` in
answer/extractive.py); `margins()` reports how far each expected first source is ahead, so a
fit can be checked for more than a bare pass.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
E2E = ROOT / "tests" / "e2e"


def default_sources() -> list[Path]:
    """The files the app's shipped knowledge base is built from (the build's own list)."""
    spec = importlib.util.spec_from_file_location("_wasm_build", ROOT / "wasm_pkg" / "build.py")
    assert spec is not None
    assert spec.loader is not None
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    return [ROOT / p for p in build.DEFAULT_KB_SOURCES if (ROOT / p).exists()]


# The documents the e2e tests add (copied from them: test files are not importable here).
GUIDE = """# Setup guide

## Serving

Run ./build.sh serve to build everything and serve the app on port 8000.

## Offline use

After the first visit the app keeps working offline because a service worker caches it.

## Models

The embedding model is all-MiniLM-L6-v2, quantised to int8 and run by onnxruntime-web.
"""
RECIPES = ("# Recipes\n\n## Pancakes\n\nMix two eggs, 250 ml milk and 125 g flour, "
           "then rest the batter for thirty minutes before frying.")
LIGHTHOUSE = "# Lighthouse\n\nThe keeper feeds the lighthouse cat at noon sharp."
PAYLOAD = """<html><head><title>Payloads</title></head><body>
<h1>Payload page</h1>
<p>The secret ingredient is paprika. <img src=x></p>
<p>Click <a href="#">here</a> for <b>more</b>.</p>
</body></html>"""


@dataclass(frozen=True)
class Case:
    """A question, the knowledge base it is asked of, and what the e2e test asserts of the
    answer. `kb`: `shipped` (the app's own docs), `mixed` (those plus the documents every
    `mixed` case adds: one small mixed knowledge base, as a user's becomes) or `own` (only the
    documents the `own` cases add)."""

    question: str
    kb: str = "shipped"
    added: tuple[tuple[str, str], ...] = ()
    first: str | None = None
    """A regular expression the first citation's `source#anchor` must match."""
    confident: bool | None = None
    says: str | None = None
    cites: str | None = None
    """A regular expression some citation's source must match."""
    route: str | None = None
    """The route the answer must take (`canned`: the intent head's reply, not the documents)."""
    keywords_only: bool = False
    """Asked without the embedding model (the app when the model file cannot be fetched)."""
    note: str = field(default="", compare=False)


KBS = ("shipped", "mixed", "own")
CASES: tuple[Case, ...] = (
    Case("how do I serve the app?", "mixed", (("docs/guide.md", GUIDE),), first=r"^docs/guide\.md#serving$",
         confident=True, says="./build.sh serve", note="test_ask"),
    Case("which embedding model does it use?", first=r"^MODEL_CARD\.md#", confident=True,
         says="all-MiniLM-L6-v2", note="test_widget"),
    Case("why does the agent run in a plain module worker instead of pyscript?",
         first=r"^(README|BENCHMARKS)\.md#", says="module worker", cites=r"^README\.md$",
         note="test_app, test_widget, test_pyscript"),
    Case("why does the agent run in a plain module worker instead of pyscript?",
         first=r"^(README|BENCHMARKS)\.md#", keywords_only=True, note="test_app (no model)"),
    Case("which embedding model is used?", cites=r".", note="test_boot"),
    Case("Which embedding model does wasmagent use?", cites=r".", note="test_local_model"),
    Case("how long should pancake batter rest?", "mixed", (("recipes.md", RECIPES),),
         first=r"^recipes\.md#pancakes$", says="thirty minutes", note="test_app"),
    Case("when is the lighthouse cat fed?", "mixed", (("lighthouse.md", LIGHTHOUSE),),
         first=r"^lighthouse\.md#", says="noon sharp", note="test_app"),
    Case("what is the secret ingredient?", "mixed", (("payload.html", PAYLOAD),),
         first=r"^payload\.html#", says="paprika", note="test_app"),
    Case("how many days do I have to return a kettle?", "own",
         (("faq.md", (E2E / "host_site" / "faq.md").read_text()),), first=r"^faq\.md#returns$",
         says="45 days", note="test_widget (an owner's own kb)"),
    # Not for the documents: the canned reply stands (the knowledge base gives way to the intent
    # head's guess only when it does not speak to the question, pipeline/workers.py).
    Case("write me a poem about the sea", route="canned", note="test_inference"),
    Case("nice to meet you, who made you", route="canned", note="test_inference"),
)


def failures(case: Case, answer: dict[str, Any]) -> list[str]:
    """What the answer misses of the case's expectations (empty: it passes)."""
    cites = answer.get("citations", [])
    out = []
    if case.first is not None:
        first = f"{cites[0]['source']}#{cites[0].get('anchor', '')}" if cites else "nothing"
        if not re.search(case.first, first):
            out.append(f"first citation {first}, wanted {case.first}")
    if case.confident is not None and bool(answer.get("confident")) != case.confident:
        out.append(f"confident is {bool(answer.get('confident'))}")
    if case.says is not None and case.says.lower() not in answer.get("text", "").lower():
        out.append(f"does not say {case.says!r}: {answer.get('text', '')[:120]!r}")
    if case.route is not None and answer.get("route") != case.route:
        out.append(f"route is {answer.get('route')}, wanted {case.route}")
    if case.cites is not None and not any(re.search(case.cites, c["source"]) for c in cites):
        out.append(f"cites no {case.cites}")
    return out


async def _service() -> Any:
    """A native service with the knowledge bases of `CASES` (`Case.kb`)."""
    from wasmagent.hosts.native import native_host
    from wasmagent.service import Service

    events: list[dict[str, Any]] = []
    host = native_host(":memory:")
    service = Service(host, lambda event: events.append(event.to_wire()),
                      intent_labels=host.intent_labels)
    agent = service.start()
    shipped = [(p.name, p.read_text()) for p in default_sources()]
    added = {kb: [d for c in CASES if c.kb == kb for d in c.added] for kb in KBS}
    for kb, docs in (("shipped", shipped), ("mixed", [*shipped, *added["mixed"]]),
                     ("own", added["own"])):
        agent.submit({"v": 1, "type": "ingest", "id": kb, "kb": kb,
                      "documents": [{"source": s, "text": t} for s, t in dict(docs).items()]})
        await agent.drain()
        assert any(e["type"] == "result" and e.get("id") == kb for e in events), events[-3:]
    return service, agent, events


async def _keywords_only(service: Any, case: Case) -> dict[str, Any]:
    """The answer without a query vector (as the app gives it when the model is missing): the
    retrieval worker's own two steps, since the native host always has its model."""
    from wasmagent.answer.extractive import compose_answer

    kb = await service.library.get(case.kb)
    answer = compose_answer(case.question, await kb.search(case.question, None, 5))
    return {"text": answer.text, "confident": answer.confident,
            "citations": [{"source": c.source, "anchor": c.anchor} for c in answer.citations]}


async def answers(cases: Sequence[Case] = CASES) -> list[tuple[Case, dict[str, Any]]]:
    """Every case asked through the agent's protocol."""
    service, agent, events = await _service()
    out = []
    for n, case in enumerate(cases):
        if case.keywords_only:
            out.append((case, await _keywords_only(service, case)))
            continue
        events.clear()
        agent.submit({"v": 1, "type": "ask", "id": f"q{n}", "text": case.question,
                      "kb": case.kb})
        await agent.drain()
        out.append((case, next(e for e in reversed(events) if e["type"] == "answer")))
    await service.aclose()
    return out


async def check(cases: Sequence[Case] = CASES) -> list[str]:
    """One line per failed expectation, naming the question (empty: every case passes)."""
    return [f"{case.question!r} ({case.note}): {problem}"
            for case, answer in await answers(cases) for problem in failures(case, answer)]


async def candidates() -> tuple[Any, list[tuple[Case, Any, Any]]]:
    """(service, [(case, knowledge base, query vector)]) for every case with a model and an
    expected first source, for fitting on the same first-stage lists a search ranks. The
    caller closes the service."""
    service, _, _ = await _service()
    out = []
    for case in CASES:
        if case.keywords_only or case.first is None:
            continue
        kb = await service.library.get(case.kb)
        out.append((case, kb, await service.embedder.embed_one(case.question)))
    return service, out


if __name__ == "__main__":
    import asyncio
    import sys

    sys.path.insert(0, str(ROOT / "app"))
    problems = asyncio.run(check())
    print("\n".join(problems) or f"all {len(CASES)} cases pass")
