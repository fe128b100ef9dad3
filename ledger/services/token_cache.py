"""A short-lived cache of bearer-token checks, so that a busy API does not query the token table
on every request.

Only successful checks are cached, keyed by the token's SHA-256 (never the token itself), for
``ttl`` seconds (default 1 s): a token created a moment ago works at once, a wrong token is
always looked up, and a revoked (or deleted) token stops working within ``ttl`` in every
process, at once in the one that revoked it (``clear``/``forget``).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["TokenCache"]


class TokenCache:
    def __init__(self, *, ttl: float = 1.0, max_entries: int = 4096, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        #: token SHA-256 -> (scope of the token row, monotonic expiry)
        self._valid: dict[bytes, tuple[str, float]] = {}

    def check(self, token: str | None, scope: str, lookup: Callable[[], Any]) -> bool:
        """Whether ``token`` grants ``scope`` (admin grants everything). ``lookup`` does the real
        check (e.g. ``registry.use_token``) and returns something with a ``scope`` or None; it
        is called only on a miss, so a cached hit touches no database."""
        if not token:
            return False
        digest = hashlib.sha256(token.encode("utf-8")).digest()
        now = self._clock()
        with self._lock:
            hit = self._valid.get(digest)
        if hit is not None and hit[1] > now:
            return hit[0] == scope or hit[0] == "admin"
        info = lookup()
        if info is None:
            self.forget_digest(digest)
            return False
        with self._lock:
            if len(self._valid) >= self.max_entries:
                self._valid = {d: v for d, v in self._valid.items() if v[1] > now}
                if len(self._valid) >= self.max_entries:
                    self._valid.clear()
            self._valid[digest] = (info.scope, now + self.ttl)
        return True

    def forget(self, token: str) -> None:
        """Drop a token at once (call it when revoking a token in this process)."""
        self.forget_digest(hashlib.sha256(token.encode("utf-8")).digest())

    def forget_digest(self, digest: bytes) -> None:
        with self._lock:
            self._valid.pop(digest, None)

    def clear(self) -> None:
        with self._lock:
            self._valid.clear()
