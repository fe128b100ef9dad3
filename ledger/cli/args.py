"""argparse types for numbers on the command line: ASCII digits only, within the store's range
(``ledger.untrusted.json.parse_decimal``), so a bad number is a usage error (exit 2), never a
traceback from the database; and ``given`` for options whose empty value must not quietly mean
"not given" (``--bundle "$UNSET"`` would otherwise verify against another source)."""

from __future__ import annotations

import argparse

from ledger.config import MAX_PROCESSES
from ledger.errors import LedgerError
from ledger.untrusted.json import parse_decimal

__all__ = ["count", "given", "index", "index_or_minus_one", "port", "processes", "signed_index"]


def index(text: str) -> int:
    """An argparse type: a non-negative integer of ASCII digits within the store's 64 bits."""
    try:
        return parse_decimal(text, what="the number")
    except LedgerError as exc:
        raise argparse.ArgumentTypeError(f"{text[:40]!r}: {exc}") from None


def signed_index(text: str) -> int:
    """``index`` with an optional leading ``-``: ASCII digits within the store's 64 bits either
    way (the command says what a negative one means, or refuses it)."""
    negative = text.startswith("-")
    value = index(text[1:] if negative else text)
    return -value if negative else value


def index_or_minus_one(text: str) -> int:
    """``index``, or -1 (a keyset page's start)."""
    return -1 if text == "-1" else index(text)


#: the most a count option (a batch size) may be
MAX_COUNT = 1_000_000


def count(text: str) -> int:
    """An argparse type: a whole number from 1 to ``MAX_COUNT`` (a batch size)."""
    return _within(text, 1, MAX_COUNT, "a count")


def _within(text: str, low: int, high: int, what: str) -> int:
    value = index(text)
    if not low <= value <= high:
        raise argparse.ArgumentTypeError(f"{text[:40]!r}: {what} must be from {low} to {high:,}")
    return value


def processes(text: str) -> int:
    """An argparse type: a number of processes, 1 to ``MAX_PROCESSES``."""
    return _within(text, 1, MAX_PROCESSES, "a number of processes")


def port(text: str) -> int:
    """An argparse type: a TCP port, 0 (any free port) to 65535."""
    return _within(text, 0, 65535, "a TCP port")


def given(text: str) -> str:
    """An argparse type: any value but an empty (or all-blank) one, which is a usage error: an
    unset shell variable must not switch a command to its default source or target."""
    if not text.strip():
        raise argparse.ArgumentTypeError("is empty (an unset variable?): give a value or leave the option out")
    return text
