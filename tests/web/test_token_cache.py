"""The API's short cache of successful token checks: a hit opens no session, a wrong token is
never cached, scopes hold, and a removed or forgotten token stops working (within the TTL in
other processes, at once after ``forget``)."""

from __future__ import annotations

from sqlalchemy import delete

from ledger.db.models import ApiToken
from ledger.services.registry import create_token
from ledger.services.token_cache import TokenCache


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _opener(store, calls):
    sessions = []

    def open_session():
        calls.append(1)
        s = store.sessions()
        sessions.append(s)
        return s

    return open_session, sessions


def test_a_hit_opens_no_session_and_expires(sqlite_store):
    st = sqlite_store
    with st.sessions() as session, session.begin():
        token = create_token(session, "t", "submit", now=st.clock)
    clock, calls = _Clock(), []
    cache = TokenCache(ttl=1.0, clock=clock)
    open_session, opened = _opener(st, calls)
    assert cache.check(open_session, token, "submit")
    assert cache.check(open_session, token, "submit")
    assert len(calls) == 1
    assert not cache.check(open_session, token, "admin")  # a submit token never grants admin
    clock.now += 1.5
    assert cache.check(open_session, token, "submit")
    assert len(calls) == 2
    for s in opened:
        s.close()


def test_wrong_and_missing_tokens_are_always_refused_and_never_cached(sqlite_store):
    st = sqlite_store
    calls: list[int] = []
    open_session, opened = _opener(st, calls)
    cache = TokenCache()
    for bad in ("plt_wrong", "", None, "x" * 300):
        assert not cache.check(open_session, bad, "submit")
        assert not cache.check(open_session, bad, "submit")
    assert len(calls) == 4  # looked up every time (twice each for the two non-empty tokens)
    for s in opened:
        s.close()


def test_a_removed_token_stops_working_after_the_ttl_and_at_once_when_forgotten(store):
    st = store
    with st.sessions() as session, session.begin():
        token = create_token(session, "t", "admin", now=st.clock)
        other = create_token(session, "u", "submit", now=st.clock)
    clock = _Clock()
    cache = TokenCache(ttl=1.0, clock=clock)
    open_session, opened = _opener(st, [])
    assert cache.check(open_session, token, "submit")  # admin grants everything
    assert cache.check(open_session, other, "submit")
    with st.sessions() as session, session.begin():
        session.execute(delete(ApiToken))
    assert cache.check(open_session, token, "submit")  # still inside the TTL in this process
    clock.now += 1.01
    assert not cache.check(open_session, token, "submit")
    cache.forget(other)
    assert not cache.check(open_session, other, "submit")
    for s in opened:
        s.close()
