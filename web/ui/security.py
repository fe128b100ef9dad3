"""The UI's defences: the session secret, CSRF tokens, security headers, and error pages that
never show a stack trace.

- Content-Security-Policy: everything from this origin only, no inline script or style, no
  framing. Templates therefore carry no ``style=`` and no inline ``<script>``.
- CSRF: a random token per session, in a hidden field of every POST form, compared in constant
  time before any UI POST handler runs.
- The session cookie (PROVLEDGER_SESSION_COOKIE_NAME; ``Secure`` with PROVLEDGER_SECURE_COOKIES=1
  or over TLS through a trusted proxy) holds only a server-side session id (web.ui.views, admin).
- The session cookie is signed with PROVLEDGER_SECRET_KEY, or with a key generated once and kept
  (mode 0600) in PROVLEDGER_HOME/secret.key so that every server process shares it.
"""

from __future__ import annotations

import hmac
import logging
import os
import re
import secrets
from pathlib import Path

from collections.abc import Mapping

from flask import Flask, Request, Response, has_request_context, request, session
from flask.sessions import SecureCookieSessionInterface, SessionMixin

from ledger.config import create_private_file, env_int
from ledger.errors import ConfigurationError, MalformedError
from ledger.services.sessions import DEFAULT_SESSION_SECONDS

__all__ = [
    "CONTENT_SECURITY_POLICY",
    "CsrfError",
    "check_csrf",
    "csrf_token",
    "load_secret_key",
    "security_headers",
]

log = logging.getLogger(__name__)

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)

SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}

SECRET_KEY_FILE = "secret.key"


class CsrfError(MalformedError):
    """A POST form without this session's CSRF token (400)."""


def load_secret_key(home: Path, environ: os._Environ[str] | dict[str, str] | None = None) -> str:
    """PROVLEDGER_SECRET_KEY, or the key in ``home``/secret.key (created 0600 if absent)."""
    env = os.environ if environ is None else environ
    if env.get("PROVLEDGER_SECRET_KEY"):
        return env["PROVLEDGER_SECRET_KEY"]
    path = home / SECRET_KEY_FILE
    if not path.exists():
        # Every serve worker starts here at once: the file appears whole or not at all.
        try:
            home.mkdir(parents=True, exist_ok=True, mode=0o700)
            create_private_file(path, (secrets.token_hex(32) + "\n").encode("ascii"))
        except OSError as exc:
            # A read-only home: sessions (admin logins) last as long as this process.
            log.warning("cannot create %s (%s); admin sessions will not survive a restart", path, exc)
            return secrets.token_hex(32)
    key = path.read_text(encoding="ascii").strip()
    if len(key) < 32:
        raise RuntimeError(f"the session secret in {path} is too short; delete it to make a new one")
    return key


def csrf_token() -> str:
    """This session's CSRF token (made on first use)."""
    token = session.get("csrf")
    if not isinstance(token, str):
        token = session["csrf"] = secrets.token_urlsafe(32)
    return token


def check_csrf() -> None:
    """Refuse a state-changing request whose form lacks this session's CSRF token."""
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    expected = session.get("csrf")
    given = request.form.get("csrf_token", "")
    if not isinstance(expected, str) or not hmac.compare_digest(expected.encode(), given.encode()):
        raise CsrfError("the form expired or did not come from this site (CSRF check failed); reload the page and try again")


def security_headers(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if request.blueprint == "ui" and not request.path.startswith("/ui/static/"):
        # Pages may show an admin's one-time token or the signer list: never cache them.
        response.headers.setdefault("Cache-Control", "no-store")
    return response


DEFAULT_COOKIE_NAME = "provledger_session"
_API_PREFIX = "/api/"
_COOKIE_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}")
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("", "0", "false", "no", "off")


def env_flag(env: Mapping[str, str], name: str) -> bool:
    value = env.get(name, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigurationError(f"{name} must be 1 or 0, not {value!r}")


class _SessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie session, with ``Secure`` also when this request came over TLS
    (through a trusted proxy: ``web.proxy``). The API authenticates by bearer token and never
    reads or writes a session: its requests get Flask's null session (nothing decoded, no
    cookie set; writing to it raises), which spares every submission the cookie's signature."""

    def open_session(self, app: Flask, req: Request) -> SessionMixin | None:
        if req.path.startswith(_API_PREFIX):
            return self.make_null_session(app)
        return super().open_session(app, req)

    def get_cookie_secure(self, app: Flask) -> bool:
        return bool(app.config["SESSION_COOKIE_SECURE"]) or (has_request_context() and request.is_secure)


def configure(app: Flask, home: Path, environ: Mapping[str, str] | None = None) -> None:
    env = os.environ if environ is None else environ
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = load_secret_key(home)
    app.config.setdefault("SESSION_COOKIE_HTTPONLY", True)
    app.config["SESSION_COOKIE_SAMESITE"] = "Strict"
    # Flask's default config already names the cookie "session": a setdefault never applied.
    name = env.get("PROVLEDGER_SESSION_COOKIE_NAME") or (
        app.config["SESSION_COOKIE_NAME"] if app.config.get("SESSION_COOKIE_NAME") not in (None, "session") else DEFAULT_COOKIE_NAME
    )
    if not _COOKIE_NAME.fullmatch(name):
        raise ConfigurationError(f"PROVLEDGER_SESSION_COOKIE_NAME {name!r} is not a cookie name (1-64 token characters)")
    app.config["SESSION_COOKIE_NAME"] = name
    if env_flag(env, "PROVLEDGER_SECURE_COOKIES"):
        app.config["SESSION_COOKIE_SECURE"] = True
    if env.get("PROVLEDGER_ADMIN_SESSION_SECONDS", "").strip():
        app.config["ADMIN_SESSION_SECONDS"] = env_int("PROVLEDGER_ADMIN_SESSION_SECONDS", DEFAULT_SESSION_SECONDS, 60, 30 * 86400, env)
    app.config.setdefault("ADMIN_SESSION_SECONDS", DEFAULT_SESSION_SECONDS)
    app.session_interface = _SessionInterface()
    app.after_request(security_headers)
