"""Final ranking: the page about the asked thing first, release notes and index pages last,
several pages when the evidence is spread, and questions in users' own words still match."""

from __future__ import annotations

from wasmagent.retrieval.chunking import Chunk
from wasmagent.retrieval.lexical import BM25Index
from wasmagent.retrieval.rank import (
    SIGNALS,
    WEIGHTS,
    Weights,
    asks_about_c,
    asks_why,
    page_kind,
    rank,
    signals,
)
from wasmagent.text.query import asks_about_changes, clean_query, expand_query


def _chunk(n: int, source: str, title: str, heading: str, text: str) -> Chunk:
    return Chunk(f"c{n}", source, title, heading, f"a{n}", text)


CHUNKS = [
    _chunk(0, "library/csv.html", "csv — CSV File Reading and Writing", "csv.reader",
           "Return a reader object which will iterate over lines in the given csvfile."),
    _chunk(1, "whatsnew/3.11.html", "What's New In Python 3.11", "csv",
           "The csv reader now accepts a new dialect option for reading files."),
    _chunk(2, "genindex-C.html", "Index", "C", "csv module csv.reader csv.writer reading files"),
    _chunk(3, "library/csv.html", "csv — CSV File Reading and Writing", "csv.writer",
           "Return a writer object responsible for converting the user's data."),
    _chunk(4, "library/csv.html", "csv — CSV File Reading and Writing", "Dialects",
           "Dialects describe the format of a CSV file for reading."),
    _chunk(5, "tutorial/inputoutput.html", "Input and Output", "Reading and Writing Files",
           "open() returns a file object; read lines of a file in a loop."),
]


def _lists(query: str) -> tuple[list[tuple[int, float]], BM25Index]:
    index = BM25Index()
    for i, c in enumerate(CHUNKS):
        index.add(i, c.search_text)
    return index.search(query, 20), index


def test_the_page_about_the_subject_beats_release_notes_and_index_pages() -> None:
    lexical, index = _lists("read a csv file")
    # Give the distractors the best first-stage ranks: the page signals must still win.
    dense = [(1, 0.6), (2, 0.55), (0, 0.5), (5, 0.4)]
    ranked = rank("read a csv file", lexical, dense, CHUNKS, 5, index.idf)
    sources = [CHUNKS[f.index].source for f in ranked]
    assert sources[0] == "library/csv.html"
    if "genindex-C.html" in sources:
        assert sources[-1] == "genindex-C.html"
    assert sources.index("library/csv.html") < sources.index("whatsnew/3.11.html")


def test_release_notes_are_not_pushed_down_when_the_question_is_about_changes() -> None:
    assert asks_about_changes("what is new in the csv module in 3.11")
    assert not asks_about_changes("read a csv file")
    # The same first-stage evidence for both questions: only what is asked differs.
    lexical = [(1, 4.9), (0, 0.4)]
    dense = [(1, 0.7), (0, 0.5)]

    def score(question: str) -> float:
        ranked = rank(question, lexical, dense, CHUNKS, 5)
        return next(f.score for f in ranked if CHUNKS[f.index].source == "whatsnew/3.11.html")

    assert score("what changed in csv reading") > score("how to tweak csv reading")
    ranked = rank("what changed in csv reading", lexical, dense, CHUNKS, 5)
    assert CHUNKS[ranked[0].index].source == "whatsnew/3.11.html"


def test_one_page_cannot_fill_every_slot() -> None:
    lexical, index = _lists("csv reader writer dialect")
    dense = [(0, 0.6), (3, 0.58), (4, 0.57), (5, 0.3)]
    ranked = rank("csv reader writer dialect", lexical, dense, CHUNKS, 4, index.idf)
    sources = [CHUNKS[f.index].source for f in ranked]
    assert sources[0] == "library/csv.html"
    assert len(set(sources)) == len(sources), "each page once: the other slots show other pages"


def test_page_kinds_come_from_titles_and_paths() -> None:
    assert page_kind("Index", "genindex-A.html") == "index"
    assert page_kind("What’s New In Python 3.8", "whatsnew/3.8.html") == "changelog"
    assert page_kind("Changelog", "CHANGES.md") == "changelog"
    assert page_kind("Sorting HOW TO", "howto/sorting.html") == "guide"
    assert page_kind("json — JSON encoder and decoder", "library/json.html") == "reference"


def test_everyday_and_foreign_words_reach_the_documentation_words() -> None:
    assert "directory" in expand_query("delete a folder")
    assert "file" in expand_query("Wie lese ich eine Datei?")
    assert "read" in expand_query("¿Cómo leo un archivo CSV?")
    assert "module not found" in expand_query("ModuleNotFoundError: No module named 'x'")
    assert "errno" not in expand_query("FileNotFoundError: [Errno 2] No such file").lower()
    assert clean_query("<img src=x onerror=\"alert(1)\"> what is the secret?").split() == [
        "what", "is", "the", "secret?"]
    assert clean_query("<b>") == "<b>", "a question of nothing but markup stays as it is"


def test_a_question_in_another_language_finds_the_english_passage() -> None:
    lexical, _ = _lists("Wie lese ich eine Datei Zeile für Zeile?")
    assert CHUNKS[lexical[0][0]].source == "tutorial/inputoutput.html"


def test_a_foreign_questions_function_words_do_not_outweigh_its_subject() -> None:
    # "para" and "en" are rare in English text, so BM25 would weigh them far above "list";
    # in a Portuguese or Spanish question they are function words and go.
    chunks = [_chunk(0, "library/stdtypes.html", "Built-in Types", "Lists",
                     "Lists may be constructed in several ways: create a list with brackets."),
              _chunk(1, "library/locale.html", "locale", "Examples",
                     "Month names in other locales: como, para, uma, em."),
              _chunk(2, "howto/comments.html", "Comments", "Comments",
                     "A comment starts with a hash character.")]
    index = BM25Index()
    for i, c in enumerate(chunks):
        index.add(i, c.search_text)
    assert chunks[index.search("Como faço para criar uma lista em Python?", 5)[0][0]].source == (
        "library/stdtypes.html")
    assert "comment" in expand_query("how to comment multiple lines"), "English keeps its words"
    assert "comment" not in expand_query("Comment lire un fichier JSON en Python ?").lower()


def test_filler_words_do_not_pick_the_page() -> None:
    # "easiest" is rare in documentation, so BM25 would weigh it above what was asked about.
    chunks = [_chunk(0, "library/time.html", "time", "time.sleep(secs)",
                     "Suspend execution of the calling thread for the given number of seconds."),
              _chunk(1, "howto/intro.html", "Introduction", "Introduction",
                     "The easiest way to learn is to read the tutorial first.")]
    index = BM25Index()
    for i, c in enumerate(chunks):
        index.add(i, c.search_text)
    found = index.search("whats the easiest way to suspend for 2 seconds", 5)
    assert [chunks[i].source for i, _ in found] == ["library/time.html"]


def test_a_page_gains_nothing_from_mentioning_a_word_more_often() -> None:
    def scores(mentions: int) -> dict[str, float]:
        long_page = [_chunk(10 + i, "README.md", "Project", f"Part {i}",
                            f"Part {i}: the server can serve files and the app behind a proxy.")
                     for i in range(mentions)]
        guide = _chunk(30, "guide.md", "Setup guide", "Serving",
                       "Run the serve command to build everything and serve the app.")
        chunks = [guide, *long_page]
        index = BM25Index()
        for i, c in enumerate(chunks):
            index.add(i, c.search_text)
        dense = [(0, 0.62), *((i, 0.30 - 0.01 * i) for i in range(1, len(chunks)))]
        ranked = rank("how do I serve the app", index.search("serve the app", 20), dense,
                      chunks, 3, index.idf)
        return {chunks[f.index].source: f.score for f in ranked}

    # A page's other passages lend it their best one's evidence, not their number: eight
    # mentions weigh what two do.
    two, eight = scores(2), scores(8)
    assert two["guide.md"] == eight["guide.md"]
    assert abs(two["README.md"] - eight["README.md"]) < 0.01


def _two_pages(first: Chunk, second: Chunk, question: str) -> list[str]:
    """The order of two pages when both searches rank `first` just above `second`."""
    chunks = [first, second]
    ranked = rank(question, [(0, 2.0), (1, 2.0)], [(0, 0.6), (1, 0.6)], chunks, 2)
    return [chunks[f.index].source for f in ranked]


def test_c_api_reference_yields_unless_the_question_is_about_c() -> None:
    c_api = _chunk(0, "c-api/dict.html", "Dictionary Objects", "PyDict_Next",
                   "Iterate over all key-value pairs in the dictionary p.")
    python = _chunk(1, "library/stdtypes.html", "Built-in Types", "Mapping Types",
                    "Iterate over the keys and values of a dictionary with items().")
    assert not asks_about_c("iterate over a dictionary")
    assert asks_about_c("iterate over a dict from C with PyDict_Next")
    assert _two_pages(c_api, python, "iterate over a dictionary")[0] == "library/stdtypes.html"
    assert _two_pages(c_api, python, "iterate over a dict in a C extension")[0] == (
        "c-api/dict.html")


def test_faq_pages_answer_why_questions_and_yield_on_how_to_questions() -> None:
    faq = _chunk(0, "faq/design.html", "Design and History FAQ", "Why are strings immutable?",
                 "There are several advantages: strings are immutable so they can be keys.")
    ref = _chunk(1, "library/stdtypes.html", "Built-in Types", "Text Sequence Type",
                 "Strings are immutable sequences of Unicode code points.")
    assert asks_why("why are strings immutable")
    assert not asks_why("how to copy a string")
    assert _two_pages(faq, ref, "why are strings immutable")[0] == "faq/design.html"
    assert _two_pages(faq, ref, "how to make a string immutable")[0] == "library/stdtypes.html"


def test_signals_and_weights_line_up() -> None:
    found = signals("read a csv file", _lists("read a csv file")[0], [(0, 0.5)], CHUNKS)
    assert found
    assert all(len(x) == len(SIGNALS) for x in found.values())
    assert len(WEIGHTS.vector()) == len(SIGNALS)
    # With every weight but the dense rank's at zero, the ranking is the dense ranking.
    only_dense = Weights(**{name: 1.0 if name == "dense" else 0.0 for name in SIGNALS})
    lexical, index = _lists("read a csv file")
    ranked = rank("read a csv file", lexical, [(5, 0.3), (3, 0.2)], CHUNKS, 6, index.idf,
                  weights=only_dense)
    assert [f.index for f in ranked[:2]] == [5, 3]


def test_a_long_page_of_a_small_knowledge_base_does_not_outrank_the_page_about_it() -> None:
    # The app's own knowledge base: README.md is half of it, so many of its passages are in any
    # first-stage list, one of them even first for BM25; the guide's one section is far closer
    # in meaning, and a guide is not pushed down for being one.
    guide = _chunk(0, "docs/guide.md", "Setup guide", "Serving",
                   "Run the serve command to build everything and serve the app on port 8000.")
    readme = [_chunk(1 + i, "README.md", "Project", f"Part {i}",
                     f"Part {i}: the server can serve files and the app behind a proxy.")
              for i in range(20)]
    chunks = [guide, *readme]
    lexical = [(1, 2.1), (0, 2.0), *((i, 1.0) for i in range(2, 20))]
    dense = [(0, 0.47), (1, 0.26), *((i, 0.25 - 0.005 * i) for i in range(2, 20))]
    ranked = rank("how do I serve the app?", lexical, dense, chunks, 2)
    assert chunks[ranked[0].index].source == "docs/guide.md"
    assert WEIGHTS.guide >= 0
    assert WEIGHTS.guide_howto >= 0


def test_a_page_of_measurements_yields_unless_the_question_is_about_speed() -> None:
    # A benchmarks page mentions every component by name beside its figures, and changes with
    # every run; it answers how fast, not what something is.
    report = _chunk(0, "BENCHMARKS.md", "Benchmarks", "Embeddings (MiniLM int8)",
                    "The embedding model embeds 80 passages per second natively.")
    card = _chunk(1, "MODEL_CARD.md", "Model card", "all-MiniLM-L6-v2",
                  "The embedding model is all-MiniLM-L6-v2, quantised to int8.")
    assert page_kind("Benchmarks", "BENCHMARKS.md") == "report"
    assert page_kind("timeit — Measure execution time", "library/timeit.html") == "reference"
    assert _two_pages(report, card, "which embedding model does it use?")[0] == "MODEL_CARD.md"
    assert _two_pages(report, card, "how fast is the embedding model?")[0] == "BENCHMARKS.md"
