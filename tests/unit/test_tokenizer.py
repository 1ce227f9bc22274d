"""The WordPiece tokenizer's behaviour (stdlib only: these tests also run inside Pyodide)."""

from __future__ import annotations

from pathlib import Path

import pytest

from wasmagent.text.tokenizer import WordPieceTokenizer

VOCAB = Path(__file__).resolve().parents[2] / "models/all-minilm-l6-v2/vocab.txt"
_TOKENIZER: list[WordPieceTokenizer] = []


def _tok() -> WordPieceTokenizer:
    if not _TOKENIZER:
        _TOKENIZER.append(WordPieceTokenizer.from_vocab_text(VOCAB.read_text(encoding="utf-8")))
    return _TOKENIZER[0]


def test_lowercases_strips_accents_and_splits_punctuation() -> None:
    tok = _tok()
    assert tok.tokenize("Héllo, WÖRLD!") == ["hello", ",", "world", "!"]
    assert tok.tokenize("os.path.join") == ["os", ".", "path", ".", "join"]
    assert tok.tokenize("naïve café") == ["naive", "cafe"]


def test_word_pieces_are_greedy_longest_match() -> None:
    tok = _tok()
    assert tok.tokenize("tokenization") == ["token", "##ization"]
    assert tok.tokenize("embeddings") == ["em", "##bed", "##ding", "##s"]


def test_cjk_characters_become_separate_tokens() -> None:
    assert _tok().tokenize("東京") == ["東", "京"]


def test_control_characters_are_dropped_and_whitespace_normalised() -> None:
    tok = _tok()
    assert tok.tokenize("a\x00b\u200bc\tdef\r\nghi") == tok.tokenize("abc def ghi")


def test_overlong_words_and_unknown_symbols_become_unk() -> None:
    tok = _tok()
    assert tok.tokenize("x" * 101) == ["[UNK]"]
    assert tok.tokenize("👍") == ["[UNK]"]


def test_encode_adds_specials_and_truncates_at_max_length() -> None:
    tok = _tok()
    ids = tok.encode("hello world")
    assert ids[0] == tok.cls
    assert ids[-1] == tok.sep
    long = tok.encode("word " * 1000)
    assert len(long) == 256
    assert long[-1] == tok.sep
    short = WordPieceTokenizer.from_vocab_text(VOCAB.read_text(encoding="utf-8"), max_length=8)
    assert len(short.encode("one two three four five six seven eight nine")) == 8


def test_batches_are_padded_to_their_longest_row_only() -> None:
    tok = _tok()
    enc = tok.encode_batch(["short", "a somewhat longer sentence here"])
    width = enc.input_ids.shape[1]
    assert enc.input_ids.shape == (2, width)
    assert width == max(enc.lengths)
    assert enc.lengths[0] < width
    mask = enc.attention_mask.data.tolist()
    assert sum(mask[:width]) == enc.lengths[0]
    assert set(enc.token_type_ids.data.tolist()) == {0}
    assert set(enc.feeds()) == {"input_ids", "attention_mask", "token_type_ids"}


def test_empty_text_is_just_the_special_tokens() -> None:
    tok = _tok()
    assert tok.encode("") == [tok.cls, tok.sep]
    assert tok.encode("   \x00 ") == [tok.cls, tok.sep]


def test_a_vocabulary_without_specials_is_refused() -> None:
    with pytest.raises(KeyError):
        WordPieceTokenizer(["a", "b"])
