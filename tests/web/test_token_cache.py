"""The API's token check without the ORM on the hot path: the full check (which notes the use)
runs once a minute per token, every other request reads the token's scope and revocation in one
plain query, so a revoked token gets 401 on the very next request; wrong tokens never pass."""

from __future__ import annotations

from ledger.services import token_cache as module
from ledger.services.registry import create_token, list_tokens, revoke_token
from ledger.services.token_cache import TokenCache


class _Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _counting(monkeypatch):
    calls: list[str] = []
    original = module.use_token

    def counted(*args, **kwargs):
        calls.append(args[1])
        return original(*args, **kwargs)

    monkeypatch.setattr(module, "use_token", counted)
    return calls


def test_the_full_check_runs_once_a_minute_and_notes_the_use(store, monkeypatch):
    st = store
    with st.sessions() as session, session.begin():
        token = create_token(session, "t", "submit", now=st.clock)
    calls = _counting(monkeypatch)
    clock = _Clock(float(st.clock))
    cache = TokenCache(clock=clock)
    assert cache.check(st.sessions, token, "submit")
    for _ in range(5):
        clock.now += 5
        assert cache.check(st.sessions, token, "submit")
    assert len(calls) == 1
    assert not cache.check(st.sessions, token, "admin")  # a submit token never grants admin
    clock.now += 60
    assert cache.check(st.sessions, token, "submit")
    assert len(calls) == 2
    with st.sessions() as session:
        (info,) = list_tokens(session)
    assert info.last_used_at == int(clock.now)


def test_wrong_and_missing_tokens_are_refused(store):
    cache = TokenCache()
    for bad in ("plt_wrong", "", None, "x" * 300):
        assert not cache.check(store.sessions, bad, "submit")
        assert not cache.check(store.sessions, bad, "submit")


def test_a_revoked_token_is_refused_on_the_next_request(store, monkeypatch):
    st = store
    with st.sessions() as session, session.begin():
        admin = create_token(session, "t", "admin", now=st.clock)
        other = create_token(session, "u", "submit", now=st.clock)
    calls = _counting(monkeypatch)
    cache = TokenCache(clock=_Clock(float(st.clock)))
    assert cache.check(st.sessions, admin, "submit")  # admin grants everything
    assert cache.check(st.sessions, other, "submit")
    assert cache.check(st.sessions, other, "submit")
    with st.sessions() as session, session.begin():
        revoke_token(session, "t", now=st.clock)
    assert not cache.check(st.sessions, admin, "submit")  # another process revoked it: at once
    assert cache.check(st.sessions, other, "submit")
    assert len(calls) == 2  # only the first use of each token took the full (ORM) check
