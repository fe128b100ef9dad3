"""Read-then-write transactions on SQLite begin as writers (``ledger.db.engine.begin_write``).

A deferred SQLite transaction that reads and then writes fails at once with "database is
locked" (SQLITE_BUSY_SNAPSHOT) when another connection committed in between; under concurrent
requests that was a 500 from ``POST /api/v1/audits`` (found by Schemathesis against a served
ledger). Each test makes the interleaving happen, rather than hoping for it."""

from __future__ import annotations

import sqlite3
import threading
from typing import Any

import pytest
from sqlalchemy import text

from ledger.db.engine import begin_write
from ledger.services.registry import create_token
from ledger.services.shards import runs
from web.app import create_app


def _path(store: Any) -> str:
    url = store.settings.database_url
    assert url.startswith("sqlite:///"), url
    return url[len("sqlite:///") :]


def _other_writer(store: Any, *, timeout: float) -> sqlite3.Connection:
    other = sqlite3.connect(_path(store), timeout=timeout, isolation_level=None)
    other.execute("PRAGMA journal_mode=WAL")
    return other


def test_begin_write_holds_the_write_lock_from_the_first_statement(sqlite_store: Any) -> None:
    other = _other_writer(sqlite_store, timeout=0.05)
    with sqlite_store.sessions() as session:
        begin_write(session)
        session.execute(text("SELECT size FROM sequencer")).scalar_one()
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("BEGIN IMMEDIATE")  # another writer waits (here: gives up) until this one ends
        session.execute(text("UPDATE api_tokens SET last_used_at = 1 WHERE id = -1"))
        session.commit()
    other.execute("BEGIN IMMEDIATE")
    other.execute("ROLLBACK")
    other.close()


def test_begin_write_after_a_read_is_refused(sqlite_store: Any) -> None:
    """A transaction that already read cannot become a writer safely: the caller is told, the
    lock is not silently skipped."""
    with sqlite_store.sessions() as session:
        session.execute(text("SELECT size FROM sequencer")).scalar_one()
        with pytest.raises(RuntimeError, match="first statement"):
            begin_write(session)


def test_begin_write_is_a_no_op_on_postgresql(postgres_store: Any) -> None:
    with postgres_store.sessions() as session, session.begin():
        begin_write(session)
        assert session.execute(text("SELECT size FROM sequencer")).scalar_one() >= 0


def test_post_audits_survives_a_write_committed_between_its_read_and_its_insert(sqlite_store: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The audit row is written after reading the tree size. Another process writes right after
    that read: the request must wait for it or hold it off, never answer 500."""
    app = create_app({"SETTINGS": sqlite_store.settings, "TESTING": True})
    with sqlite_store.sessions() as session, session.begin():
        token = create_token(session, "auditor", "admin", now=sqlite_store.clock)
    read_size = runs.store.current_size
    writers: list[threading.Thread] = []
    wrote = threading.Event()

    def size_then_a_write_elsewhere(session: Any) -> int:
        size = read_size(session)

        def write() -> None:
            other = _other_writer(sqlite_store, timeout=30)
            other.execute("UPDATE api_tokens SET last_used_at = 7 WHERE name = 'auditor'")  # autocommit
            other.close()
            wrote.set()

        thread = threading.Thread(target=write)
        thread.start()
        writers.append(thread)
        wrote.wait(1.0)  # done at once when nothing holds the write lock; else it waits for us
        return size

    monkeypatch.setattr(runs.store, "current_size", size_then_a_write_elsewhere)
    try:
        response = app.test_client().post("/api/v1/audits", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 202, response.get_data(as_text=True)
        for thread in writers:
            thread.join(30)
        assert writers and wrote.is_set()  # the other write happened too, after this one
    finally:
        ext = app.extensions["provledger"]
        ext.sequencer.stop()
        ext.engine.dispose()
