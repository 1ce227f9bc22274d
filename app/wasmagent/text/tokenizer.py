"""BERT WordPiece tokenization for all-MiniLM-L6-v2, in pure Python so it runs in Pyodide.

It reproduces Hugging Face's `BertTokenizerFast` (BertNormalizer + BertPreTokenizer + WordPiece,
lower-cased, accents stripped):
1. clean: drop NUL, U+FFFD and control characters (categories Cc/Cf except whitespace), map
   every whitespace character to a space;
2. put spaces around CJK ideographs (the same code point blocks as BERT);
3. lower-case, then strip accents (NFD, drop combining marks of category Mn);
4. split on whitespace, then split off every punctuation character (ASCII symbols 33-47,
   58-64, 91-96, 123-126 and every Unicode category P*) as its own token;
5. greedy longest-match-first word pieces, `##` for continuations; a word longer than 100
   characters, or one with no matching piece, becomes `[UNK]`;
6. `[CLS] ... [SEP]`, truncated to `max_length` tokens (256: what sentence-transformers uses).

Known, accepted differences with the Rust implementation come from Unicode version skew between
Python's `unicodedata` and the Rust crates (see tests/unit/test_tokenizer_parity.py).

Speed matters (Pyodide runs pure Python several times slower than CPython, and ingestion
tokenises every passage): normalisation is one `str.translate` over a table of the characters
that change (filled as new characters are met), an ASCII text is split into words and
punctuation by one regular expression (in ASCII every printable non-alphanumeric is BERT
punctuation), and word -> ids results are cached. Only words with other characters take the
per-character path.
"""

from __future__ import annotations

import re
import unicodedata
from array import array
from collections.abc import Sequence
from dataclasses import dataclass

from ..ports import Tensor

MAX_WORD_CHARS = 100
WORD_CACHE = 50_000
# ASCII control characters go, tab and line ends become spaces (what `_char_plan` decides).
_ASCII_TABLE: dict[int, str | None] = {
    **{cp: None for cp in (*range(32), 127)}, **{ord(c): " " for c in "\t\n\r"}}
_ASCII_WORDS = re.compile(r"[a-z0-9]+|[^a-z0-9 ]")


def _is_cjk(cp: int) -> bool:
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF
            or 0x2A700 <= cp <= 0x2B73F or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF
            or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)


def _is_punct(ch: str) -> bool:
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def _is_whitespace(ch: str) -> bool:
    if ch in " \t\n\r":
        return True
    return unicodedata.category(ch) == "Zs"


def _is_control(ch: str) -> bool:
    if ch in "\t\n\r":
        return False
    return unicodedata.category(ch) in ("Cc", "Cf")


def _char_plan(ch: str) -> str:
    """What normalisation turns one character into (before accent stripping of words)."""
    cp = ord(ch)
    if cp in (0, 0xFFFD) or _is_control(ch):
        return ""
    if _is_whitespace(ch):
        return " "
    if _is_cjk(cp):
        return f" {ch} "
    return ch


@dataclass(frozen=True, slots=True)
class Encoding:
    """A padded batch: the model's three int64 inputs and each row's real length."""

    input_ids: Tensor
    attention_mask: Tensor
    token_type_ids: Tensor
    lengths: tuple[int, ...]

    def feeds(self) -> dict[str, Tensor]:
        return {"input_ids": self.input_ids, "attention_mask": self.attention_mask,
                "token_type_ids": self.token_type_ids}


class WordPieceTokenizer:
    """Uncased BERT WordPiece over a `vocab.txt` (one token per line, id = line number)."""

    def __init__(self, vocab: Sequence[str], *, max_length: int = 256) -> None:
        if max_length < 2:
            raise ValueError("max_length must leave room for [CLS] and [SEP]")
        self.vocab = dict(zip(vocab, range(len(vocab)), strict=True))
        self.max_length = max_length
        self.unk = self.vocab["[UNK]"]
        self.cls = self.vocab["[CLS]"]
        self.sep = self.vocab["[SEP]"]
        self.pad = self.vocab["[PAD]"]
        self._chars: dict[str, str] = {}
        self._table: dict[int, str] = {}
        """Characters met so far whose normalisation changes them (for `str.translate`)."""
        self._punct: dict[str, bool] = {}
        self._words: dict[str, tuple[int, ...]] = {}
        self._max_piece = max(map(len, self.vocab), default=1)  # no generator: part of every boot

    @classmethod
    def from_vocab_text(cls, text: str, *, max_length: int = 256) -> WordPieceTokenizer:
        return cls(text.splitlines(), max_length=max_length)

    # -- normalisation and pre-tokenisation ---------------------------------------------------

    def _normalize(self, text: str) -> str:
        if text.isascii():
            return text.translate(_ASCII_TABLE).lower()
        chars = self._chars
        for ch in set(text).difference(chars):
            plan = chars[ch] = _char_plan(ch)
            if plan != ch:
                self._table[ord(ch)] = plan
        return text.translate(self._table).lower()

    def _words_of(self, text: str) -> list[str]:
        normal = self._normalize(text)
        if normal.isascii():
            return _ASCII_WORDS.findall(normal)
        words: list[str] = []
        for raw in normal.split():
            if raw.isascii():
                words.extend(_ASCII_WORDS.findall(raw))
                continue
            word = _strip_accents(raw)
            if not word:
                continue
            if word.isalnum():
                words.append(word)
                continue
            words.extend(self._split_punct(word))
        return words

    def _split_punct(self, word: str) -> list[str]:
        punct = self._punct
        out: list[str] = []
        current: list[str] = []
        for ch in word:
            is_punct = punct.get(ch)
            if is_punct is None:
                is_punct = punct[ch] = _is_punct(ch)
            if is_punct:
                if current:
                    out.append("".join(current))
                    current = []
                out.append(ch)
            else:
                current.append(ch)
        if current:
            out.append("".join(current))
        return out

    # -- word pieces -------------------------------------------------------------------------

    def _pieces(self, word: str) -> tuple[int, ...]:
        cached = self._words.get(word)
        if cached is not None:
            return cached
        ids = self._wordpiece(word)
        if len(self._words) >= WORD_CACHE:
            self._words.clear()
        self._words[word] = ids
        return ids

    def _wordpiece(self, word: str) -> tuple[int, ...]:
        if len(word) > MAX_WORD_CHARS:
            return (self.unk,)
        vocab = self.vocab
        ids: list[int] = []
        start, n = 0, len(word)
        while start < n:
            end = min(n, start + self._max_piece)
            found = -1
            while end > start:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                found = vocab.get(piece, -1)
                if found >= 0:
                    break
                end -= 1
            if found < 0:
                return (self.unk,)
            ids.append(found)
            start = end
        return tuple(ids)

    def tokenize(self, text: str) -> list[str]:
        """Word pieces of `text` without special tokens or truncation (for inspection)."""
        inverse = {i: t for t, i in self.vocab.items()}
        return [inverse[i] for word in self._words_of(text) for i in self._pieces(word)]

    def encode(self, text: str) -> list[int]:
        """Token ids with `[CLS]`/`[SEP]`, truncated to `max_length`."""
        limit = self.max_length - 1
        cache = self._words
        ids = [self.cls]
        for word in self._words_of(text):
            pieces = cache.get(word)
            ids += pieces if pieces is not None else self._pieces(word)
            if len(ids) > limit:
                del ids[limit:]
                break
        ids.append(self.sep)
        return ids

    def encode_batch(self, texts: Sequence[str]) -> Encoding:
        """Encode and pad to the longest row of this batch (dynamic padding)."""
        rows = [self.encode(t) for t in texts]
        width = max((len(r) for r in rows), default=0)
        ids, mask = array("q"), array("q")
        for row in rows:
            pad = width - len(row)
            ids.extend(row)
            ids.extend([self.pad] * pad)
            mask.extend([1] * len(row))
            mask.extend([0] * pad)
        shape = (len(rows), width)
        types = array("q", bytes(8 * len(ids)))
        return Encoding(Tensor("int64", shape, ids), Tensor("int64", shape, mask),
                        Tensor("int64", shape, types), tuple(len(r) for r in rows))


def _strip_accents(word: str) -> str:
    decomposed = unicodedata.normalize("NFD", word)
    return "".join(ch for ch in decomposed if unicodedata.category(ch) != "Mn")
