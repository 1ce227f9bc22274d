"""Text or not, and in which encoding: decided from a file's first bytes, before it is read.

`sniff_encoding(head)` finds the codec (BOMs, UTF-16 without a BOM, UTF-8, else Windows-1252)
or raises `NotText` naming what the bytes look like instead (a PNG image, an ELF executable,
binary data); `not_text(text)` judges decoded text. Pure: the caller reads the file.
"""

from __future__ import annotations

import codecs
import re


class NotText(ValueError):
    """The bytes are not a text document; the message says what they look like instead."""


# Formats whose first bytes give them away, named in the message of a skipped file. Most binary
# formats also hold NUL bytes early on, which `sniff_encoding` refuses anyway.
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"), (b"GIF89a", "a GIF image"), (b"%PDF-", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive (or an Office/EPUB document)"),
    (b"\x7fELF", "an ELF executable"), (b"MZ\x90\x00", "a Windows executable"),
    (b"\xcf\xfa\xed\xfe", "a Mach-O executable"), (b"\xfe\xed\xfa", "a Mach-O executable"),
    (b"\x1f\x8b", "gzip-compressed data"), (b"BZh91AY&SY", "bzip2-compressed data"),
    (b"\xfd7zXZ\x00", "xz-compressed data"), (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed data"), (b"SQLite format 3\x00", "a SQLite database"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an old Office document"),
    (b"\x00asm", "a WebAssembly module"), (b"wOFF", "a web font"), (b"wOF2", "a web font"),
)
_BOMS: tuple[tuple[bytes, str], ...] = (  # UTF-32 first: its LE BOM starts with UTF-16's
    (codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
# Control characters text does not use (tab, newlines, form feed and ESC are fine), and the
# replacement character an undecodable byte becomes.
_NOT_TEXT = re.compile(r"[\x00-\x08\x0e-\x1a\x1c-\x1f\x7f\ufffd]")
NOT_TEXT_SHARE = 0.02


def sniff_encoding(head: bytes) -> str:
    """The codec to decode a file with, from its first bytes (a few KB); raises `NotText`.

    A BOM names UTF-8, UTF-16 or UTF-32 (the codec returned skips it). Without one: bytes of
    a known binary format or NUL bytes mean binary, except UTF-16 without a BOM (every other
    byte NUL); else UTF-8 if the bytes are (mostly) UTF-8, else Windows-1252. The decoded head
    must then pass `not_text`."""
    encoding = next((codec for bom, codec in _BOMS if head.startswith(bom)), None)
    if encoding is None:
        for magic, name in _MAGIC:
            if head.startswith(magic):
                raise NotText(f"not text: {name}")
        encoding = _utf16_without_bom(head) or _byte_encoding(head)
    decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
    reason = not_text(decoder.decode(head))  # not final: the head may end inside a character
    if reason is not None:
        raise NotText(reason)
    return encoding


def _utf16_without_bom(head: bytes) -> str | None:
    pairs = len(head) // 2
    if pairs < 2:
        return None
    even, odd = head[0:pairs * 2:2].count(0), head[1:pairs * 2:2].count(0)
    if odd > 0.4 * pairs and even < 0.02 * pairs:
        return "utf-16-le"
    if even > 0.4 * pairs and odd < 0.02 * pairs:
        return "utf-16-be"
    return None


def _byte_encoding(head: bytes) -> str:
    if b"\x00" in head:
        raise NotText("not text: binary data (NUL bytes)")
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head)
        return "utf-8"
    except UnicodeDecodeError:
        pass
    # Not quite UTF-8: a UTF-8 file with a few broken bytes still holds valid multi-byte
    # characters (keep UTF-8, the broken bytes become U+FFFD); a legacy 8-bit file holds none.
    decoded = head.decode("utf-8", errors="replace")
    if any(ord(c) > 0x7F and c != "\ufffd" for c in decoded):
        return "utf-8"
    return "cp1252"


def not_text(text: str) -> str | None:
    """Why decoded `text` is not a text document (too many control characters or undecodable
    bytes: binary data), or None if it is text."""
    if not text:
        return None
    bad = len(_NOT_TEXT.findall(text))
    if bad > max(2, NOT_TEXT_SHARE * len(text)):
        if "\x00" in text:
            return "not text: binary data (NUL characters)"
        return f"not text: binary data ({100 * bad / len(text):.0f}% control or undecodable " \
               "characters)"
    return None
