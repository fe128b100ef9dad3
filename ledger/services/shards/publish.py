"""The periodic duty: publish a checkpoint when the tree grew."""

from __future__ import annotations

from sqlalchemy.orm import Session

from ledger.tlog.checkpoint import Checkpoint, sign_checkpoint
from ledger.db import store
from ledger.services.log import LogIdentity

__all__ = ["publish_checkpoint"]


def publish_checkpoint(session: Session, log: LogIdentity, *, now: int) -> int | None:
    """Sign a checkpoint for the tree if the latest one does not cover it; return its size or None.

    Runs under the sequencer lock (the database-level guard): appenders and other publishers
    wait, so the tree cannot move between reading it and signing it, and a second publisher finds
    the checkpoint already there. The caller's transaction must start here (SQLite) and commit.
    """
    size = store.lock_sequencer(session)
    latest = store.latest_checkpoint(session)
    if latest is not None and latest.tree_size >= size:
        return None
    root = store.read_frontier(session, size).root()
    note = sign_checkpoint(Checkpoint(origin=log.origin, size=size, root=root), log.signer).decode("utf-8")
    store.insert_checkpoint(session, size, root, note, now)
    session.flush()
    return size
