"""Answer quality of the opt-in local model (SmolLM2-135M in wllama) against extractive answers.

Both answer writers get the same retrieval, the app's own: the held-out `test` half of
tests/bench/eval (a fixed stride sample, every kind of question), the whole-corpus knowledge
base of the `quality` section, `kb.search(question, embedding, 5)` as the pipeline runs it.
- **extractive**: `compose_answer(question, hits)`, what the app answers by default;
- **local**: what `WllamaLlm` sends in the browser: the LLM worker's first `LLM_PASSAGES` hits,
  cut to the browser host's `LOCAL_PASSAGES` passages of `LOCAL_PASSAGE_CHARS` characters,
  `build_messages`, greedy, at most `LOCAL_MAX_TOKENS` tokens, the stream cut at the first
  repeated sentence (`until_repeat`) — decoded by the real model in Chromium, as the app does.
  (The browser host's constants are read from its source: it imports `js`, so it cannot be
  imported here.)

Rules, the same for both writers (`judge`):
- citation validity: every `[n]` in the text names a passage that was given (extractive
  answers carry structured citations instead: each must be one of the hits it was given);
- cites an answering page: a cited passage comes from a page the eval file lists as answering;
  answers with no citation at all (no `[n]`) are counted apart (the app then cites every given
  passage, which says nothing about what the model used);
- unsupported statements: the answer is split into sentences (`[n]` markers and the fixed
  "I don't know"/"not sure" notices removed; sentences that decline to answer are not
  statements); a sentence with at least `MIN_TERMS` content words (the app's BM25 analyzer:
  stemmed, stop words dropped) is *unsupported* when more than `MAX_MISSING` of them occur in
  none of the passages given to that writer (title, source and text). Words only in the question
  do not count as support. Crude, but reproducible and blind to which writer wrote the text.
Examples of flagged answers go to bench-results.json and `local_quality_examples.md` (this
directory, not part of the app's knowledge base), never to BENCHMARKS.md.
"""

from __future__ import annotations

import ast
import asyncio
import hashlib
import re
import statistics
import time
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

from boot import DIST, serving
from local_model import GENERATE, LOAD

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
EXAMPLES = HERE / "local_quality_examples.md"
SPLIT = "test"
QUESTIONS = 30
"""~20 s a question at 2 threads on a quiet 2-core box (10-12 minutes); minutes each when other
work shares the cores, hence also a time box."""
QUICK_QUESTIONS = 6
BUDGET_S = 600.0
"""Questions are asked in a fixed shuffled order until this much generation time is spent, so
that the questions answered are a fair mix whatever the machine's load; both writers are
scored on the same answered questions."""
QUICK_BUDGET_S = 240.0
THREADS = 2
MIN_TERMS = 3
MAX_MISSING = 0.5
DECLINE = re.compile(
    r"\b(?:don'?t|do not|does not|doesn'?t|cannot|can'?t|could not|couldn'?t) "
    r"(?:know|contain|mention|say|answer|provide|find|include)"
    r"|\bnot (?:sure|enough information)|\bno (?:information|mention)\b", re.IGNORECASE)


def app_limits() -> dict[str, int]:
    """The browser host's LOCAL_* constants, read from app/wasmagent/hosts/browser.py."""
    tree = ast.parse((ROOT / "app" / "wasmagent" / "hosts" / "browser.py").read_text())
    wanted = {"LOCAL_PASSAGES", "LOCAL_PASSAGE_CHARS", "LOCAL_MAX_TOKENS"}
    found = {t.id: ast.literal_eval(node.value) for node in tree.body
             if isinstance(node, ast.Assign) for t in node.targets
             if isinstance(t, ast.Name) and t.id in wanted}
    assert set(found) == wanted, f"browser.py no longer defines {wanted - set(found)}"
    return found


def sample(n: int) -> list[dict[str, Any]]:
    """`n` questions of the split at an even stride (the file is ordered by kind)."""
    from quality import load

    rows = load(SPLIT)
    picked = [rows[i * len(rows) // n] for i in range(min(n, len(rows)))]
    return sorted(picked, key=lambda r: hashlib.blake2b(r["q"].encode()).hexdigest())


async def prepare(db: Path, questions: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each question's hits, its extractive answer and the local model's chat messages."""
    from quality import KB

    from wasmagent.answer.extractive import compose_answer
    from wasmagent.hosts.native import native_host
    from wasmagent.inference.embedder import Embedder
    from wasmagent.knowledge.library import Library
    from wasmagent.llm.wire import build_messages
    from wasmagent.pipeline.llm_worker import LLM_PASSAGES
    from wasmagent.protocol import PassageIn
    from wasmagent.text.tokenizer import WordPieceTokenizer

    limits = app_limits()
    host = native_host(db)
    assert host.inference is not None
    assert host.vocab is not None
    embedder = Embedder(host.inference, WordPieceTokenizer.from_vocab_text(host.vocab))
    kb = await Library(host.store, host.vectors, embedder).get(KB)
    rows = []
    try:
        for q in questions:
            hits = await kb.search(q["q"], await embedder.embed_one(q["q"]), 5)
            answer = compose_answer(q["q"], hits)
            passages = [PassageIn(h.chunk.source, h.chunk.heading or h.chunk.title,
                                  h.chunk.anchor, h.chunk.text) for h in hits[:LLM_PASSAGES]]
            short = [replace(p, text=p.text[:limits["LOCAL_PASSAGE_CHARS"]])
                     for p in passages[:limits["LOCAL_PASSAGES"]]]
            rows.append({
                "q": q["q"], "kind": q.get("kind", ""), "pages": q["pages"],
                "messages": build_messages(q["q"], short),
                "local_given": [_given(p.source, p.title, p.anchor, p.text) for p in short],
                "extractive_given": [_given(h.chunk.source, h.chunk.heading or h.chunk.title,
                                            h.chunk.anchor, h.chunk.text) for h in hits],
                "extractive": {"text": answer.text, "confident": answer.confident,
                               "cited": [c.source for c in answer.citations]}})
    finally:
        await embedder.aclose()
    return rows


def _given(source: str, title: str, anchor: str, text: str) -> dict[str, str]:
    return {"source": source, "title": title, "anchor": anchor, "text": text}


async def _pieces(pieces: Sequence[str]) -> AsyncIterator[str]:
    for piece in pieces:
        yield piece


async def _until_repeat(pieces: Sequence[str]) -> str:
    """The text the app shows for this stream (it stops decoding at the first repeat)."""
    from wasmagent.llm.repetition import until_repeat

    return "".join([p async for p in until_repeat(_pieces(pieces))])  # type: ignore[arg-type]


def _strip_notices(text: str) -> str:
    from wasmagent.answer.extractive import I_DONT_KNOW, NOT_SURE

    return text.replace(I_DONT_KNOW, " ").replace(NOT_SURE, " ")


def judge(text: str, given: Sequence[dict[str, str]], pages: Sequence[str],
          cited_sources: Sequence[str] | None = None) -> dict[str, Any]:
    """One answer by the rules in the module docstring. `cited_sources`: an extractive answer's
    structured citations; without it the `[n]` markers of the text are the citations."""
    from wasmagent.pipeline.llm_worker import CITED
    from wasmagent.retrieval.chunking import split_sentences
    from wasmagent.retrieval.lexical import analyze

    markers = [int(n) for n in CITED.findall(text)]
    if cited_sources is None:
        valid = all(1 <= n <= len(given) for n in markers)
        cited = list(dict.fromkeys(given[n - 1]["source"] for n in markers
                                   if 1 <= n <= len(given)))
    else:
        valid = set(cited_sources) <= {g["source"] for g in given}
        cited = list(dict.fromkeys(cited_sources))
    support = {term for g in given
               for term in analyze(f"{g['title']} {g['source']} {g['anchor']} {g['text']}")}
    statements: list[str] = []
    unsupported: list[str] = []
    for sentence in split_sentences(re.sub(r"\s*\[\d{1,2}\]", "", _strip_notices(text))):
        if DECLINE.search(sentence):
            continue
        terms = set(analyze(sentence))
        if len(terms) < MIN_TERMS:
            continue
        statements.append(sentence)
        if sum(t not in support for t in terms) / len(terms) > MAX_MISSING:
            unsupported.append(sentence)
    return {"valid_citations": valid,
            "cites": bool(markers) if cited_sources is None else bool(cited), "cited": cited,
            "answering": bool(set(cited) & set(pages)),
            "given_answering": bool({g["source"] for g in given} & set(pages)),
            "declined": not statements, "statements": len(statements),
            "unsupported": unsupported}


def generate(ctx: Any, rows: list[dict[str, Any]], max_tokens: int, budget_s: float
             ) -> dict[str, Any]:
    """The rows' local answers, in order, from one page holding the loaded model, until
    `budget_s` of generation is spent; rows left unanswered are dropped from `rows`."""
    out: dict[str, Any] = {"threads": THREADS, "budget_s": budget_s, "planned": len(rows)}
    answered = 0
    with serving(DIST, isolate=True) as url:
        page = ctx.browser.new_page()
        try:
            page.goto(url + "models/smollm2/model.json")
            out.update(page.evaluate(LOAD, THREADS))
            started = time.perf_counter()
            for n, row in enumerate(rows):
                if time.perf_counter() - started > budget_s:
                    break
                got = page.evaluate(GENERATE, [row["messages"], max_tokens])
                answered = n + 1
                row["local_raw"] = got.pop("text")
                row["pieces"] = got.pop("pieces")
                row["timing"] = got
                print(f"bench: local_quality {n + 1}/{len(rows)} "
                      f"({got['ms'] / 1000:.0f} s)", flush=True)
        finally:
            page.close()
    del rows[answered:]
    # Playwright's sync API owns this thread's event loop: the async cut runs on another.
    with ThreadPoolExecutor(1) as pool:
        for row in rows:
            row["local"] = {"text": pool.submit(asyncio.run,
                                                _until_repeat(row.pop("pieces"))).result()}
    return out


def score(rows: list[dict[str, Any]]) -> dict[str, Any]:
    for row in rows:
        row["extractive"]["judged"] = judge(row["extractive"]["text"], row["extractive_given"],
                                            row["pages"], row["extractive"]["cited"])
        row["local"]["judged"] = judge(row["local"]["text"], row["local_given"], row["pages"])
    result: dict[str, Any] = {}
    for writer in ("extractive", "local"):
        judged = [r[writer]["judged"] for r in rows]
        result[writer] = {
            "answers": len(judged),
            "invalid_citations": sum(not j["valid_citations"] for j in judged),
            "no_citation": sum(not j["cites"] for j in judged),
            "cites_answering_page": sum(j["answering"] for j in judged),
            "answers_citing_answering_page": sum(j["answering"] and not j["declined"]
                                                 for j in judged),
            "given_answering_page": sum(j["given_answering"] for j in judged),
            "declined": sum(j["declined"] for j in judged),
            "with_unsupported": sum(bool(j["unsupported"]) for j in judged),
            "statements": sum(j["statements"] for j in judged),
            "unsupported_statements": sum(len(j["unsupported"]) for j in judged)}
    return result


def examples(rows: list[dict[str, Any]], limit: int = 10) -> list[dict[str, Any]]:
    """Answers that broke a rule (invalid citation, unsupported statement), local first."""
    found = []
    for writer in ("local", "extractive"):
        for row in rows:
            j = row[writer]["judged"]
            if j["unsupported"] or not j["valid_citations"]:
                found.append({"writer": writer, "q": row["q"], "pages": row["pages"],
                              "text": row[writer]["text"], "cited": j["cited"],
                              "valid_citations": j["valid_citations"],
                              "unsupported": j["unsupported"],
                              "given": [g["source"] for g in row[f"{writer}_given"]]})
    return [e for e in found if e["writer"] == "local"][:limit] + \
        [e for e in found if e["writer"] == "extractive"][:limit]


def write_examples(section: dict[str, Any]) -> None:
    lines = ["# Local model vs extractive: flagged answers (generated by `./build.sh bench`)", "",
             "Written by tests/bench/local_quality.py (section `local_quality`); not part of the "
             "app's knowledge base, on purpose: these are answers that broke a rule — a `[n]` "
             "naming no given passage, or a sentence whose content words are mostly in no given "
             "passage. Questions are from the held-out test half: read them to judge the model, "
             "do not tune retrieval to them.", "",
             f"Run: {section['date']}, SmolLM2-135M Q4_1, {section['threads']} threads, "
             f"{section['questions']} questions.", ""]
    for e in section["examples"]:
        lines += [f"## {e['writer']}: \"{e['q']}\"", "",
                  f"- answering pages: {', '.join(e['pages'])}",
                  f"- passages given: {', '.join(e['given'])}",
                  f"- cited: {', '.join(e['cited']) or 'nothing'}"
                  f"{'' if e['valid_citations'] else ' (a [n] names no given passage)'}", "",
                  "Answer:", "", *[f"> {line}" for line in e["text"].splitlines() or [""]], ""]
        if e["unsupported"]:
            lines += ["Unsupported by the rule:", "",
                      *[f"- {s}" for s in e["unsupported"]], ""]
    EXAMPLES.write_text("\n".join(lines))


def run(ctx: Any) -> dict[str, Any]:
    """Needs the whole-corpus knowledge base (the `quality` section builds it) and dist/."""
    import e2e

    db = e2e.kb_cache(False)
    if not db.exists():
        return {"skipped": "no whole-corpus knowledge base cached; run the quality section once"}
    started = time.perf_counter()
    questions = sample(QUICK_QUESTIONS if ctx.quick else QUESTIONS)
    with ThreadPoolExecutor(1) as pool:
        rows = pool.submit(asyncio.run, prepare(db, questions)).result()
    limits = app_limits()
    section: dict[str, Any] = generate(ctx, rows, limits["LOCAL_MAX_TOKENS"],
                                       QUICK_BUDGET_S if ctx.quick else BUDGET_S)
    section.update(split=SPLIT, questions=len(rows), limits=limits,
                   date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                   rules={"min_terms": MIN_TERMS, "max_missing": MAX_MISSING},
                   figures=score(rows),
                   first_token_ms=statistics.median(r["timing"]["first_token_ms"] or 0
                                                    for r in rows),
                   answer_ms=statistics.median(r["timing"]["ms"] for r in rows),
                   prompt_tokens=statistics.median(r["timing"]["prompt_tokens"] or 0
                                                   for r in rows))
    section["examples"] = examples(rows)
    section["answers"] = [{"q": r["q"], "pages": r["pages"],
                           "extractive": r["extractive"]["text"], "local": r["local"]["text"],
                           "local_raw": r["local_raw"],
                           "judged": {w: r[w]["judged"] for w in ("extractive", "local")}}
                          for r in rows]
    section["seconds"] = round(time.perf_counter() - started, 1)
    write_examples(section)
    return section


def _row(label: str, figures: dict[str, Any], key: str) -> str:
    def cell(writer: str) -> str:
        f = figures[writer]
        return f"{f[key]}/{f['answers']}" if key in f else "–"  # a figure added since the run
    return f"| {label} | {cell('extractive')} | {cell('local')} |"


def render(section: dict[str, Any]) -> list[str]:
    lines = ["## Local model vs extractive: answer quality", ""]
    if "skipped" in section:
        return [*lines, f"Skipped: {section['skipped']}.", ""]
    f = section["figures"]
    limits = section["limits"]
    lines += [
        f"{section['questions']} questions of the held-out `{section['split']}` half "
        f"(an even sample of {section['planned']} over every kind, asked in a fixed shuffled "
        f"order until {section['budget_s'] / 60:.0f} minutes of generation were spent), the "
        "whole python3.11-doc knowledge base. Both writers "
        "get the app's own retrieval for the question. Extractive: the default answer (quotes "
        "from the top 5 hits). Local: SmolLM2-135M Q4_1 in wllama in Chromium, with the "
        f"app's prompt (`build_messages`, the top {limits['LOCAL_PASSAGES']} passages cut to "
        f"{limits['LOCAL_PASSAGE_CHARS']} characters), greedy, at most "
        f"{limits['LOCAL_MAX_TOKENS']} tokens, cut at the first repeated sentence as the app "
        f"does; {section['threads']} threads here (the app uses half the cores).", "",
        "| | extractive | local model |", "|---|---|---|",
        _row("a `[n]` or citation names a passage that was not given", f, "invalid_citations"),
        _row("cites a passage from an answering page", f, "cites_answering_page"),
        _row("… and answers (does not decline)", f, "answers_citing_answering_page"),
        _row("cites nothing (no `[n]` at all)", f, "no_citation"),
        _row("the passages it was given include an answering page", f, "given_answering_page"),
        _row("declines (\"I don't know\", \"not sure\"), no statement", f, "declined"),
        _row("states something no given passage supports (rule below)", f, "with_unsupported"),
        f"| unsupported sentences / sentences judged | "
        f"{f['extractive']['unsupported_statements']}/{f['extractive']['statements']} | "
        f"{f['local']['unsupported_statements']}/{f['local']['statements']} |", "",
        f"Unsupported, by a fixed rule applied to both: a sentence of {section['rules']['min_terms']} "
        "or more content words (the app's BM25 analyzer: stemmed, stop words dropped; `[n]` and "
        f"the fixed notices removed; sentences that decline are skipped) of which more than "
        f"{section['rules']['max_missing']:.0%} appear in none of the passages that writer was "
        "given. Words only in the question do not count as support. The rule gives a floor, "
        "not a full count: an invented claim made of words the passages contain passes it. An "
        "answer that cites nothing is shown by the app with every given passage as its "
        "source.", "",
        f"Local answers took {section['answer_ms'] / 1000:.0f} s each (median; first token after "
        f"{section['first_token_ms'] / 1000:.0f} s, {section['prompt_tokens']:.0f} prompt "
        f"tokens) on a loaded machine; extractive ones take milliseconds.", ""]
    local, extractive = f["local"], f["extractive"]
    worse = (local["cites_answering_page"] < extractive["cites_answering_page"]
             or local["with_unsupported"] > extractive["with_unsupported"]
             or local["invalid_citations"] > extractive["invalid_citations"])
    if worse:
        lines += ["**The 135M local model answers worse than the extractive answers on these "
                  "measures**, so it stays opt-in and extractive answers stay the default.", ""]
    else:
        lines += ["On these measures the local model is not worse than extractive answers; "
                  "it stays opt-in (it is slower and its download is the user's choice).", ""]
    lines += ["Examples of flagged answers are in `tests/bench/local_quality_examples.md` and "
              "bench-results.json (kept out of this file: it is part of the app's knowledge "
              "base).", ""]
    return lines
