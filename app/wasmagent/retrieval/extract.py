"""Clean text out of HTML, Markdown, reStructuredText and plain text, section by section.

Pure functions: text in, `Document` out. Navigation, scripts, styles, sidebars, footers and
Sphinx's `¶` header links never reach a section. Sections follow the document's headings; each
keeps its heading text, a URL anchor (the heading's or its enclosing section's `id` in HTML,
a GitHub-style slug in Markdown, a docutils-style slug in reST) and its level. In HTML, API
entries that carry their own `id` (Sphinx `<dt id="open">`) become sections of their own
(level 7), so a citation can point at `functions.html#open` rather than the whole page.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Literal

Kind = Literal["html", "markdown", "rst", "text"]

_SUFFIX_KINDS: dict[str, Kind] = {
    "html": "html", "htm": "html", "xhtml": "html", "md": "markdown", "markdown": "markdown",
    "rst": "rst", "rest": "rst", "txt": "text", "text": "text",
}


@dataclass(frozen=True, slots=True)
class Section:
    heading: str
    anchor: str
    level: int
    text: str


@dataclass(frozen=True, slots=True)
class Document:
    title: str
    sections: list[Section] = field(default_factory=list)


def detect_kind(path: str, text: str) -> Kind:
    """The format of a document, from its file suffix or, failing that, its content."""
    suffix = path.rsplit(".", 1)[-1].lower() if "." in path.rsplit("/", 1)[-1] else ""
    if suffix in _SUFFIX_KINDS:
        return _SUFFIX_KINDS[suffix]
    head = text[:2000].lstrip().lower()
    if head.startswith(("<!doctype html", "<html")) or "<body" in head:
        return "html"
    if re.search(r"^#{1,6} \S", text[:4000], re.M) or "```" in text[:4000]:
        return "markdown"
    if re.search(r"^\S.*\n[=\-~^\"'`#*+]{3,}\s*$", text[:4000], re.M):
        return "rst"
    return "text"


def extract_sections(text: str, kind: Kind, *, source: str) -> Document:
    """Split a document into clean sections; see the module docstring."""
    if kind == "html":
        return _html(text, source)
    if kind == "markdown":
        return _markdown(text, source)
    if kind == "rst":
        return _rst(text, source)
    return _plain(text, source)


def normalize_ws(text: str) -> str:
    """Collapse runs of spaces inside lines and of blank lines, trim the ends."""
    lines = [re.sub(r"[ \t\u00a0]+", " ", line).strip() for line in text.splitlines()]
    out = re.sub(r"\n{3,}", "\n\n", "\n".join(lines))
    return out.strip()


def _fallback_title(source: str) -> str:
    name = source.rsplit("/", 1)[-1]
    return name.rsplit(".", 1)[0].replace("_", " ").replace("-", " ").strip() or source


# ---- HTML -----------------------------------------------------------------------------------

_SKIP_TAGS = {"script", "style", "nav", "header", "footer", "aside", "form", "noscript", "svg",
              "template", "button", "select", "iframe", "object", "canvas", "head"}
_SKIP_CLASSES = {"related", "sphinxsidebar", "sphinxsidebarwrapper", "footer", "headerlink",
                 "breadcrumb", "breadcrumbs", "navigation", "nav", "navbar", "sidebar", "menu",
                 "mobile-nav", "skip-link", "toc", "copybutton", "version-switcher"}
_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param",
         "source", "track", "wbr"}
_BLOCK = {"p", "div", "li", "ul", "ol", "dl", "dd", "table", "tr", "blockquote", "section",
          "article", "main", "figure", "figcaption", "pre", "br", "hr", "td", "th"}
_HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}


class _HtmlSections(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.title = ""
        self.sections: list[Section] = []
        self._stack: list[tuple[str, str | None]] = []  # (tag, id)
        self._skip_depth: int | None = None
        self._in_title = False
        self._heading: tuple[int, str, list[str]] | None = None  # (level, anchor, text)
        self._current = ("", "", 0)  # heading, anchor, level of the open section
        self._buf: list[str] = []
        self._pre = 0

    # the section being filled
    def _flush(self) -> None:
        text = normalize_ws("".join(self._buf))
        heading, anchor, level = self._current
        if text or heading:
            self.sections.append(Section(heading, anchor, level, text))
        self._buf = []

    def _enclosing_id(self) -> str:
        for _, ident in reversed(self._stack):
            if ident:
                return ident
        return ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "title" and self._skip_depth is None:
            self._in_title = True
        if self._skip_depth is not None:
            if tag not in _VOID:
                self._stack.append((tag, None))
            return
        classes = set((a.get("class") or "").split())
        hidden = a.get("role") == "navigation" or a.get("aria-hidden") == "true"
        if tag != "head" and (tag in _SKIP_TAGS or classes & _SKIP_CLASSES or hidden):
            if tag not in _VOID:
                self._skip_depth = len(self._stack)
                self._stack.append((tag, None))
            return
        if tag in _VOID:
            if tag in ("br", "hr"):
                self._buf.append("\n")
            return
        self._stack.append((tag, a.get("id")))
        self._open(tag, a)

    def _open(self, tag: str, a: dict[str, str | None]) -> None:
        if tag in _HEADINGS:
            self._flush()
            self._heading = (_HEADINGS[tag], a.get("id") or self._enclosing_id(), [])
        elif tag == "dt" and a.get("id") and self._heading is None:
            self._flush()
            self._heading = (7, a.get("id") or "", [])
        elif tag == "pre":
            self._pre += 1
            self._buf.append("\n")
        elif tag in _BLOCK:
            self._buf.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        if tag in _VOID or not self._stack:
            return
        # Pop to the matching open tag (HTML in the wild leaves tags unclosed).
        for depth in range(len(self._stack) - 1, -1, -1):
            if self._stack[depth][0] == tag:
                del self._stack[depth:]
                break
        else:
            return
        if self._skip_depth is not None:
            if len(self._stack) <= self._skip_depth:
                self._skip_depth = None
            return
        self._close(tag)

    def _close(self, tag: str) -> None:
        if self._heading is not None and (tag in _HEADINGS or tag == "dt"):
            level, anchor, parts = self._heading
            self._heading = None
            heading = normalize_ws(" ".join("".join(parts).split()))
            self._current = (heading, anchor, level)
            if level == 1 and not self.title:
                self.title = heading
        elif tag == "pre":
            self._pre = max(0, self._pre - 1)
            self._buf.append("\n")
        elif tag in _BLOCK:
            self._buf.append("\n")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title = self.title or " ".join(data.split())
            return
        if self._skip_depth is not None:
            return
        if self._heading is not None:
            self._heading[2].append(data)
        elif self._pre:
            self._buf.append(data.replace("\n", "\n"))
        else:
            self._buf.append(" ".join(data.split("\n")))


def _clean_title(title: str) -> str:
    # "os.path — Common pathname manipulations — Python 3.11.2 documentation"
    parts = [p.strip() for p in re.split(r"\s+[—|–-]\s+", title) if p.strip()]
    if len(parts) > 1 and re.search(r"documentation|docs", parts[-1], re.I):
        parts = parts[:-1]
    return " — ".join(parts)


def _html(text: str, source: str) -> Document:
    parser = _HtmlSections()
    parser.feed(text)
    parser.close()
    parser._flush()
    title = _clean_title(parser.title) or _fallback_title(source)
    sections = [s for s in parser.sections if s.text or s.level]
    return Document(title, sections)


# ---- Markdown -------------------------------------------------------------------------------

def github_slug(heading: str) -> str:
    slug = re.sub(r"[^\w\- ]", "", heading.lower()).strip()
    return re.sub(r"\s", "-", slug)


def _md_inline(line: str) -> str:
    line = re.sub(r"!\[([^\]]*)\]\([^)]*\)", r"\1", line)
    line = re.sub(r"\[([^\]]+)\]\([^)]*\)", r"\1", line)
    line = re.sub(r"\[([^\]]+)\]\[[^\]]*\]", r"\1", line)
    line = re.sub(r"<[^>]+>", "", line)
    line = re.sub(r"(\*\*|__)(.+?)\1", r"\2", line)
    line = re.sub(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?!\w)", r"\1", line)
    line = re.sub(r"`([^`]+)`", r"\1", line)
    return html.unescape(line)


class _Sections:
    """Accumulates lines into sections with unique anchors."""

    def __init__(self, slug: object) -> None:
        self.sections: list[Section] = []
        self.title = ""
        self._slug = slug
        self._seen: dict[str, int] = {}
        self._current = ("", "", 0)
        self._lines: list[str] = []

    def heading(self, text: str, level: int) -> None:
        self.flush()
        base = self._slug(text)  # type: ignore[operator]
        count = self._seen.get(base, 0)
        self._seen[base] = count + 1
        anchor = base if count == 0 else f"{base}-{count}"
        self._current = (text, anchor, level)
        if not self.title and level == 1:
            self.title = text

    def line(self, text: str) -> None:
        self._lines.append(text)

    def flush(self) -> None:
        body = normalize_ws("\n".join(self._lines))
        heading, anchor, level = self._current
        if body or heading:
            self.sections.append(Section(heading, anchor, level, body))
        self._lines = []


def _md_table_row(line: str) -> str | None:
    """A table row as a sentence ("key: value, value."); None for the |---| separator."""
    cells = [_md_inline(c.strip()) for c in line.strip().strip("|").split("|")]
    if all(re.fullmatch(r":?-{2,}:?", c) or not c for c in cells):
        return None
    cells = [c for c in cells if c]
    if not cells:
        return None
    row = cells[0] + (": " + ", ".join(cells[1:]) if len(cells) > 1 else "")
    return row if row.endswith((".", "!", "?")) else row + "."


def _markdown(text: str, source: str) -> Document:
    out = _Sections(github_slug)
    lines = text.splitlines()
    fence: str | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if fence is not None:
            if stripped.startswith(fence):
                fence = None
            else:
                out.line(line)
            i += 1
            continue
        if m := re.match(r"^(`{3,}|~{3,})", stripped):
            fence = m.group(1)[:3]
        elif m := re.match(r"^(#{1,6})\s+(.*?)\s*#*\s*$", line):
            out.heading(_md_inline(m.group(2)), len(m.group(1)))
        elif (i + 1 < len(lines) and stripped and re.match(r"^(=+|-+)\s*$", lines[i + 1])
              and not re.match(r"^[-*+]\s", stripped)):
            out.heading(_md_inline(stripped), 1 if lines[i + 1].strip()[0] == "=" else 2)
            i += 1
        elif stripped.startswith("|") and stripped.endswith("|"):
            row = _md_table_row(stripped)
            if row is not None:
                out.line(row + "\n")
        elif not re.match(r"^\[[^\]]+\]:\s", stripped):
            out.line(_md_inline(re.sub(r"^\s{0,3}(>\s?|[-*+]\s+|\d+[.)]\s+)", "", line)))
        i += 1
    out.flush()
    return Document(out.title or _fallback_title(source), out.sections)


# ---- reStructuredText -----------------------------------------------------------------------

_ADORN = re.compile(r"^([=\-~^\"'`#*+:.<>_])\1{2,}\s*$")
_DROP_DIRECTIVES = {"toctree", "image", "figure", "include", "raw", "contents", "index",
                    "only", "meta", "highlight", "sectionauthor", "moduleauthor", "csv-table"}


def docutils_slug(heading: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", heading.lower())
    return slug.strip("-")


def _rst_inline(line: str) -> str:
    line = re.sub(r":[\w:.+-]+:`~?([^`<]*?)\s*(<[^>]*>)?`", r"\1", line)
    line = re.sub(r"`([^`<]+?)\s*<[^>]+>`_{1,2}", r"\1", line)
    line = re.sub(r"``([^`]+)``", r"\1", line)
    line = re.sub(r"`([^`]+)`_{0,2}", r"\1", line)
    line = re.sub(r"(\*\*|\*)(\S.*?\S|\S)\1", r"\2", line)
    return line.replace("\\", "")


def _rst_heading(lines: list[str], i: int) -> tuple[str, str, int] | None:
    """(title, adornment style, lines consumed) if a section title starts at line i."""
    line = lines[i]
    nxt = lines[i + 1] if i + 1 < len(lines) else ""
    if _ADORN.match(line) and i + 2 < len(lines) and _ADORN.match(lines[i + 2]):
        title = lines[i + 1].strip()
        if title and len(line.strip()) >= len(title):
            return title, "over" + line.strip()[0], 3
    underlined = bool(_ADORN.match(nxt)) and len(nxt.strip()) >= len(line.strip())
    if line.strip() and not line.startswith((" ", "\t")) and underlined and not _ADORN.match(line):
        return line.strip(), nxt.strip()[0], 2
    return None


def _literal_marker(line: str) -> str:
    """reST's `Paragraph::` introduces a literal block: keep one colon, as rendered."""
    return line[:-1] if line.endswith("::") else line


def _rst(text: str, source: str) -> Document:
    out = _Sections(docutils_slug)
    styles: list[str] = []
    lines = text.splitlines()
    skip_indent: int | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        if skip_indent is not None:
            if not line.strip() or len(line) - len(line.lstrip()) > skip_indent:
                i += 1
                continue
            skip_indent = None
        found = _rst_heading(lines, i)
        if found is not None:
            title, style, used = found
            if style not in styles:
                styles.append(style)
            out.heading(_rst_inline(title), styles.index(style) + 1)
            i += used
            continue
        if m := re.match(r"^(\s*)\.\.\s+([\w:-]+)::\s*(.*)$", line):
            name = m.group(2).split(":")[-1]
            if name in _DROP_DIRECTIVES:
                skip_indent = len(m.group(1))
            elif m.group(3):
                out.line(_rst_inline(m.group(3)))
        elif re.match(r"^\s*\.\.\s", line) or re.match(r"^\s*\.\.$", line):
            skip_indent = len(line) - len(line.lstrip())  # comments and targets
        elif not re.match(r"^\s*:[\w-]+:\s", line) or out.sections:
            out.line(_rst_inline(_literal_marker(line.rstrip())))
        i += 1
    out.flush()
    return Document(out.title or (out.sections[0].heading if out.sections else "")
                    or _fallback_title(source), out.sections)


# ---- plain text -----------------------------------------------------------------------------

def _plain(text: str, source: str) -> Document:
    body = normalize_ws(text)
    first = next((ln.strip() for ln in body.splitlines() if ln.strip()), "")
    title = first if 0 < len(first) <= 80 else _fallback_title(source)
    return Document(title, [Section("", "", 0, body)] if body else [])
