"""The database itself refuses to rewrite the log: UPDATE, DELETE (and TRUNCATE on PostgreSQL)."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from ledger.db import migrate
from ledger.services.audit import audit

STATEMENTS = {
    "entries": [
        "UPDATE entries SET data = data || data WHERE idx = 1",
        "UPDATE entries SET integrated_time = 0",
        "DELETE FROM entries WHERE idx = 2",
    ],
    "entry_subjects": [
        "UPDATE entry_subjects SET name = 'evil' WHERE entry_idx = 0",
        "DELETE FROM entry_subjects",
    ],
    "tree_hashes": [
        "UPDATE tree_hashes SET hash = hash WHERE position = 0",
        "DELETE FROM tree_hashes WHERE position = 0",
    ],
    "checkpoints": [
        "UPDATE checkpoints SET note = 'x' WHERE tree_size = {mid}",
        "DELETE FROM checkpoints WHERE tree_size = {mid}",
        "DELETE FROM checkpoints",
    ],
}


@pytest.fixture
def filled(store):
    store.add_signer()  # a key event: one entry and one checkpoint of its own
    store.first = store.size()
    store.fill([3, 2])
    return store


def _sql(filled, sql):
    # the checkpoint after the first batch of 3 records (tree sizes are shifted by the key events)
    return sql.format(mid=filled.first + 3)


@pytest.mark.parametrize("table", list(STATEMENTS))
def test_update_and_delete_are_refused(filled, table):
    before = filled.state()
    for sql in STATEMENTS[table]:
        with pytest.raises(DBAPIError, match="append-only"):
            with filled.engine.begin() as conn:
                conn.execute(text(_sql(filled, sql)))
    assert filled.state() == before
    with filled.sessions() as session:
        assert audit(session, filled.log).ok


@pytest.mark.parametrize("table", list(STATEMENTS))
def test_truncate_is_refused_on_postgres(postgres_store, table):
    # SQLite has no TRUNCATE; its DELETE without WHERE is covered above
    filled = postgres_store
    filled.fill([3, 2])
    before = filled.state()
    with pytest.raises(DBAPIError, match="append-only"):
        with filled.engine.begin() as conn:
            conn.execute(text(f"TRUNCATE {table} CASCADE"))
    assert filled.state() == before


def test_inserts_still_work_and_sequencer_is_mutable(filled):
    before = filled.size()
    filled.fill([1])
    assert filled.size() == before + 1 == filled.first + 6


def test_store_is_at_head_revision(store):
    assert migrate.current_revision(store.engine) == migrate.head_revision()


def test_triggers_come_back_after_the_bypass(filled):
    # the tamper helper restores SQLite's triggers; PostgreSQL's were only bypassed for one transaction
    with filled.tamper() as conn:
        conn.execute(text("UPDATE entries SET integrated_time = integrated_time WHERE idx = 0"))
    with pytest.raises(DBAPIError, match="append-only"):
        with filled.engine.begin() as conn:
            conn.execute(text("UPDATE entries SET integrated_time = 0"))
