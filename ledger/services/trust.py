"""The trust state as the store holds it: the root of trust, signer keys, their grants, thresholds.

The tables are a materialised view of the key-event entries (``ledger.trust.policy``):
``ledger.services.policy`` writes them in the same transaction as the entries, and ``audit``
recomputes them. Here they are read, for judging submissions (``load_keys``) and for listing.

Keyless identities (``register-identity``) share the ``trust_keys`` table with keys (algorithm
``sigstore-identity``, the identity's JSON in place of a SPKI). A registry keeps them apart:
``registry[key_id]`` holds keys only, ``registry.identities`` the identities, and
``registry.state()`` both (judging treats them alike).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field

from functools import lru_cache
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from ledger.db.models import TrustKey, TrustRoot, TrustThreshold
from ledger.records.keys import PublicKey, public_key_from_der
from ledger.trust.policy import IDENTITY_ALGORITHM, Grant, KeyState, TrustState
from ledger.trust.predicates import KEY_EVENT

__all__ = [
    "KeyRow",
    "RegisteredKey",
    "TrustRegistry",
    "TrustRows",
    "key_rows",
    "key_state_of",
    "load_keys",
    "load_root",
    "load_state",
    "registry_from_rows",
    "row_of",
]


@dataclass(frozen=True)
class RegisteredKey:
    """A signer key and its state (grants, revocation, rotation)."""

    key: PublicKey
    state: KeyState

    @property
    def name(self) -> str:
        return self.state.principal

    @property
    def allow(self) -> tuple[str, ...]:
        return tuple(p for g in self.state.grants for p in g.predicate_types)


class TrustRegistry(dict[str, RegisteredKey]):
    """Registered keys by key id (those loaded), plus the root of trust, the thresholds and the
    keyless identities (always all of them: there are few, and a bundle names none by id)."""

    def __init__(
        self,
        keys: dict[str, RegisteredKey],
        root: PublicKey | None,
        thresholds: dict[str, tuple[int, int]],
        identities: dict[str, KeyState] | None = None,
    ) -> None:
        super().__init__(keys)
        self.root = root
        self.thresholds = thresholds
        self.identities: dict[str, KeyState] = dict(identities or {})
        self._state: TrustState | None = None

    def state(self) -> TrustState:
        """The loaded keys as a (partial) TrustState; built once (treat it as read-only)."""
        if self._state is None:
            self._state = TrustState(
                root_key_id=self.root.key_id if self.root else None,
                keys={**self.identities, **{k: r.state for k, r in self.items()}},
                thresholds=dict(self.thresholds),
            )
        return self._state


@dataclass(frozen=True)
class TrustRows:
    """The whole trust state as plain, picklable values (for ``ledger.services.bulk``'s pool)."""

    root: bytes | None
    keys: tuple[KeyState, ...] = ()
    thresholds: tuple[tuple[str, int, int], ...] = field(default_factory=tuple)

    def __iter__(self):  # type: ignore[no-untyped-def] - iterable like the old list of rows
        return iter(self.keys)


#: kept for ``ledger.services.bulk``: what ``key_rows`` returns
KeyRow = TrustRows


def key_state_of(row: TrustKey) -> KeyState:
    return KeyState(
        key_id=row.key_id,
        principal=row.principal,
        algorithm=row.algorithm,
        public_key=bytes(row.public_key),
        grants=tuple(Grant.from_json(g) for g in json.loads(row.grants)),
        registered_index=row.registered_index,
        registered_at=row.registered_at,
        last_event_index=row.last_event_index,
        revoked_index=row.revoked_index,
        revoked_at=row.revoked_at,
        compromised_since=row.compromised_since,
        replaced_by=row.replaced_by,
        retired_at=row.retired_at,
        replaces=row.replaces,
    )


def row_of(state: KeyState, row: TrustKey | None = None) -> TrustKey:
    """Write a key state into a (new or existing) row."""
    row = row if row is not None else TrustKey(key_id=state.key_id)
    row.principal = state.principal
    row.algorithm = state.algorithm
    row.public_key = state.public_key
    row.grants = json.dumps([g.to_json() for g in state.grants], sort_keys=True)
    row.registered_index = state.registered_index
    row.registered_at = state.registered_at
    row.last_event_index = state.last_event_index
    row.revoked_index = state.revoked_index
    row.revoked_at = state.revoked_at
    row.compromised_since = state.compromised_since
    row.replaced_by = state.replaced_by
    row.retired_at = state.retired_at
    row.replaces = state.replaces
    return row


@lru_cache(maxsize=4096)
def _public_key(der: bytes) -> PublicKey:
    return public_key_from_der(der)


def load_root(session: Session) -> PublicKey | None:
    row = session.get(TrustRoot, 1)
    return _public_key(bytes(row.public_key)) if row is not None else None


def _thresholds(session: Session) -> dict[str, tuple[int, int]]:
    return {p: (n, i) for p, n, i in session.execute(select(TrustThreshold.pattern, TrustThreshold.threshold, TrustThreshold.set_index))}


#: (database URL) → ((root key id, last key-event index), the whole registry): every key event
#: moves the last index, so one indexed query per call tells whether the registry is current.
_CACHE: dict[str, tuple[tuple[Any, ...], TrustRegistry]] = {}
_EPOCH = text(
    "SELECT (SELECT key_id FROM trust_root WHERE id = 1), "
    "(SELECT max(idx) FROM entries WHERE predicate_type = :key_event)"
)


def _split(states: Iterable[KeyState]) -> tuple[dict[str, RegisteredKey], dict[str, KeyState]]:
    """Keys (with their loaded public key) and identities, apart."""
    keys: dict[str, RegisteredKey] = {}
    identities: dict[str, KeyState] = {}
    for state in states:
        if state.algorithm == IDENTITY_ALGORITHM:
            identities[state.key_id] = state
        else:
            keys[state.key_id] = RegisteredKey(_public_key(state.public_key), state)
    return keys, identities


def _load_all(session: Session) -> TrustRegistry:
    keys, identities = _split(key_state_of(row) for row in session.execute(select(TrustKey)).scalars())
    return TrustRegistry(keys, load_root(session), _thresholds(session), identities)


def load_keys(session: Session, key_ids: Iterable[str] | None = None) -> TrustRegistry:
    """Registered keys by key id (those named, or all when ``key_ids`` is None), with the root
    of trust and the thresholds. Cached per process until the next key event."""
    epoch = tuple(session.execute(_EPOCH, {"key_event": KEY_EVENT}).one())
    url = session.get_bind().url.render_as_string(hide_password=False)
    cached = _CACHE.get(url)
    if cached is not None and cached[0] == epoch:
        registry = cached[1]
    else:
        registry = _load_all(session)
        _CACHE[url] = (epoch, registry)
    if key_ids is None:
        return registry
    wanted = {k: registry[k] for k in set(key_ids) if k in registry}
    return TrustRegistry(wanted, registry.root, registry.thresholds, registry.identities)


def load_state(session: Session) -> TrustState:
    """The whole materialised trust state (read from the tables, never cached)."""
    return _load_all(session).state()


def key_rows(session: Session) -> TrustRows:
    """The whole trust state as plain values, to hand to other processes."""
    root = session.get(TrustRoot, 1)
    keys = tuple(key_state_of(r) for r in session.execute(select(TrustKey).order_by(TrustKey.key_id)).scalars())
    return TrustRows(
        root=bytes(root.public_key) if root is not None else None,
        keys=keys,
        thresholds=tuple((p, n, i) for p, (n, i) in sorted(_thresholds(session).items())),
    )


def registry_from_rows(rows: TrustRows) -> TrustRegistry:
    keys, identities = _split(rows.keys)
    return TrustRegistry(
        keys,
        public_key_from_der(rows.root) if rows.root is not None else None,
        {p: (n, i) for p, n, i in rows.thresholds},
        identities,
    )
