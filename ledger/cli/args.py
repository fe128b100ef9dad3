"""argparse types for numbers on the command line: ASCII digits only, within the store's range
(``ledger.untrusted.json.parse_decimal``), so a bad number is a usage error (exit 2), never a
traceback from the database."""

from __future__ import annotations

import argparse

from ledger.errors import LedgerError
from ledger.untrusted.json import parse_decimal

__all__ = ["count", "index", "index_or_minus_one"]


def index(text: str) -> int:
    """An argparse type: a non-negative integer of ASCII digits within the store's 64 bits."""
    try:
        return parse_decimal(text, what="the number")
    except LedgerError as exc:
        raise argparse.ArgumentTypeError(f"{text[:40]!r}: {exc}") from None


def index_or_minus_one(text: str) -> int:
    """``index``, or -1 (a keyset page's start)."""
    return -1 if text == "-1" else index(text)


#: the most a count option (a batch size, a number of processes) may be
MAX_COUNT = 1_000_000


def count(text: str) -> int:
    """An argparse type: a whole number from 1 to ``MAX_COUNT`` (a batch size, processes)."""
    value = index(text)
    if not 1 <= value <= MAX_COUNT:
        raise argparse.ArgumentTypeError(f"{text[:40]!r}: must be from 1 to {MAX_COUNT:,}")
    return value
