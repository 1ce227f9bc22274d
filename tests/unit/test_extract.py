"""Text extraction: what a reader of a cited passage would notice (stdlib only; runs in Pyodide)."""

from __future__ import annotations

from wasmagent.retrieval.extract import detect_kind, extract_sections

SPHINX_PAGE = """<!DOCTYPE html>
<html><head><title>os.path — Common pathname manipulations — Python 3.11.4 documentation</title>
<script>var DOCUMENTATION_OPTIONS = {};</script><style>body {color: red}</style></head>
<body>
<div class="related" role="navigation"><h3>Navigation</h3><ul><li><a href="index.html">index</a></li></ul></div>
<div class="sphinxsidebar"><h3>Previous topic</h3><p>pathlib</p></div>
<div class="body" role="main">
<section id="module-os.path">
<h1><code>os.path</code> — Common pathname manipulations<a class="headerlink" href="#module-os.path">¶</a></h1>
<p>This module implements some useful functions on pathnames. To read or write files see
<a href="functions.html#open">open()</a>.</p>
<dl class="py function">
<dt class="sig sig-object py" id="os.path.join">os.path.join(<em>path</em>, <em>*paths</em>)<a class="headerlink" href="#os.path.join">¶</a></dt>
<dd><p>Join one or more path segments intelligently. The return value is the concatenation
of <em>path</em> and all members of <em>*paths</em>.</p>
<pre>&gt;&gt;&gt; os.path.join("a", "b")
'a/b'</pre></dd></dl>
</section>
</div>
<div class="footer">&copy; Copyright 2001-2023, Python Software Foundation.</div>
</body></html>"""


def test_sphinx_html_keeps_content_and_drops_navigation() -> None:
    doc = extract_sections(SPHINX_PAGE, "html", source="library/os.path.html")
    assert doc.title == "os.path — Common pathname manipulations"
    everything = " ".join(s.heading + " " + s.text for s in doc.sections)
    for noise in ("Navigation", "Previous topic", "Copyright", "DOCUMENTATION_OPTIONS",
                  "color: red", "¶"):
        assert noise not in everything, noise
    intro = doc.sections[0]
    assert intro.anchor == "module-os.path"
    assert intro.level == 1
    assert "useful functions on pathnames" in intro.text
    join = next(s for s in doc.sections if s.anchor == "os.path.join")
    assert join.heading.startswith("os.path.join(path, *paths)")
    assert "Join one or more path segments" in join.text
    assert "os.path.join(\"a\", \"b\")" in join.text
    assert "'a/b'" in join.text


def test_markdown_headings_become_sections_with_github_anchors() -> None:
    text = ("# Install Guide\n\nRun the **installer** from [the site](https://x.y).\n\n"
            "## Step 1: Download\n\nGet the `wheel` file.\n\n```sh\npip install x\n```\n\n"
            "Setext Heading\n--------------\n\nMore text here.\n\n## Step 1: Download\n\nAgain.\n")
    doc = extract_sections(text, "markdown", source="docs/install.md")
    assert doc.title == "Install Guide"
    assert [(s.heading, s.anchor, s.level) for s in doc.sections] == [
        ("Install Guide", "install-guide", 1),
        ("Step 1: Download", "step-1-download", 2),
        ("Setext Heading", "setext-heading", 2),
        ("Step 1: Download", "step-1-download-1", 2),
    ]
    assert doc.sections[0].text == "Run the installer from the site."
    assert "pip install x" in doc.sections[1].text
    assert "Get the wheel file." in doc.sections[1].text


def test_restructuredtext_titles_and_roles() -> None:
    text = ("==========\nUser Guide\n==========\n\nIntro with :func:`open` and ``code``.\n\n"
            "Getting started\n---------------\n\nUse `the docs <https://x>`_ first.\n\n"
            ".. note::\n   Notes are kept.\n\n.. toctree::\n   :maxdepth: 2\n\n   a\n   b\n\n"
            ".. _target:\n\nSub part\n~~~~~~~~\n\nDeep text.\n")
    doc = extract_sections(text, "rst", source="guide.rst")
    assert doc.title == "User Guide"
    assert [(s.heading, s.anchor, s.level) for s in doc.sections] == [
        ("User Guide", "user-guide", 1), ("Getting started", "getting-started", 2),
        ("Sub part", "sub-part", 3)]
    assert doc.sections[0].text == "Intro with open and code."
    assert "Use the docs first." in doc.sections[1].text
    assert "Notes are kept." in doc.sections[1].text
    assert "maxdepth" not in doc.sections[1].text


def test_plain_text_is_one_section_titled_by_its_first_line() -> None:
    doc = extract_sections("Release notes\n\nEverything   got\tfaster.\n\n\n\nThe end.", "text",
                           source="notes.txt")
    assert doc.title == "Release notes"
    assert doc.sections[0].text == "Release notes\n\nEverything got faster.\n\nThe end."


def test_kind_detection_by_suffix_then_content() -> None:
    assert detect_kind("a/b.HTML", "") == "html"
    assert detect_kind("README.md", "") == "markdown"
    assert detect_kind("index.rst", "") == "rst"
    assert detect_kind("notes", "<!doctype html><html></html>") == "html"
    assert detect_kind("notes", "# Title\n\ntext") == "markdown"
    assert detect_kind("notes", "Title\n=====\n\ntext") == "rst"
    assert detect_kind("notes", "just words") == "text"


def test_broken_html_does_not_lose_text() -> None:
    doc = extract_sections("<p>unclosed <b>bold <div>inner</p> tail<script>x()", "html",
                           source="x.html")
    text = " ".join(s.text for s in doc.sections)
    assert "unclosed bold" in text
    assert "inner" in text
    assert "tail" in text
    assert "x()" not in text
