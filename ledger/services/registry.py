"""Signer keys and API tokens.

Key registration, re-affirmation, rotation, revocation and thresholds are key events: in-toto
statements (``key-event/v1``) signed by the administrator key and appended through the normal
append path, which applies them to the trust state in the entry's own transaction. The ledger
therefore holds the whole key history, and the trust state at any index can be recomputed.
Keyless signers (Sigstore certificate identities) are registered the same way
(``register-identity``), so they are in that history too.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Callable, Sequence
from dataclasses import replace
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from ledger.db import store
from ledger.db.models import ApiToken
from ledger.records.dsse import sign_envelope
from ledger.errors import ConflictError, LedgerError, MalformedError, NotFoundError
from ledger.records.keys import PrivateKey, PublicKey
from ledger.trust.policy import Grant, Identity, KeyEvent, key_event_subject
from ledger.trust.predicates import KEY_EVENT
from ledger.services.append import Appended, append_batch
from ledger.services.log import LogIdentity
from ledger.services.trust import trust_fold
from ledger.trust.fold import GENESIS
from ledger.services.sessions import end_sessions_of_token
from ledger.records.statement import IN_TOTO_PAYLOAD_TYPE, STATEMENT_V1

__all__ = [
    "TOKEN_SCOPES",
    "TokenInfo",
    "add_identity",
    "add_key",
    "add_tee_root",
    "import_tee_roots",
    "authenticate",
    "create_token",
    "key_event_envelope",
    "key_event_statement",
    "next_prev",
    "list_tokens",
    "reaffirm_key",
    "revoke_key",
    "revoke_token",
    "rotate_key",
    "set_tee_policy",
    "set_threshold",
    "submit_key_event",
    "add_tdx_collateral",
    "use_token",
]

TOKEN_SCOPES = ("submit", "admin")

Sessions = Callable[[], Session]


def key_event_statement(event: KeyEvent) -> bytes:
    """The in-toto Statement v1 of a key event (JSON bytes)."""
    doc = {
        "_type": STATEMENT_V1,
        "subject": [key_event_subject(event)],
        "predicateType": KEY_EVENT,
        "predicate": event.to_predicate(),
    }
    # compact: a verdict bundle carries every key event (base64 inside base64), so bytes count
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode("utf-8")


def key_event_envelope(admin: PrivateKey, event: KeyEvent) -> dict:  # type: ignore[type-arg]
    """A key event signed by the administrator key, as a DSSE envelope (JSON object). Without a
    keyid hint: key events are only ever checked against the root of trust, and a verdict bundle
    carries every one of them."""
    return sign_envelope(key_event_statement(event), IN_TOTO_PAYLOAD_TYPE, [admin], hint=False)


def next_prev(session: Session) -> tuple[int, str]:
    """What the next key event commits to: (index, hex leaf hash) of the last key event the
    ledger applied, or the genesis value (-1, 64 zeros) for the first."""
    return trust_fold(session).last_key_event or GENESIS


def submit_key_event(sessions: Sessions, log: LogIdentity, admin: PrivateKey, event: KeyEvent, *, now: int) -> Appended:
    """Sign and append a key event, committing it to the last key event unless it already names
    its ``prev``; raises its error if the ledger refuses it. When this function chose ``prev`` and
    another administrator's key event landed in between, it re-reads the last key event and
    signs again (a few times): the event is judged against the state it now follows."""
    auto = event.prev is None
    attempts = 5 if auto else 1
    for attempt in range(attempts):
        if auto:
            with sessions() as session:
                event = replace(event, prev=next_prev(session))
        (result,) = append_batch(sessions, [key_event_envelope(admin, event)], log, now=now)
        if isinstance(result, ConflictError) and attempt < attempts - 1 and "forked" in str(result):
            continue
        if isinstance(result, LedgerError):
            raise result
        return result
    raise AssertionError("unreachable")  # pragma: no cover


def _key_id(key_id: str) -> str:
    if len(key_id) != 64 or any(c not in "0123456789abcdef" for c in key_id):
        raise MalformedError(f"{key_id!r} is not a key id (64 lowercase hex digits: the SHA-256 of the key's DER SPKI)")
    return key_id


def _grants(grants: Sequence[Grant]) -> tuple[Grant, ...]:
    out = tuple(grants)
    if not out or any(not g.predicate_types or not all(p.strip() for p in g.predicate_types) for g in out):
        raise MalformedError("a key needs at least one --allow predicate-type pattern (fail closed)")
    return out


def add_key(
    sessions: Sessions, log: LogIdentity, admin: PrivateKey, name: str, key: PublicKey, grants: Sequence[Grant], *, now: int
) -> Appended:
    """Register a signer key for principal ``name`` with its grants (no grant, no trust)."""
    if not name.strip():
        raise MalformedError("a key needs a non-empty --name (its principal)")
    event = KeyEvent(
        action="register", key_id=key.key_id, principal=name, public_key=key.spki_der, grants=_grants(grants), issued_at=now
    )
    return submit_key_event(sessions, log, admin, event, now=now)


def add_identity(
    sessions: Sessions, log: LogIdentity, admin: PrivateKey, name: str, identity: Identity, grants: Sequence[Grant], *, now: int
) -> Appended:
    """Register a keyless (Sigstore certificate) signer for principal ``name`` with its grants.

    ``identity`` pins the certificate SAN (glob per ``/`` segment), the exact OIDC issuer and,
    for CI workflows, the exact source repository. Its principal id is ``identity.id``; revoke,
    re-affirm and thresholds treat it like a key id.
    """
    if not name.strip():
        raise MalformedError("an identity needs a non-empty --name (its principal)")
    event = KeyEvent(
        action="register-identity", key_id=identity.id, principal=name, grants=_grants(grants), identity=identity,
        issued_at=now,
    )
    return submit_key_event(sessions, log, admin, event, now=now)


def add_tee_root(
    sessions: Sessions, log: LogIdentity, admin: PrivateKey, name: str, certificate_der: bytes, *, now: int, tee: str = "tpm",
    review_by: int | None = None,
) -> Appended:
    """Register a non-vendor TEE root (a TPM EK/AK CA certificate, DER) in the key history: its
    key id is the certificate's SHA-256 fingerprint; ``revoke_key`` and ``reaffirm_key`` apply to
    it like to a signer key, and deployments are re-judged against it."""
    if not name.strip():
        raise MalformedError("a TEE root needs a non-empty --name")
    event = KeyEvent(
        action="register-tee-root", key_id=hashlib.sha256(certificate_der).hexdigest(), principal=name,
        certificate=certificate_der, tee=tee, review_by=review_by, issued_at=now,
    )
    return submit_key_event(sessions, log, admin, event, now=now)


def import_tee_roots(
    sessions: Sessions, log: LogIdentity, admin: PrivateKey, roots: Sequence[bytes], *, name: str, now: int
) -> list[tuple[str, Appended]]:
    """Register every root certificate (DER) not yet in the key history (the TEE trust folder is
    an import path: only the key history decides which roots count). Returns what it registered."""
    from ledger.services.trust import trust_fold  # noqa: PLC0415

    with sessions() as session:
        known = set(trust_fold(session).state.keys)
    out = []
    for der in roots:
        fingerprint = hashlib.sha256(der).hexdigest()
        if fingerprint not in known:
            out.append((fingerprint, add_tee_root(sessions, log, admin, name, der, now=now)))
            known.add(fingerprint)
    return out


def reaffirm_key(sessions: Sessions, log: LogIdentity, admin: PrivateKey, key_id: str, *, review_by: int, now: int) -> Appended:
    """Re-affirm every grant of a key until ``review_by``."""
    return submit_key_event(sessions, log, admin, KeyEvent(action="reaffirm", key_id=_key_id(key_id), review_by=review_by, issued_at=now), now=now)


def rotate_key(
    sessions: Sessions, log: LogIdentity, admin: PrivateKey, key_id: str, new_key: PublicKey, *, now: int,
    grants: Sequence[Grant] | None = None,
) -> Appended:
    """Replace ``key_id`` by ``new_key`` (same principal; its grants unless new ones are given).
    Records of the old key integrated before the rotation stay trusted."""
    event = KeyEvent(
        action="rotate", key_id=new_key.key_id, public_key=new_key.spki_der, replaces=_key_id(key_id),
        grants=_grants(grants) if grants is not None else None, issued_at=now,
    )
    return submit_key_event(sessions, log, admin, event, now=now)


def revoke_key(
    sessions: Sessions, log: LogIdentity, admin: PrivateKey, key_id: str, *, now: int,
    compromised_since: int | None = None, reason: str | None = None,
) -> Appended:
    """Revoke a key: records integrated at or after ``compromised_since`` (default: now) stop
    being trusted, and so does everything downstream of them."""
    event = KeyEvent(action="revoke", key_id=_key_id(key_id), compromised_since=compromised_since, reason=reason, issued_at=now)
    return submit_key_event(sessions, log, admin, event, now=now)


def set_threshold(
    sessions: Sessions, log: LogIdentity, admin: PrivateKey, predicate_type: str, threshold: int, *, now: int
) -> Appended:
    """Records whose predicate type matches the glob need ``threshold`` distinct principals."""
    if not predicate_type.strip():
        raise MalformedError("a threshold needs a predicate-type pattern")
    event = KeyEvent(action="threshold", predicate_type=predicate_type, threshold=threshold, issued_at=now)
    return submit_key_event(sessions, log, admin, event, now=now)


def set_tee_policy(sessions: Sessions, log: LogIdentity, admin: PrivateKey, document: bytes, *, now: int) -> Appended:
    """Record a TEE appraisal policy document (``tee-policy``): it replaces its environment's."""
    from ledger.attestation.policy_document import parse_policy_document  # noqa: PLC0415

    event = KeyEvent(action="tee-policy", appraisal_policy=parse_policy_document(document), issued_at=now)
    return submit_key_event(sessions, log, admin, event, now=now)


def add_tdx_collateral(sessions: Sessions, log: LogIdentity, admin: PrivateKey, files: Sequence[bytes], *, now: int) -> Appended:
    """Record Intel TDX collateral files (``tdx-collateral``), sorted into their fields by content."""
    from ledger.attestation.tdx_tcb import TdxCollateral  # noqa: PLC0415
    from ledger.trust.tee_events import parse_collateral  # noqa: PLC0415

    if not files:
        raise MalformedError("no collateral files given")
    fields: dict[str, list[bytes]] = {"tcb_infos": [], "qe_identities": [], "certificates": [], "crls": []}
    for blob in files:
        one = TdxCollateral.from_files([blob])
        name = "tcb_infos" if one.tcb_infos else "qe_identities" if one.qe_identities else "crls" if one.crls else "certificates"
        fields[name].append(bytes(blob))
    collateral = {k: tuple(v) for k, v in fields.items()}
    from ledger.trust.tee_events import collateral_predicate  # noqa: PLC0415

    parse_collateral({"collateral": collateral_predicate(collateral)})  # the same checks the ledger makes
    event = KeyEvent(action="tdx-collateral", collateral=collateral, issued_at=now)
    return submit_key_event(sessions, log, admin, event, now=now)


def _token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def create_token(session: Session, name: str, scope: str, *, now: int) -> str:
    """A new bearer token; only its SHA-256 is stored, so it is shown once."""
    if scope not in TOKEN_SCOPES:
        raise MalformedError(f"token scope must be one of {', '.join(TOKEN_SCOPES)}")
    if not name.strip() or len(name) > 255 or any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise MalformedError("a token name is 1 to 255 printable characters")
    token = "plt_" + secrets.token_urlsafe(32)
    store.add_token(session, name, scope, _token_hash(token), now)
    return token


def authenticate(session: Session, token: str | None, scope: str) -> ApiToken | None:
    """The token's row if it exists, is not revoked and grants ``scope`` (admin grants
    everything), else None."""
    if not token or len(token) > 256:
        return None
    row = store.token_by_hash(session, _token_hash(token))
    if row is None or not hmac.compare_digest(row.token_hash, _token_hash(token)):
        return None
    if row.revoked_at is not None:
        return None
    if row.scope != scope and row.scope != "admin":
        return None
    return row


@dataclass(frozen=True)
class TokenInfo:
    """What may be shown about a token: never its secret (nor its hash)."""

    id: int
    name: str
    scope: str
    created_at: int
    last_used_at: int | None
    revoked_at: int | None

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name, "scope": self.scope, "created_at": self.created_at,
            "last_used_at": self.last_used_at, "revoked_at": self.revoked_at,
        }


def _info(row: ApiToken) -> TokenInfo:
    return TokenInfo(row.id, row.name, row.scope, row.created_at, row.last_used_at, row.revoked_at)


#: ``last_used_at`` is written at most this often per token (a write per request would be waste).
LAST_USED_RESOLUTION = 60


def use_token(sessions: Sessions, token: str | None, scope: str, *, now: int) -> TokenInfo | None:
    """Authenticate a request's token in a short session of its own (closed before the caller
    reads the request body) and note when it was last used."""
    if not token or len(token) > 256:
        return None
    with sessions() as session:
        row = authenticate(session, token, scope)
        if row is None:
            return None
        info = _info(row)
        if row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION:
            try:
                session.execute(update(ApiToken).where(ApiToken.id == row.id).values(last_used_at=now))
                session.commit()
            except SQLAlchemyError:  # busy store: the token is still good, the note can wait
                session.rollback()
        return info


def list_tokens(session: Session) -> list[TokenInfo]:
    """Every token, oldest first: names, scopes, created, last used, revoked (never the secret)."""
    return [_info(row) for row in session.execute(select(ApiToken).order_by(ApiToken.id)).scalars()]


def revoke_token(session: Session, name: str, *, now: int) -> int:
    """Revoke every live token called ``name`` and end the admin sessions opened with them;
    the number revoked (the caller commits). NotFoundError when there is none."""
    ids = list(
        session.execute(select(ApiToken.id).where(ApiToken.name == name, ApiToken.revoked_at.is_(None))).scalars()
    )
    if not ids:
        raise NotFoundError(f"there is no live token named {name!r}")
    session.execute(update(ApiToken).where(ApiToken.id.in_(ids)).values(revoked_at=now))
    end_sessions_of_token(session, ids, now=now)
    return len(ids)
