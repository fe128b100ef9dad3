"""The submission path's trust registry: cached per process, rebuilt when a key event lands."""

from __future__ import annotations

from ledger.db.engine import make_engine, make_session_factory
from ledger.records.keys import generate_private_key
from ledger.services.registry import revoke_key
from ledger.services.trust import load_keys


def test_the_registry_is_reused_until_a_key_event_lands_through_any_engine(store) -> None:
    key = store.add_signer()
    with store.sessions() as session:
        first = load_keys(session)
    with store.sessions() as session:
        assert load_keys(session) is first  # nothing changed: no rebuild
    assert first[key.key_id].state.status == "active"

    # another "process": its own engine and sessions on the same database
    engine = make_engine(store.settings.database_url)
    try:
        other = make_session_factory(engine)
        revoke_key(other, store.log, store.admin, key.key_id, now=store.tick())
        newcomer = generate_private_key("ed25519")
        store.add_signer(key=newcomer)
    finally:
        engine.dispose()
    with store.sessions() as session:
        second = load_keys(session)
    assert second is not first
    assert second[key.key_id].state.status == "revoked"
    assert newcomer.key_id in second and newcomer.key_id not in first


def test_a_registry_read_in_an_older_snapshot_is_not_cached_as_the_newer_state(store) -> None:
    """The version is read on its own connection, so it can be newer than the session's snapshot
    (a revocation committed between the session's first read and the version read). The registry
    built from the older snapshot must not be cached under the newer version: the next request
    sees the revocation."""
    from sqlalchemy import text  # noqa: PLC0415

    key = store.add_signer()
    engine = make_engine(store.settings.database_url)
    try:
        with store.sessions() as session:
            session.execute(text("SELECT count(*) FROM entries")).scalar_one()  # the snapshot starts here
            revoke_key(make_session_factory(engine), store.log, store.admin, key.key_id, now=store.tick())
            if store.backend == "sqlite":  # a snapshot: this session still sees the key active
                assert load_keys(session)[key.key_id].state.status == "active"
            else:  # read committed: each statement sees what is committed
                assert load_keys(session)[key.key_id].state.status == "revoked"
    finally:
        engine.dispose()
    with store.sessions() as session:
        assert load_keys(session)[key.key_id].state.status == "revoked"
