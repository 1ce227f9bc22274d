"""The held-out evaluation (tests/bench/eval): well-formed, split by its stated rule, and every
answering page really exists and says what the question needs (when the corpus is installed)."""

from __future__ import annotations

import hashlib
import html
import json
import re
from pathlib import Path

import pytest

EVAL = Path(__file__).resolve().parents[1] / "bench" / "eval"
CORPUS = Path("/usr/share/doc/python3.11/html")
KINDS = ("howto", "why", "error", "keyword", "lang")


def _rows(split: str) -> list[dict[str, object]]:
    lines = (EVAL / f"{split}.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def test_both_halves_are_well_formed_and_large_enough() -> None:
    dev, test = _rows("dev"), _rows("test")
    assert len(dev) + len(test) >= 200
    for row in dev + test:
        assert isinstance(row["q"], str)
        assert row["q"].strip()
        assert row["kind"] in KINDS
        pages = row["pages"]
        assert isinstance(pages, list)
        assert pages
        assert set(pages) == set(row["evidence"])  # type: ignore[arg-type]
    questions = [str(r["q"]).lower() for r in dev + test]
    assert len(set(questions)) == len(questions), "no question twice, in or across halves"


def test_the_split_follows_the_rule_in_the_readme() -> None:
    # Within each kind, sorted by BLAKE2b of the text, dealt alternately: dev first.
    dev, test = _rows("dev"), _rows("test")
    for kind in KINDS:
        rows = sorted((r for r in dev + test if r["kind"] == kind),
                      key=lambda r: hashlib.blake2b(str(r["q"]).encode(),
                                                    digest_size=8).hexdigest())
        assert [r["q"] for r in rows[0::2]] == [r["q"] for r in dev if r["kind"] == kind]
        assert [r["q"] for r in rows[1::2]] == [r["q"] for r in test if r["kind"] == kind]


@pytest.mark.skipif(not CORPUS.exists(), reason="python3.11-doc is not installed")
def test_every_answering_page_exists_and_holds_its_evidence() -> None:
    for row in _rows("dev") + _rows("test"):
        for page, pattern in row["evidence"].items():  # type: ignore[attr-defined]
            path = CORPUS / page
            assert path.exists(), (row["q"], page)
            raw = path.read_text(errors="replace")
            text = html.unescape(raw) + "\n" + html.unescape(re.sub(r"<[^>]+>", "", raw))
            assert re.search(pattern, text), (row["q"], page, pattern)
