"""Which registered keys may sign which records (issue 2: a predicate-type allow-list).

Fail closed: a key with no grant, a revoked key, or a predicate type outside the key's
allow-list is not trusted.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase

from sqlalchemy import select
from sqlalchemy.orm import Session

from ledger.db.models import SignerKey
from ledger.keys import PublicKey, public_key_from_der

__all__ = ["KeyRow", "RegisteredKey", "key_rows", "load_keys", "registry_from_rows"]


@dataclass(frozen=True)
class RegisteredKey:
    key: PublicKey
    name: str
    allow: tuple[str, ...]
    revoked_at: int | None

    def allows(self, predicate_type: str) -> bool:
        return any(fnmatchcase(predicate_type, pattern) for pattern in self.allow)

    def active_at(self, now: int) -> bool:
        return self.revoked_at is None or now < self.revoked_at


#: A registered key as plain values (picklable): key_id, name, spki_der, allow, revoked_at.
KeyRow = tuple[str, str, bytes, tuple[str, ...], int | None]


def _registered(row: SignerKey) -> RegisteredKey:
    return RegisteredKey(
        key=public_key_from_der(row.public_key),
        name=row.name,
        allow=tuple(json.loads(row.allow)),
        revoked_at=row.revoked_at,
    )


def key_rows(session: Session) -> list[KeyRow]:
    """Every registered key as plain values, to hand to other processes."""
    return [
        (r.key_id, r.name, r.public_key, tuple(json.loads(r.allow)), r.revoked_at)
        for r in session.execute(select(SignerKey)).scalars()
    ]


def registry_from_rows(rows: Iterable[KeyRow]) -> dict[str, RegisteredKey]:
    return {
        key_id: RegisteredKey(key=public_key_from_der(der), name=name, allow=allow, revoked_at=revoked_at)
        for key_id, name, der, allow, revoked_at in rows
    }


def load_keys(session: Session, key_ids: Iterable[str] | None = None) -> dict[str, RegisteredKey]:
    """Registered keys by key id: those named, or all of them when ``key_ids`` is None."""
    q = select(SignerKey)
    if key_ids is not None:
        ids = sorted(set(key_ids))
        if not ids:
            return {}
        q = q.where(SignerKey.key_id.in_(ids))
    return {row.key_id: _registered(row) for row in session.execute(q).scalars()}
