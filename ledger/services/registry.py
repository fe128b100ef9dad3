"""Signer keys and API tokens: registration, revocation, authentication."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Sequence

from sqlalchemy.orm import Session

from ledger.db import store
from ledger.db.models import ApiToken, SignerKey
from ledger.errors import ConflictError, MalformedError, NotFoundError
from ledger.keys import PublicKey

__all__ = ["TOKEN_SCOPES", "add_key", "authenticate", "create_token", "revoke_key"]

TOKEN_SCOPES = ("submit", "admin")


def add_key(session: Session, name: str, key: PublicKey, allow: Sequence[str], *, now: int) -> SignerKey:
    """Register a signer key with the predicate types it may sign. No grant, no trust."""
    if not name.strip():
        raise MalformedError("a key needs a non-empty --name")
    patterns = [p for p in allow if p.strip()]
    if not patterns:
        raise MalformedError("a key needs at least one --allow predicate-type pattern (fail closed)")
    existing = store.get_signer_key(session, key.key_id)
    if existing is not None:
        raise ConflictError(f"key {key.key_id} is already registered as {existing.name!r}")
    row = SignerKey(
        key_id=key.key_id,
        name=name,
        algorithm=key.algorithm,
        public_key=key.spki_der,
        allow=json.dumps(patterns),
        created_at=now,
        revoked_at=None,
    )
    session.add(row)
    session.flush()
    return row


def revoke_key(session: Session, key_id: str, *, now: int, compromised_since: int | None = None) -> SignerKey:
    row = store.get_signer_key(session, key_id)
    if row is None:
        raise NotFoundError(f"no key {key_id} is registered")
    row.revoked_at = compromised_since if compromised_since is not None else now
    session.flush()
    return row


def _token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def create_token(session: Session, name: str, scope: str, *, now: int) -> str:
    """A new bearer token; only its SHA-256 is stored, so it is shown once."""
    if scope not in TOKEN_SCOPES:
        raise MalformedError(f"token scope must be one of {', '.join(TOKEN_SCOPES)}")
    token = "plt_" + secrets.token_urlsafe(32)
    store.add_token(session, name, scope, _token_hash(token), now)
    return token


def authenticate(session: Session, token: str | None, scope: str) -> ApiToken | None:
    """The token's row if it exists and grants ``scope`` (admin grants everything), else None."""
    if not token:
        return None
    row = store.token_by_hash(session, _token_hash(token))
    if row is None or not hmac.compare_digest(row.token_hash, _token_hash(token)):
        return None
    if row.scope != scope and row.scope != "admin":
        return None
    return row
