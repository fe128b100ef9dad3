"""The one vocabulary of keys and grants: ``active``, ``stale``, ``expired``, ``revoked``,
``rotated`` (and ``not yet valid`` for a grant whose window has not opened). ``keys list``,
``GET /api/v1/signers``, the signers page and an entry's signer table all say these words,
computed here once from the fold's key state and a time.
"""

from __future__ import annotations

from ledger.trust.policy import Grant, KeyState

__all__ = ["STATES", "grant_state", "key_state"]

STATES = ("active", "stale", "expired", "revoked", "rotated", "not yet valid")


def grant_state(grant: Grant, as_of: int, key_status: str = "active") -> str:
    """A grant's word as of ``as_of``: its key's ``revoked``/``rotated`` first, then ``expired``
    (past not-after), ``not yet valid``, ``stale`` (past review-by), else ``active``."""
    if key_status in ("revoked", "rotated"):
        return key_status
    if grant.not_after is not None and as_of > grant.not_after:
        return "expired"
    if grant.not_before is not None and as_of < grant.not_before:
        return "not yet valid"
    return "stale" if grant.stale_at(as_of) else "active"


def key_state(key: KeyState, as_of: int) -> str:
    """A key's word as of ``as_of``: ``revoked``, ``rotated``, ``expired`` (every grant past its
    not-after), ``stale`` (no grant active, one past its review-by), else ``active``."""
    if key.status != "active":
        return key.status
    words = [grant_state(g, as_of) for g in key.grants]
    if "active" in words or not words:
        return "active"
    if all(w == "expired" for w in words):
        return "expired"
    return "stale" if "stale" in words else words[0]
