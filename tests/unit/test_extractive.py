"""Extractive answers: quote what answers, cite it, and say "I don't know" otherwise."""

from __future__ import annotations

from dataclasses import dataclass

from wasmagent.answer.extractive import I_DONT_KNOW, NOT_SURE, compose_answer
from wasmagent.retrieval.chunking import Chunk


@dataclass(frozen=True)
class Hit:
    chunk: Chunk
    score: float
    lexical: float
    dense: float


def _chunk(n: int, heading: str, text: str) -> Chunk:
    return Chunk(f"c{n}", f"docs/p{n}.html", "Docs", heading, f"a{n}", text)


OPEN = _chunk(1, "open()", "Open file and return a corresponding file object. If the file "
              "cannot be opened, an OSError is raised. The mode argument defaults to 'r'.")
SORT = _chunk(2, "Sorting", "Python lists have a built-in list.sort() method that modifies the "
              "list in-place. There is also a sorted() built-in function that builds a new "
              "sorted list from an iterable.")


def test_the_answer_quotes_the_sentence_that_answers_and_cites_it() -> None:
    # Fused scores on the RRF scale: first in both lists ≈ 0.18, fifth in one ≈ 0.07.
    answer = compose_answer("how do I open a file",
                            [Hit(OPEN, 0.18, 7.0, 0.62), Hit(SORT, 0.06, 0.5, 0.12)])
    assert answer.confident
    assert answer.text.startswith("Open file and return a corresponding file object.")
    assert answer.text in OPEN.text
    assert answer.citations[0].source == "docs/p1.html"
    assert answer.citations[0].anchor == "a1"
    assert answer.citations[0].title == "open()"
    assert len(answer.citations) == 1, "a weak second hit is not cited"


def test_the_best_sentence_can_come_from_later_in_a_chunk() -> None:
    answer = compose_answer("build a new sorted list with sorted()",
                            [Hit(SORT, 0.03, 6.0, 0.55)])
    assert "sorted() built-in function" in answer.text


def test_weak_evidence_gives_an_honest_i_dont_know() -> None:
    answer = compose_answer("what is the capital of France", [Hit(OPEN, 0.01, 0.2, 0.08)])
    assert not answer.confident
    assert answer.text == I_DONT_KNOW
    assert answer.citations == []
    assert compose_answer("anything", []).text == I_DONT_KNOW


def test_without_a_model_confidence_comes_from_query_coverage() -> None:
    hits = [Hit(OPEN, 0.03, 7.0, 0.0)]
    assert compose_answer("open a file object", hits).confident
    assert not compose_answer("quantum chromodynamics lattice", hits).confident


JSON = Chunk("c3", "docs/json.html", "json — JSON encoder and decoder", "json.dump", "a3",
             "Serialize obj as a JSON formatted stream to fp. If sort_keys is true, the output "
             "of dictionaries will be sorted by key.")
HOWTO = Chunk("c4", "docs/sorting.html", "Sorting HOW TO", "Key Functions", "a4",
              "Both list.sort() and sorted() have a key parameter to specify a function to be "
              "called on each list element prior to making comparisons.")


def test_words_in_common_are_not_enough_when_the_model_found_nothing_close() -> None:
    # Searched by meaning too, yet none of the model's nearest passages made the top hits: the
    # shared words are a coincidence ("write me a poem about the sea" against the Python docs).
    hits = [Hit(OPEN, 0.03, 7.0, 0.0)]
    answer = compose_answer("open a file object", hits, dense=True)
    assert not answer.confident
    assert answer.text == NOT_SURE, "the pages are listed, nothing is asserted"
    assert [c.source for c in answer.citations] == ["docs/p1.html"]
    assert not answer.on_topic, "a sure intent guess (small talk, out of scope) wins"
    assert compose_answer("quantum chromodynamics lattice", hits, dense=True).text == I_DONT_KNOW
    assert compose_answer("open a file object", hits, dense=False).confident


def test_middling_evidence_lists_pages_instead_of_asserting_a_sentence() -> None:
    answer = compose_answer("how do I sort records by a field",
                            [Hit(JSON, 0.09, 2.0, 0.38), Hit(HOWTO, 0.08, 1.5, 0.36)])
    assert not answer.confident
    assert answer.text == NOT_SURE
    assert [c.source for c in answer.citations] == ["docs/json.html", "docs/sorting.html"]


def test_the_quoted_sentence_must_contain_the_questions_words() -> None:
    # The top hit is close in meaning but no sentence of it says "key function": the answer
    # comes from the page that does.
    answer = compose_answer("what is a key function when sorting",
                            [Hit(JSON, 0.09, 3.0, 0.52), Hit(HOWTO, 0.08, 4.0, 0.60)])
    assert answer.confident
    assert "key parameter" in answer.text
    assert answer.citations[0].source == "docs/sorting.html"


def test_evidence_spread_over_pages_cites_each_of_them_once() -> None:
    hits = [Hit(SORT, 0.18, 6.0, 0.60), Hit(HOWTO, 0.17, 5.0, 0.58),
            Hit(Chunk("c5", "docs/p2.html", "Docs", "Sorting", "a5", "More on sorted()."),
                0.16, 1.0, 0.57), Hit(OPEN, 0.06, 0.5, 0.2)]
    answer = compose_answer("how do I sort a list", hits)
    assert answer.confident
    sources = [c.source for c in answer.citations]
    assert sources[0] == "docs/p2.html"
    assert sources == ["docs/p2.html", "docs/sorting.html"], "one citation per page, strong ones"


ATEXIT = Chunk("c6", "docs/atexit.html", "atexit — Exit handlers", "atexit", "a6",
               "The atexit module defines functions to register and unregister cleanup "
               "functions. Functions thus registered are automatically executed upon normal "
               "interpreter termination.")


def test_a_page_only_keyword_search_found_is_still_cited_when_it_ranks_close() -> None:
    # BM25 found the second page and the dense search did not (no cosine): its fused score
    # is what says it is close, and it may well be the page that answers.
    hits = [Hit(OPEN, 0.17, 7.0, 0.62), Hit(ATEXIT, 0.15, 9.0, 0.0), Hit(SORT, 0.05, 0.4, 0.1)]
    answer = compose_answer("how do I open a file", hits)
    assert answer.confident
    assert [c.source for c in answer.citations] == ["docs/p1.html", "docs/atexit.html"]


def test_a_middling_cosine_on_the_top_hit_is_not_enough_to_assert() -> None:
    # Another hit is closer in meaning than the top one, and the top one is only middling:
    # list the pages rather than quote a sentence that may not answer.
    hits = [Hit(OPEN, 0.17, 7.0, 0.45), Hit(ATEXIT, 0.16, 3.0, 0.48)]
    answer = compose_answer("open a file when the program exits", hits)
    assert not answer.confident
    assert answer.text == NOT_SURE
    assert [c.source for c in answer.citations] == ["docs/p1.html", "docs/atexit.html"]


def test_every_question_word_in_the_closest_passage_is_enough_for_a_short_question() -> None:
    # Small knowledge bases and short questions score low cosines (~0.3); a top passage that
    # holds every content word and is the closest in meaning may still be quoted.
    answer = compose_answer("open a file", [Hit(OPEN, 0.18, 4.0, 0.33), Hit(SORT, 0.05, 0.5, 0.1)])
    assert answer.confident
    assert answer.text.startswith("Open file")


def test_a_closest_passage_by_a_hair_is_still_the_closest() -> None:
    # int8 kernels move cosines by a few thousandths between CPUs: another page 0.004 closer
    # is a tie, not evidence against the passage that holds every word of the question.
    hits = [Hit(OPEN, 0.18, 4.0, 0.309), Hit(SORT, 0.17, 0.5, 0.313)]
    assert compose_answer("open a file", hits).confident
    clearly_closer = [Hit(OPEN, 0.18, 4.0, 0.309), Hit(SORT, 0.17, 0.5, 0.34)]
    assert not compose_answer("open a file", clearly_closer).confident


def test_a_question_in_another_language_gets_pages_not_i_dont_know() -> None:
    # The embedding model is English-only: a German question's cosine is low even when BM25
    # (through the glossary) found the right page.
    answer = compose_answer("Wie lese ich eine Datei?", [Hit(OPEN, 0.09, 5.0, 0.2)])
    assert not answer.confident
    assert answer.text == NOT_SURE
    assert [c.source for c in answer.citations] == ["docs/p1.html"]
    english = compose_answer("what is the capital of France", [Hit(OPEN, 0.09, 5.0, 0.2)])
    assert english.text == I_DONT_KNOW


def test_documents_that_speak_to_a_question_are_on_topic_even_when_not_sure() -> None:
    # The intent head's canned reply gives way to these (pipeline/workers.py): a how-to it
    # called out of scope, with a page about it at a middling cosine, gets that page cited.
    middling = [Hit(SORT, 0.09, 5.0, 0.46)]
    answer = compose_answer("sort a list in place without copying it", middling)
    assert (answer.confident, answer.on_topic) == (False, True)
    assert answer.citations[0].source == "docs/p2.html"
    # One shared word of two, far in meaning: not what was asked (a canned reply is better).
    assert not compose_answer("play the list of songs", [Hit(SORT, 0.05, 1.0, 0.36)]).on_topic
    assert not compose_answer("tell me a joke", [Hit(OPEN, 0.01, 0.2, 0.08)]).on_topic
