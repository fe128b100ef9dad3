"""Admin sessions kept on the server, and the throttle on failed admin logins.

A login opens a row in ``admin_sessions``: the browser's signed cookie holds a random session
id, the store holds only its SHA-256, the admin token it was opened with and its expiry. Every
request looks the row up again, so logout, expiry and revoking the token end the session at
once — a cookie saved before them and replayed after gets nothing.
"""

from __future__ import annotations

import hashlib
import logging
import math
import secrets
import threading
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ledger.db.models import AdminSession, ApiToken

__all__ = [
    "DEFAULT_SESSION_SECONDS",
    "AdminLogin",
    "FailureRecord",
    "LoginThrottle",
    "admin_of_session",
    "end_session",
    "end_sessions_of_token",
    "open_session",
]

log = logging.getLogger(__name__)

#: How long an admin session lasts from login (PROVLEDGER_ADMIN_SESSION_SECONDS).
DEFAULT_SESSION_SECONDS = 8 * 3600

#: A session id is 32 random bytes, URL-safe base64 (43 characters).
_SESSION_ID_CHARS = 43


def _hash(session_id: str) -> bytes:
    return hashlib.sha256(session_id.encode("ascii", "replace")).digest()


@dataclass(frozen=True)
class AdminLogin:
    """Who an admin session belongs to."""

    token_id: int
    token_name: str
    expires_at: int


def open_session(session: Session, token_id: int, *, now: int, lifetime: int = DEFAULT_SESSION_SECONDS) -> str:
    """Store a new session for admin token ``token_id``; returns its id (the caller commits)."""
    if lifetime <= 0:
        raise ValueError("a session lifetime must be positive")
    session_id = secrets.token_urlsafe(32)
    session.add(AdminSession(id_hash=_hash(session_id), token_id=token_id, created_at=now, expires_at=now + lifetime))
    session.flush()
    return session_id


def admin_of_session(session: Session, session_id: object, *, now: int) -> AdminLogin | None:
    """The admin behind a live session: not ended, not expired, its token admin and not revoked."""
    if not isinstance(session_id, str) or len(session_id) != _SESSION_ID_CHARS:
        return None
    row = session.execute(
        select(AdminSession.token_id, AdminSession.expires_at, ApiToken.name)
        .join(ApiToken, ApiToken.id == AdminSession.token_id)
        .where(
            AdminSession.id_hash == _hash(session_id),
            AdminSession.ended_at.is_(None),
            AdminSession.expires_at > now,
            ApiToken.revoked_at.is_(None),
            ApiToken.scope == "admin",
        )
    ).first()
    return AdminLogin(int(row[0]), str(row[2]), int(row[1])) if row is not None else None


def end_session(session: Session, session_id: object, *, now: int) -> bool:
    """Logout: end the session (the caller commits). False when there was no live one."""
    if not isinstance(session_id, str) or len(session_id) != _SESSION_ID_CHARS:
        return False
    result = session.execute(
        update(AdminSession)
        .where(AdminSession.id_hash == _hash(session_id), AdminSession.ended_at.is_(None))
        .values(ended_at=now)
    )
    return bool(result.rowcount)


def end_sessions_of_token(session: Session, token_ids: list[int], *, now: int) -> int:
    """End every live session opened with these tokens (a revoked token's logins)."""
    if not token_ids:
        return 0
    result = session.execute(
        update(AdminSession)
        .where(AdminSession.token_id.in_(token_ids), AdminSession.ended_at.is_(None))
        .values(ended_at=now)
    )
    return int(result.rowcount or 0)


@dataclass
class FailureRecord:
    """A key's consecutive failed logins and the time of the last one (``LoginThrottle``), in
    seconds since the epoch with their fraction: a wait of 1 s is a whole second of real time."""

    failures: int = 0
    last_failure: float = 0.0


@dataclass
class LoginThrottle:
    """Exponential back-off on failed logins, per client and across all clients.

    A login presents only a secret token — there is no account name to key on — so the second
    key is the admin login itself: after ``global_free`` failures from anywhere, every client
    waits too (capped at ``global_cap`` seconds so that an attacker cannot lock the admin out
    for long). After ``client_free`` failures a client waits 1, 2, 4 … seconds (at most
    ``client_cap``) before its next attempt is even checked. Failures older than ``forget``
    seconds are forgotten; a success clears the client's record.

    The records live in this process's memory; a subclass that overrides ``_load``, ``_store``,
    ``_delete`` and ``_lock`` keeps them elsewhere (``serve``'s worker processes share one table:
    ``web.throttle``), under the same rules.
    """

    client_free: int = 5
    client_cap: int = 900
    global_free: int = 50
    global_cap: int = 60
    forget: int = 3600
    _records: dict[str, FailureRecord] = field(default_factory=dict)
    _lock: Any = field(default_factory=threading.Lock)

    GLOBAL = "*"

    # -- where the records live (called under ``_lock``)

    def _load(self, key: str) -> FailureRecord | None:
        return self._records.get(key)

    def _store(self, key: str, record: FailureRecord) -> None:
        self._records[key] = record
        if len(self._records) > 100_000:  # many clients: drop the oldest records
            for old, _ in sorted(self._records.items(), key=lambda kv: kv[1].last_failure)[:50_000]:
                if old != self.GLOBAL:
                    del self._records[old]
            self._records[key] = record

    def _delete(self, key: str) -> None:
        self._records.pop(key, None)

    # -- the rules

    def _wait(self, key: str, now: float) -> float:
        record = self._load(key)
        if record is None:
            return 0
        if now - record.last_failure >= self.forget:
            self._delete(key)
            return 0
        free, cap = (self.global_free, self.global_cap) if key == self.GLOBAL else (self.client_free, self.client_cap)
        if record.failures < free:
            return 0
        delay = min(2 ** min(record.failures - free, 30), cap)
        return max(record.last_failure + delay - now, 0)

    def retry_after(self, client: str, *, now: float) -> int:
        """Whole seconds, rounded up, this client must wait before its next login attempt is
        checked (0: go ahead). ``now`` carries its fraction (``time.time()``): with whole seconds
        the first step of the back-off would be anything from 0 to 1 s of real time."""
        with self._lock:
            return math.ceil(max(self._wait("client:" + client, now), self._wait(self.GLOBAL, now)))

    def failed(self, client: str, *, now: float) -> int:
        """Record a failed login; returns the client's consecutive failures."""
        with self._lock:
            failures = 0
            for key in ("client:" + client, self.GLOBAL):
                record = self._load(key) or FailureRecord()
                if now - record.last_failure >= self.forget:
                    record.failures = 0
                record.failures += 1
                record.last_failure = now
                self._store(key, record)
                failures = failures or record.failures
            return failures

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._delete("client:" + client)
