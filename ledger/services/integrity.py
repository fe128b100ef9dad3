"""Start-up integrity checks for ``serve``.

A ledger up to ``FULL_CHECK_LIMIT`` entries is re-measured in full before serving. A larger one
starts on a fast check — every checkpoint signature, the latest checkpoint's root recomputed from
the stored right edge, and the hash chain and leaf hashes of the last ``TAIL`` entries — and is
then re-measured in full in the background.
"""

from __future__ import annotations

import hashlib

from sqlalchemy.orm import Session

from ledger.tlog.checkpoint import open_checkpoint
from ledger.db import store
from ledger.config import env_int
from ledger.errors import IntegrityError, LedgerError
from ledger.tlog.hashing import CHAIN_SEED
from ledger.services.log import LogIdentity

__all__ = ["FULL_CHECK_LIMIT", "TAIL", "fast_check", "full_check_limit"]

FULL_CHECK_LIMIT = 1_000_000
TAIL = 10_000


def full_check_limit() -> int:
    """``PROVLEDGER_STARTUP_FULL_AUDIT_LIMIT``: entries ``serve`` re-measures in full before starting."""
    return env_int("PROVLEDGER_STARTUP_FULL_AUDIT_LIMIT", FULL_CHECK_LIMIT, 0, 10**15)


def fast_check(session: Session, log: LogIdentity) -> None:
    """Raise IntegrityError naming the first bad index the fast check can see."""
    size = store.current_size(session)
    latest = store.latest_checkpoint(session)
    if latest is None or latest.tree_size != size:
        raise IntegrityError(
            f"the latest checkpoint does not cover the tree of size {size}", first_bad_index=max(size - 1, 0)
        )
    for cp in store.iter_checkpoints(session):
        try:
            signed = open_checkpoint(cp.note.encode(), log.verifier, origin=log.origin)
        except LedgerError as exc:
            raise IntegrityError(f"checkpoint of size {cp.tree_size}: {exc}", first_bad_index=max(cp.tree_size - 1, 0)) from exc
        if signed.size != cp.tree_size or signed.root != cp.root_hash:
            raise IntegrityError(f"checkpoint of size {cp.tree_size} disagrees with its note", first_bad_index=max(cp.tree_size - 1, 0))
    if store.read_frontier(session, size).root() != latest.root_hash:
        raise IntegrityError("the stored tree does not lead to the latest checkpoint's root", first_bad_index=max(size - 1, 0))
    start = max(size - TAIL, 0)
    head = CHAIN_SEED if start == 0 else store.chain_head(session, start)
    expected = start
    for idx, data, leaf, chain in store.iter_entries(session, start=start):
        if idx != expected or hashlib.sha256(b"\x00" + data).digest() != leaf:
            raise IntegrityError(f"entry {expected} is missing or altered", first_bad_index=expected)
        head = hashlib.sha256(head + leaf).digest()
        if head != chain:
            raise IntegrityError(f"the hash chain breaks at entry {idx}", first_bad_index=idx)
        expected += 1
    if expected != size:
        raise IntegrityError(f"entries {expected}..{size - 1} are missing", first_bad_index=expected)
