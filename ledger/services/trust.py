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
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

from functools import lru_cache
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from ledger.db import store
from ledger.db.engine import pooled_reads
from ledger.db.models import Entry, TrustKey, TrustRoot, TrustThreshold
from ledger.errors import LedgerError
from ledger.records.keys import PublicKey, public_key_from_der
from ledger.trust.states import grant_state, key_state
from ledger.trust.policy import IDENTITY_ALGORITHM, TEE_ROOT_ALGORITHM, Grant, KeyState, TrustState
from ledger.trust.fold import TrustFold
from ledger.trust.predicates import KEY_EVENT

__all__ = [
    "trust_version",
    "KeyRow",
    "RegisteredKey",
    "TrustRegistry",
    "TrustRows",
    "key_rows",
    "key_state_of",
    "load_keys",
    "load_root",
    "load_state",
    "load_table_state",
    "signer_listing",
    "trust_fold",
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
        #: the trust fold this registry was read from (None: built from plain rows)
        self.fold: TrustFold | None = None

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


#: (database URL) → the trust fold of that ledger, advanced by the key events appended since
#: (``trust_fold``), and the registry built from it
_FOLDS: dict[str, tuple[TrustFold, TrustRegistry | None]] = {}
_FOLD_LOCK = threading.Lock()
#: (database URL) → the chain hash of the last entry its cached fold folded
_TIPS: dict[str, bytes | None] = {}
_KEY_EVENTS_AFTER = text(
    "SELECT idx, data FROM entries WHERE predicate_type = :key_event AND idx >= :start AND idx < :size ORDER BY idx"
)


def _split(states: Iterable[KeyState]) -> tuple[dict[str, RegisteredKey], dict[str, KeyState]]:
    """Keys (with their loaded public key) and identities, apart (TEE roots are neither)."""
    keys: dict[str, RegisteredKey] = {}
    identities: dict[str, KeyState] = {}
    for state in states:
        if state.algorithm == IDENTITY_ALGORITHM:
            identities[state.key_id] = state
        elif not state.is_tee_root:
            keys[state.key_id] = RegisteredKey(_public_key(state.public_key), state)
    return keys, identities


def _chain_at(session: Session, size: int) -> bytes | None:
    """The chain hash of entry ``size - 1``: it commits to every entry before it."""
    if size == 0:
        return None
    value = session.execute(select(Entry.chain_hash).where(Entry.idx == size - 1)).scalar_one_or_none()
    return bytes(value) if value is not None else None


def trust_fold(session: Session) -> TrustFold:
    """The ledger's trust fold as of its committed size (``ledger.trust.fold``).

    Kept per process and advanced by the key-event entries appended since (found through the
    ``predicate_type`` index, which ``audit`` re-derives from the leaf bytes): O(new entries), no
    replay per request. A cached fold is used only if the store still holds the prefix it folded
    (the chain hash of its last entry matches: a database may be dropped and re-created). Treat
    the returned fold as read-only: advancing copies it.
    """
    url = session.get_bind().url.render_as_string(hide_password=False)
    root = session.get(TrustRoot, 1)
    root_der = bytes(root.public_key) if root is not None else None
    size = store.current_size(session)
    with _FOLD_LOCK:
        cached = _FOLDS.get(url)
        fold = cached[0] if cached is not None else None
        if (
            fold is None or fold.root_key != root_der or size < fold.size
            or _chain_at(session, fold.size) != _TIPS.get(url)
        ):
            fold, cached = TrustFold(root_der), None
        if fold.size == size and cached is not None:
            return fold
        rows = session.execute(_KEY_EVENTS_AFTER, {"key_event": KEY_EVENT, "start": fold.size, "size": size}).all()
        if rows:
            fold = fold.copy()
            for index, data in rows:
                fold.skip_to(index, fold.last_time)
                try:
                    fold.feed(index, bytes(data))
                except LedgerError:
                    continue  # recorded in fold.problems; audit reports it
        else:
            fold = fold.copy() if cached is not None else fold
        fold.skip_to(size, fold.last_time)
        registry = cached[1] if cached is not None and not rows else None
        _FOLDS[url] = (fold, registry)
        _TIPS[url] = _chain_at(session, size)
        return fold


#: (database URL) → (``_trust_version`` when read, the registry built from the fold then)
_REGISTRIES: dict[Any, tuple[tuple[Any, ...], TrustRegistry]] = {}
_LAST_KEY_EVENT = (
    "SELECT idx, leaf_hash FROM entries WHERE predicate_type = {mark} ORDER BY idx DESC LIMIT 1"
)


def _trust_version(session: Session) -> tuple[Any, ...]:
    """What the trust state is a function of, in two indexed reads: the root of trust, and the
    index and leaf hash of the last key-event entry (the fold folds only key events, and each
    commits to its predecessor by ``prev``, so the last one's leaf hash commits to the whole key
    history). Every process sees another's key event at its next request. Read on a pooled DBAPI
    connection (a tenth of the cost of a session's statement), so it may be newer than the
    session's snapshot: a registry is cached under the version of the fold it was built from
    (``_fold_version``), never under this one."""
    root, last = pooled_reads(session.get_bind(), [  # type: ignore[arg-type]
        ("SELECT public_key FROM trust_root WHERE id = 1", ()),
        (_LAST_KEY_EVENT, (KEY_EVENT,)),
    ])
    return (
        bytes(root[0]) if root is not None else None,
        None if last is None else int(last[0]),
        None if last is None else bytes(last[1]),
    )


def trust_version(session: Session) -> tuple[Any, ...]:
    """What the trust state is a function of (the root, and the last key event's index and leaf
    hash): equal versions, equal trust states. See ``_trust_version``."""
    return _trust_version(session)


def _registry_of(session: Session) -> TrustRegistry:
    """The registry of the whole trust state, rebuilt only when ``_trust_version`` changed (the
    submission path's per-request read: no replay, no fold query while no key event lands)."""
    key = session.get_bind().url
    version = _trust_version(session)
    with _FOLD_LOCK:
        hit = _REGISTRIES.get(key)
    if hit is not None and hit[0] == version:
        return hit[1]
    registry = _registry_of_fold(session)
    # cached under what it was built from: when the session's snapshot predates a key event the
    # pooled read already saw, the versions differ and the next request builds it again
    with _FOLD_LOCK:
        _REGISTRIES[key] = (_fold_version(registry.fold), registry)
    return registry


def _fold_version(fold: TrustFold | None) -> tuple[Any, ...]:
    """``_trust_version`` of the state ``fold`` holds."""
    if fold is None:
        return (None, None, None)
    last = fold.last_key_event
    return (fold.root_key, None, None) if last is None else (fold.root_key, last[0], bytes.fromhex(last[1]))


def _registry_of_fold(session: Session) -> TrustRegistry:
    fold = trust_fold(session)
    url = session.get_bind().url.render_as_string(hide_password=False)
    with _FOLD_LOCK:
        cached = _FOLDS.get(url)
        if cached is not None and cached[0] is fold and cached[1] is not None:
            return cached[1]
    state = fold.state
    keys, identities = _split(state.keys.values())
    root = _public_key(fold.root_key) if fold.root_key is not None else None
    registry = TrustRegistry(keys, root, dict(state.thresholds), identities)
    registry._state = state
    registry.fold = fold
    with _FOLD_LOCK:
        cached = _FOLDS.get(url)
        if cached is not None and cached[0] is fold:
            _FOLDS[url] = (fold, registry)
    return registry


def load_keys(session: Session, key_ids: Iterable[str] | None = None) -> TrustRegistry:
    """Registered keys by key id (those named, or all when ``key_ids`` is None), with the root
    of trust and the thresholds: the trust fold's state (``trust_fold``)."""
    registry = _registry_of(session)
    if key_ids is None:
        return registry
    wanted = {k: registry[k] for k in set(key_ids) if k in registry}
    out = TrustRegistry(wanted, registry.root, registry.thresholds, registry.identities)
    out._state = registry.state()
    out.fold = registry.fold
    return out


def load_state(session: Session) -> TrustState:
    """The whole trust state as the log's key events build it (the fold's; read-only)."""
    return trust_fold(session).state


def load_table_state(session: Session) -> TrustState:
    """The materialised trust tables as a state (a cache of the fold: ``audit`` compares them)."""
    keys, identities = _split(key_state_of(row) for row in session.execute(select(TrustKey)).scalars())
    registry = TrustRegistry(keys, load_root(session), _thresholds(session), identities)
    state = registry.state()
    for row in session.execute(select(TrustKey)).scalars():
        if row.algorithm.startswith(TEE_ROOT_ALGORITHM):
            state.keys[row.key_id] = key_state_of(row)
    return state


def key_rows(session: Session) -> TrustRows:
    """The whole trust state as plain values, to hand to other processes."""
    fold = trust_fold(session)
    state = fold.state
    return TrustRows(
        root=fold.root_key,
        keys=tuple(state.keys[k] for k in sorted(state.keys)),
        thresholds=tuple((p, n, i) for p, (n, i) in sorted(state.thresholds.items())),
    )


def registry_from_rows(rows: TrustRows) -> TrustRegistry:
    keys, identities = _split(rows.keys)
    return TrustRegistry(
        keys,
        public_key_from_der(rows.root) if rows.root is not None else None,
        {p: (n, i) for p, n, i in rows.thresholds},
        identities,
    )


def signer_listing(session: Session, *, now: int) -> list[dict[str, Any]]:
    """Every registered key, identity and TEE root as the fold leaves them, with its decay as of
    ``now`` (``stale``, ``stale_since``, ``next_review_by``): the one listing behind
    ``keys list``, ``GET /api/v1/signers`` and the UI's signers page."""
    state = load_state(session)
    keys = sorted(state.keys.values(), key=lambda k: (k.registered_index, k.key_id))
    out = []
    for k in keys:
        doc = {**k.to_json(), **k.freshness(now), "state": key_state(k, now)}
        for grant_doc, grant in zip(doc["grants"], k.grants, strict=True):
            grant_doc["state"] = grant_state(grant, now, k.status)
        out.append(doc)
    return out
