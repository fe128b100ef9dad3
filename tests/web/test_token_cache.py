"""The API's short cache of successful token checks: a hit opens no session, a wrong token is
never cached, scopes hold, and a removed or forgotten token stops working (within the TTL in
other processes, at once after ``forget``)."""

from __future__ import annotations

from ledger.services.registry import create_token, revoke_token, use_token
from ledger.services.token_cache import TokenCache


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _lookup(store, token, scope, calls):
    """The real check the API does (registry.use_token in a session of its own), counted."""

    def lookup():
        calls.append(1)
        return use_token(store.sessions, token, scope, now=store.clock)

    return lookup


def test_a_hit_opens_no_session_and_expires(sqlite_store):
    st = sqlite_store
    with st.sessions() as session, session.begin():
        token = create_token(session, "t", "submit", now=st.clock)
    clock, calls = _Clock(), []
    cache = TokenCache(ttl=1.0, clock=clock)
    assert cache.check(token, "submit", _lookup(st, token, "submit", calls))
    assert cache.check(token, "submit", _lookup(st, token, "submit", calls))
    assert len(calls) == 1
    assert not cache.check(token, "admin", _lookup(st, token, "admin", calls))  # submit never grants admin
    assert len(calls) == 1
    clock.now += 1.5
    assert cache.check(token, "submit", _lookup(st, token, "submit", calls))
    assert len(calls) == 2


def test_wrong_and_missing_tokens_are_always_refused_and_never_cached(sqlite_store):
    st = sqlite_store
    calls: list[int] = []
    cache = TokenCache()
    for bad in ("plt_wrong", "", None, "x" * 300):
        assert not cache.check(bad, "submit", _lookup(st, bad, "submit", calls))
        assert not cache.check(bad, "submit", _lookup(st, bad, "submit", calls))
    assert len(calls) == 4  # looked up every time (twice each for the two non-empty tokens)


def test_a_revoked_token_stops_working_after_the_ttl_and_at_once_when_cleared(store):
    st = store
    with st.sessions() as session, session.begin():
        token = create_token(session, "t", "admin", now=st.clock)
        other = create_token(session, "u", "submit", now=st.clock)
    clock, calls = _Clock(), []
    cache = TokenCache(ttl=1.0, clock=clock)
    assert cache.check(token, "submit", _lookup(st, token, "submit", calls))  # admin grants everything
    assert cache.check(other, "submit", _lookup(st, other, "submit", calls))
    with st.sessions() as session, session.begin():
        revoke_token(session, "t", now=st.clock)
        revoke_token(session, "u", now=st.clock)
    assert cache.check(token, "submit", _lookup(st, token, "submit", calls))  # inside the TTL (another process)
    clock.now += 1.01
    assert not cache.check(token, "submit", _lookup(st, token, "submit", calls))
    cache.clear()  # what the admin page does in the process that revoked
    assert not cache.check(other, "submit", _lookup(st, other, "submit", calls))


def test_the_api_refuses_a_token_revoked_on_the_admin_page_at_once(sqlite_store):
    """Through the app: a cached good token, revoked by revoke_token plus the cache's clear."""
    from web.app import create_app  # noqa: PLC0415

    st = sqlite_store
    with st.sessions() as session, session.begin():
        token = create_token(session, "ci", "submit", now=st.clock)
    app = create_app({"SETTINGS": st.settings})
    try:
        client = app.test_client()
        headers = {"Authorization": f"Bearer {token}"}
        # a malformed body: the token check passes (400, not 401) and is cached
        assert client.post("/api/v1/entries", data=b"{", headers=headers).status_code == 400
        assert app.extensions["provledger_token_cache"]._valid
        with st.sessions() as session, session.begin():
            revoke_token(session, "ci", now=st.clock)
        app.extensions["provledger_token_cache"].clear()
        assert client.post("/api/v1/entries", data=b"{", headers=headers).status_code == 401
    finally:
        ext = app.extensions["provledger"]
        ext.sequencer.stop()
        ext.engine.dispose()
