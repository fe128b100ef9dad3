"""The sequencer checks the store's right edge before each batch (issue 10, done-when 6).

A store cut or rewritten behind a running server's back stops its writes (503 naming the
first bad index), flags /healthz, and nothing is appended over the gap — on SQLite and PostgreSQL.
Another process appending legitimately (the store grows past what this one wrote) is not a mismatch.
"""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import text

from ledger.services.registry import create_token
from tests.fixtures import PREDICATE, sign
from tests.services.test_tamper import delete_checkpoint_rows, delete_entry_rows
from web.app import create_app


@pytest.fixture
def served(store):
    app = create_app({"SETTINGS": store.settings, "TESTING": True, "WITNESSES": None})
    with store.sessions() as session, session.begin():
        token = create_token(session, "edge", "submit", now=store.clock)
    key = store.add_signer(allow=[PREDICATE])
    client = app.test_client()
    auth = {"Authorization": f"Bearer {token}"}

    def post():
        return client.post("/api/v1/entries", json=sign(key), headers=auth)

    for _ in range(3):
        assert post().status_code == 201
    yield app, client, post, key
    ext = app.extensions["provledger"]
    ext.sequencer.stop()
    ext.engine.dispose()


def _assert_stopped(client, post, store, size_before, bad_index, caplog):
    with caplog.at_level(logging.ERROR, logger="ledger.services.sequencer"):
        response = post()
    assert response.status_code == 503, response.get_data(as_text=True)
    assert response.get_json()["error"]["code"] == "integrity_failure"
    assert str(bad_index) in response.get_json()["error"]["message"]
    assert any(f"index {bad_index}" in r.getMessage() for r in caplog.records), [r.getMessage() for r in caplog.records]
    health = client.get("/healthz")
    assert health.status_code == 503
    body = health.get_json()
    assert body["status"] == "compromised" and body.get("integrity") != "verified"
    assert body["first_bad_index"] == bad_index
    # writes stay stopped, and nothing was appended over the gap
    again = post()
    assert again.status_code == 503
    assert store.size() == size_before


def test_deleting_the_last_row_behind_the_servers_back_stops_writes(served, store, caplog):
    _app, client, post, _key = served
    assert client.get("/healthz").get_json()["integrity"] == "verified"
    size = store.size()
    with store.tamper() as conn:
        delete_entry_rows(conn, size - 1)
    _assert_stopped(client, post, store, size, size - 1, caplog)
    with store.sessions() as session:
        assert session.execute(text("SELECT count(*) FROM entries WHERE idx >= :k"), {"k": size - 1}).scalar_one() == 0


def test_a_consistent_looking_cut_is_caught_by_what_the_server_holds(served, store, caplog):
    """Last row, its checkpoint and the sequencer rolled back together: only memory tells."""
    _app, client, post, _key = served
    size = store.size()
    with store.tamper() as conn:
        delete_entry_rows(conn, size - 1)
        delete_checkpoint_rows(conn, size)
        conn.execute(text("UPDATE sequencer SET size = :s WHERE id = 1"), {"s": size - 1})
    _assert_stopped(client, post, store, size - 1, size - 1, caplog)


def test_a_rewritten_last_chain_hash_is_caught(served, store, caplog):
    _app, client, post, _key = served
    size = store.size()
    with store.tamper() as conn:
        conn.execute(text("UPDATE entries SET chain_hash = :h WHERE idx = :k"), {"h": b"\x00" * 32, "k": size - 1})
    _assert_stopped(client, post, store, size, size - 1, caplog)


def test_another_process_appending_is_not_a_mismatch(served, store):
    _app, client, post, key = served
    store.append_ok([sign(key) for _ in range(2)])  # a second appender (its own transaction)
    size = store.size()
    assert post().status_code == 201
    assert store.size() == size + 1
    assert client.get("/healthz").get_json()["integrity"] == "verified"
