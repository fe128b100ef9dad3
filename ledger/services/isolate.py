"""One failing record never fails its neighbours in a group commit.

A batch is integrated in one transaction. When that transaction fails because of something in
the records themselves (the database refuses a value, a record cannot be encoded), the batch is
probed in rolled-back transactions, halving until each failing record stands alone, and then
committed again without those records (the probe is ``ledger.services.append.dry_run``). Only their submitters get an error: a 4xx
(``record_fault``). A failure that is not a record's fault (the database is unreachable, the
store disagrees with itself) still fails the whole batch, as before.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TypeVar

from sqlalchemy import exc as sa_exc
from ledger.errors import (
    ConfigurationError,
    IntegrityError,
    LedgerError,
    MalformedError,
    UnavailableError,
)
from ledger.services.prepared import Prepared

__all__ = ["MAX_ISOLATION_ROUNDS", "commit_isolating", "record_fault"]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: commit attempts after the first failure (each removes at least one failing record)
MAX_ISOLATION_ROUNDS = 4

_DATA_ERRORS = (UnicodeError, ValueError, TypeError, OverflowError)


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


def record_fault(exc: BaseException) -> LedgerError | None:
    """The error for the one submitter whose record alone makes a transaction fail, or None when
    the failure is not a record's fault (the database is down, the store is damaged)."""
    if isinstance(exc, IntegrityError | UnavailableError | ConfigurationError):
        return None
    if isinstance(exc, LedgerError):
        return exc
    if isinstance(exc, sa_exc.DataError | sa_exc.IntegrityError):
        return MalformedError(f"the database refused this record: {_first_line(exc)}")
    if isinstance(exc, sa_exc.StatementError) and isinstance(exc.orig, _DATA_ERRORS):
        return MalformedError(f"the database cannot store this record: {_first_line(exc)}")
    if isinstance(exc, _DATA_ERRORS):
        return MalformedError(f"this record cannot be stored: {_first_line(exc)}")
    return None


def _culprits(
    batch: Sequence[Prepared], positions: list[int], probe: Callable[[Sequence[Prepared]], BaseException | None]
) -> dict[int, LedgerError]:
    """Positions (into ``batch``) of the records that fail alone, by halving; raises a failure
    that is not a record's fault."""
    found: dict[int, LedgerError] = {}
    stack = [positions[len(positions) // 2 :], positions[: len(positions) // 2]] if len(positions) > 1 else [positions]
    while stack:
        part = stack.pop()
        if not part:
            continue
        exc = probe([batch[i] for i in part])
        if exc is None:
            continue
        fault = record_fault(exc)
        if fault is None:
            raise exc
        if len(part) == 1:
            found[part[0]] = fault
        else:
            half = len(part) // 2
            stack += [part[half:], part[:half]]
    return found


def commit_isolating(
    batch: Sequence[Prepared],
    commit: Callable[[Sequence[Prepared]], T],
    probe: Callable[[Sequence[Prepared]], BaseException | None],
) -> tuple[T | None, list[int], dict[int, LedgerError]]:
    """Commit ``batch``; if a record makes it fail, commit the rest without it.

    Returns (what ``commit`` returned for the kept records or None if none were kept, the
    positions kept, in order, and the refused positions with their errors). Raises the
    failure when it is not a record's fault, or when no single record can be blamed.
    """
    positions = list(range(len(batch)))
    refused: dict[int, LedgerError] = {}
    try:
        return commit(batch), positions, refused
    except Exception as exc:  # noqa: BLE001 - classified below
        failure: Exception = exc
    for _ in range(MAX_ISOLATION_ROUNDS):
        if record_fault(failure) is None:
            raise failure
        found = _culprits(batch, positions, probe)
        if not found:
            raise failure  # only records together fail: nothing to blame one submitter for
        for position, error in found.items():
            log.warning("record %d of a batch of %d refused at integration: %s", position, len(batch), error)
        refused.update(found)
        positions = [i for i in positions if i not in refused]
        if not positions:
            return None, positions, refused
        try:
            return commit([batch[i] for i in positions]), positions, refused
        except Exception as exc:  # noqa: BLE001 - classified on the next round
            failure = exc
    raise failure
