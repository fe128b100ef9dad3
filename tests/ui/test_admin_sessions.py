"""Admin sessions that really end, revocable tokens, throttled logins, cookie settings
(issue 10, done-when 5): through the app's test client, on SQLite and PostgreSQL."""

from __future__ import annotations

import logging
import re

import pytest
from sqlalchemy import text

from ledger.services.registry import create_token, list_tokens
from ledger.services.sessions import LoginThrottle
from tests.fixtures import PREDICATE, envelope_bytes, sign
from tests.ui.conftest import close_app, make_app
from web.throttle import SharedLoginThrottle

COOKIE = "provledger_session"


@pytest.fixture
def app(store, monkeypatch):
    for name in ("PROVLEDGER_SECURE_COOKIES", "PROVLEDGER_SESSION_COOKIE_NAME", "PROVLEDGER_TRUSTED_PROXIES",
                 "PROVLEDGER_ADMIN_SESSION_SECONDS"):
        monkeypatch.delenv(name, raising=False)
    app = make_app(store, TESTING=True, WITNESSES=None)
    app.store = store  # type: ignore[attr-defined]
    yield app
    close_app(app)


def _csrf(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, page[:500]
    return found.group(1)


def _token(store, name: str, scope: str) -> str:
    with store.sessions() as session, session.begin():
        return create_token(session, name, scope, now=store.clock)


def _login(client, token: str, **kwargs):
    page = client.get("/login", **kwargs).get_data(as_text=True)
    return client.post("/login", data={"csrf_token": _csrf(page), "token": token}, **kwargs)


def _logged_in(client) -> str:
    response = client.get("/admin")
    assert response.status_code == 200, response.status_code
    return _csrf(response.get_data(as_text=True))


def _token_names(store) -> list[str]:
    with store.sessions() as session:
        return [t.name for t in list_tokens(session)]


def test_a_saved_cookie_replayed_after_logout_opens_nothing(app, store):
    client = app.test_client()
    assert _login(client, _token(store, "root", "admin")).status_code == 302
    csrf = _logged_in(client)
    saved = client.get_cookie(COOKIE).value
    assert client.post("/logout", data={"csrf_token": csrf}).status_code == 302
    assert client.get("/admin").status_code == 302

    attacker = app.test_client()
    attacker.set_cookie(COOKIE, saved)
    response = attacker.get("/admin")
    assert response.status_code == 302 and "/login" in response.headers["Location"]
    minted = attacker.post("/admin/tokens", data={"csrf_token": csrf, "name": "stolen", "scope": "admin"})
    assert minted.status_code == 302 and "/login" in minted.headers["Location"]
    assert "stolen" not in _token_names(store)
    assert "Signed in as administrator" not in attacker.get("/").get_data(as_text=True)


def test_an_expired_session_ends(app, store):
    client = app.test_client()
    _login(client, _token(store, "root", "admin"))
    _logged_in(client)
    with store.sessions() as session, session.begin():
        session.execute(text("UPDATE admin_sessions SET expires_at = created_at"))
    assert client.get("/admin").status_code == 302


def test_the_session_lifetime_setting_is_stored(store, monkeypatch):
    monkeypatch.setenv("PROVLEDGER_ADMIN_SESSION_SECONDS", "120")
    app = make_app(store, TESTING=True, WITNESSES=None)
    try:
        _login(app.test_client(), _token(store, "root", "admin"))
        with store.sessions() as session:
            assert session.execute(text("SELECT expires_at - created_at FROM admin_sessions")).scalar_one() == 120
    finally:
        close_app(app)


def test_revoking_a_token_on_the_admin_page(app, store):
    client = app.test_client()
    _login(client, _token(store, "root", "admin"))
    csrf = _logged_in(client)
    submit = _token(store, "ci", "submit")
    key = store.add_signer(allow=[PREDICATE])
    api = {"Authorization": f"Bearer {submit}", "Content-Type": "application/json"}
    assert client.post("/api/v1/entries", data=envelope_bytes(sign(key)), headers=api).status_code == 201
    page = client.get("/admin").get_data(as_text=True)
    assert "ci" in page and submit not in page
    done = client.post("/admin/tokens/revoke", data={"csrf_token": csrf, "name": "ci"})
    assert done.status_code == 200 and "revoked" in done.get_data(as_text=True)
    refused = client.post("/api/v1/entries", data=envelope_bytes(sign(key)), headers=api)
    assert refused.status_code == 401
    missing = client.post("/admin/tokens/revoke", data={"csrf_token": csrf, "name": "ci"})
    assert missing.status_code == 404


def test_revoking_the_admins_own_token_ends_its_sessions(app, store):
    client, other = app.test_client(), app.test_client()
    admin = _token(store, "root", "admin")
    _login(client, admin)
    _login(other, admin)
    csrf = _logged_in(client)
    _logged_in(other)
    client.post("/admin/tokens/revoke", data={"csrf_token": csrf, "name": "root"})
    assert other.get("/admin").status_code == 302
    assert client.get("/admin").status_code == 302
    assert _login(app.test_client(), admin).status_code == 403  # a revoked token cannot log in


def test_failed_logins_are_throttled_per_client_and_logged(app, store, caplog, monkeypatch):
    # one second on the views' clock: the first back-off (1 s) must not run out between the
    # fifth failure and the next attempt because a second boundary passed in between
    import time  # noqa: PLC0415
    from types import SimpleNamespace  # noqa: PLC0415

    from web.ui import views  # noqa: PLC0415

    frozen = float(int(time.time()))
    monkeypatch.setattr(views, "time", SimpleNamespace(time=lambda: frozen))
    admin = _token(store, "root", "admin")
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    with caplog.at_level(logging.WARNING, logger="web.ui.views"):
        for _ in range(5):
            assert client.post("/login", data={"csrf_token": _csrf(page), "token": "plt_wrong"}).status_code == 403
        throttled = client.post("/login", data={"csrf_token": _csrf(page), "token": admin})
    assert throttled.status_code == 429 and int(throttled.headers["Retry-After"]) >= 1
    assert client.get("/admin").status_code == 302  # the right token was not even checked
    messages = [r.getMessage() for r in caplog.records]
    assert sum("failed admin login from 127.0.0.1" in m for m in messages) == 5
    assert any("throttled" in m for m in messages)
    # another client is not held back by this one's failures
    elsewhere = {"environ_base": {"REMOTE_ADDR": "192.0.2.7"}}
    assert _login(app.test_client(), admin, **elsewhere).status_code == 302


@pytest.mark.parametrize("kind", [LoginThrottle, SharedLoginThrottle], ids=["in-process", "shared"])
def test_the_throttle_backs_off_exponentially_and_across_clients(kind):
    throttle = kind(client_free=3, client_cap=60, global_free=10, global_cap=30, forget=3600)
    now = 1_000
    for _ in range(3):
        assert throttle.retry_after("a", now=now) == 0
        throttle.failed("a", now=now)
    assert throttle.retry_after("a", now=now) == 1
    throttle.failed("a", now=now)
    assert throttle.retry_after("a", now=now) == 2
    for _ in range(10):
        throttle.failed("a", now=now)
    assert throttle.retry_after("a", now=now) == 60  # capped
    # 14 failures in all, 10 free: every client waits 2**4 s once the login is under attack
    assert throttle.retry_after("b", now=now) == 16
    assert throttle.retry_after("b", now=now + 16) == 0
    for _ in range(10):
        throttle.failed("d", now=now)
    assert throttle.retry_after("b", now=now) == 30  # capped
    assert throttle.retry_after("a", now=now + 3600) == 0  # forgotten
    throttle.failed("c", now=now)
    throttle.succeeded("c")
    assert throttle.retry_after("c", now=now + 100) == 0


@pytest.mark.parametrize("kind", [LoginThrottle, SharedLoginThrottle], ids=["in-process", "shared"])
def test_each_step_of_the_back_off_is_a_full_step_of_real_time(kind):
    """The clock keeps its fraction: a failure late in one second still holds the client back
    for a whole second, into the next; Retry-After is the wait rounded up to whole seconds.
    The clock is an argument (``now=``), as in the test above: nothing here is timed."""
    throttle = kind(client_free=2, client_cap=60, global_free=10**6, global_cap=30, forget=3600)
    throttle.failed("a", now=1_000.75)  # binary fractions: the arithmetic below is exact
    throttle.failed("a", now=1_000.75)
    assert throttle.retry_after("a", now=1_001.25) == 1  # 0.5 s left (whole seconds said 0)
    assert throttle.retry_after("a", now=1_001.5) == 1
    assert throttle.retry_after("a", now=1_001.75) == 0
    throttle.failed("a", now=1_001.75)  # three in, two free: 2 s
    assert throttle.retry_after("a", now=1_002.0) == 2  # 1.75 s left, rounded up
    assert throttle.retry_after("a", now=1_003.5) == 1
    assert throttle.retry_after("a", now=1_003.75) == 0


def _set_cookie(response) -> str:
    cookies = response.headers.getlist("Set-Cookie")
    assert cookies, "no cookie set"
    return cookies[-1]


def test_cookie_defaults_name_and_no_secure_over_plain_http(app, store):
    response = _login(app.test_client(), _token(store, "root", "admin"))
    cookie = _set_cookie(response)
    assert cookie.startswith(COOKIE + "=")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie


def test_cookie_name_and_secure_settings_take_effect(store, monkeypatch):
    monkeypatch.setenv("PROVLEDGER_SESSION_COOKIE_NAME", "ledger_admin")
    monkeypatch.setenv("PROVLEDGER_SECURE_COOKIES", "1")
    app = make_app(store, TESTING=True, WITNESSES=None)
    try:
        cookie = _set_cookie(_login(app.test_client(), _token(store, "root", "admin")))
        assert cookie.startswith("ledger_admin=") and "; Secure" in cookie
    finally:
        close_app(app)


@pytest.mark.parametrize("bad", [("PROVLEDGER_SECURE_COOKIES", "maybe"), ("PROVLEDGER_SESSION_COOKIE_NAME", "a b;c"),
                                 ("PROVLEDGER_TRUSTED_PROXIES", "not-an-ip")])
def test_bad_cookie_and_proxy_settings_refuse_to_start(sqlite_store, monkeypatch, bad):
    from ledger.errors import ConfigurationError  # noqa: PLC0415

    monkeypatch.setenv(*bad)
    with pytest.raises(ConfigurationError, match=bad[0]):
        make_app(sqlite_store, TESTING=True, WITNESSES=None)


def test_tls_through_a_trusted_proxy_gets_secure_cookies_and_its_client_address(store, monkeypatch, caplog):
    monkeypatch.setenv("PROVLEDGER_TRUSTED_PROXIES", "10.0.0.5, 192.168.0.0/24")
    app = make_app(store, TESTING=True, WITNESSES=None)
    try:
        admin = _token(store, "root", "admin")
        via_proxy = {"environ_base": {"REMOTE_ADDR": "10.0.0.5"},
                     "headers": {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"}}
        assert "; Secure" in _set_cookie(_login(app.test_client(), admin, **via_proxy))
        # the same headers from an untrusted address are ignored: no Secure, its own address
        forged = {"environ_base": {"REMOTE_ADDR": "198.51.100.1"},
                  "headers": {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"}}
        client = app.test_client()
        page = client.get("/login", **forged).get_data(as_text=True)
        with caplog.at_level(logging.WARNING, logger="web.ui.views"):
            client.post("/login", data={"csrf_token": _csrf(page), "token": "plt_wrong"}, **forged)
        assert any("from 198.51.100.1" in r.getMessage() for r in caplog.records)
        cookie = _set_cookie(app.test_client().get("/login", **forged))
        assert "Secure" not in cookie
    finally:
        close_app(app)


def test_the_api_never_opens_or_sets_the_session_cookie(app, store):
    """API requests get Flask's null session: an admin's cookie sent along grants nothing there
    (bearer tokens only), no cookie is set, and the screens' sessions are untouched by it."""
    client = app.test_client()
    assert _login(client, _token(store, "root", "admin")).status_code == 302
    with app.test_request_context("/api/v1/entries", method="POST"):
        from flask import session  # noqa: PLC0415

        assert session.__class__.__name__ == "NullSession"
        with pytest.raises(RuntimeError):
            session["csrf"] = "x"
    submit = _token(store, "ci", "submit")
    body = envelope_bytes(sign(store.add_signer()))
    no_token = client.post("/api/v1/entries", data=body, headers={"Content-Type": "application/json"})
    assert no_token.status_code == 401  # the admin's cookie is no credential for the API
    accepted = client.post("/api/v1/entries", data=body, headers={"Content-Type": "application/json",
                                                                  "Authorization": f"Bearer {submit}"})
    assert accepted.status_code in (200, 201), accepted.get_data(as_text=True)
    assert "Set-Cookie" not in accepted.headers and "Set-Cookie" not in no_token.headers
    assert client.get("/admin").status_code == 200  # the screen's session still holds
