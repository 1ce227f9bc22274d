"""The slice of pytest's API that the shared core tests use, for running them inside Pyodide.

The core tests in tests/unit are plain functions (no fixtures, no parametrize) precisely so that
they can run here too; they only need `pytest.raises` (and `pytest.approx`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class ExceptionInfo:
    def __init__(self) -> None:
        self.value: BaseException | None = None
        self.type: type[BaseException] | None = None


class Failed(AssertionError):
    pass


@contextmanager
def raises(expected: Any, *, match: str | None = None) -> Iterator[ExceptionInfo]:
    info = ExceptionInfo()
    try:
        yield info
    except expected as exc:
        info.value, info.type = exc, type(exc)
        if match is not None and not re.search(match, str(exc)):
            raise Failed(f"{exc!r} does not match {match!r}") from exc
        return
    raise Failed(f"DID NOT RAISE {expected}")


def approx(expected: float, rel: float = 1e-6, abs: float = 1e-12) -> Any:
    class _Approx:
        def __eq__(self, other: object) -> bool:
            return isinstance(other, int | float) and math.isclose(
                other, expected, rel_tol=rel, abs_tol=abs)

        __hash__ = None  # type: ignore[assignment]

        def __repr__(self) -> str:
            return f"approx({expected})"

    return _Approx()


def fail(message: str) -> None:
    raise Failed(message)
