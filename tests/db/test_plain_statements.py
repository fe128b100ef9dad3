"""The append path's plain statements (``ledger.db.store._plain``) run on the session's DBAPI
cursor, inside its transaction, and the database's refusals reach callers as SQLAlchemy's error
types (the group commit's isolation of a refused record depends on them): on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import exc as sa_exc

from ledger.db import store as db


def test_a_refused_insert_is_sqlalchemys_integrity_error_and_rolls_back(store):
    store.fill([2])
    with store.sessions() as session:
        with session.begin():
            size = db.lock_sequencer(session)
            existing = db.entries_by_content_hash(session, [b"\x01" * 32])
            assert existing == {}
        with pytest.raises(sa_exc.IntegrityError) as caught:
            with session.begin():
                db.lock_sequencer(session)
                # entry 0 already has a content row: the primary key refuses a second one
                db.insert_contents(session, [(0, b"\x02" * 32)])
        # the driver's own error inside (SQLite: an INSERT; PostgreSQL: the inserts' COPY)
        assert caught.value.orig is not None and "entry_contents" in caught.value.statement
    with store.sessions() as session:  # nothing of the refused transaction stayed
        assert db.entries_by_content_hash(session, [b"\x02" * 32]) == {}
        assert db.current_size(session) == size


def test_reads_see_the_transactions_own_writes(store):
    store.fill([1])
    with store.sessions() as session, session.begin():
        size = db.lock_sequencer(session)
        db.advance_sequencer(session, size)  # an UPDATE through the cursor ...
        assert db.current_size(session) == size  # ... and a read of it in the same transaction
        assert db.last_entry(session)[0] == size - 1
        assert db.latest_checkpoint_root(session)[0] == size


def test_a_broken_statement_is_sqlalchemys_error_too(store):
    with store.sessions() as session, session.begin():
        with pytest.raises(sa_exc.DBAPIError):
            db._plain(session, "SELECT no_such_column FROM sequencer")


def test_sqlite_connections_are_durable_and_checkpoint_every_10000_pages(tmp_path):
    """Every pooled SQLite connection: WAL, synchronous=FULL (durability), and the WAL copied back
    every SQLITE_WAL_AUTOCHECKPOINT pages (README, Appending)."""
    from ledger.db.engine import SQLITE_WAL_AUTOCHECKPOINT, make_engine  # noqa: PLC0415

    engine = make_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
    try:
        with engine.connect() as a, engine.connect() as b:
            for conn in (a, b):
                assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
                assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
                assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == SQLITE_WAL_AUTOCHECKPOINT == 10_000
    finally:
        engine.dispose()
