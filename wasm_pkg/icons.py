"""Draw the app icon as PNG (stdlib only): a blue rounded square with a white speech bubble.

Generated at build time so the repository holds no binary art and no image tool is needed.
"""

from __future__ import annotations

import struct
import zlib


def _inside_rounded(x: float, y: float, lo: float, hi: float, r: float) -> bool:
    cx = min(max(x, lo + r), hi - r)
    cy = min(max(y, lo + r), hi - r)
    return (x - cx) ** 2 + (y - cy) ** 2 <= r * r


def _pixel(x: float, y: float) -> tuple[int, int, int, int]:
    """Colour at (x, y) in the unit square."""
    if not _inside_rounded(x, y, 0.0, 1.0, 0.22):
        return (0, 0, 0, 0)
    bubble = _inside_rounded(x, y, 0.2, 0.8, 0.14) and y < 0.68
    tail = 0.3 <= x <= 0.45 and 0.6 <= y <= 0.82 and (y - 0.6) <= (0.45 - x) * 1.4
    if bubble or tail:
        dots = any((x - cx) ** 2 + (y - 0.44) ** 2 <= 0.055**2 for cx in (0.36, 0.5, 0.64))
        return (26, 95, 180, 255) if dots else (255, 255, 255, 255)
    return (26, 95, 180, 255)


def png(size: int) -> bytes:
    rows = []
    for j in range(size):
        row = bytearray([0])
        for i in range(size):
            row.extend(_pixel((i + 0.5) / size, (j + 0.5) / size))
        rows.append(bytes(row))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"".join(rows), 9)) + chunk(b"IEND", b""))
