"""The trust policy: signer keys, their grants, thresholds, and the state key events build.

Every change to the policy is a ledger entry: an in-toto Statement with predicate type
``key-event/v1`` signed by the ledger's administrator key (its root of trust). Folding the
key-event entries in index order gives the trust state at any index (``TrustState.apply``);
the store keeps the current state materialised, and ``audit`` recomputes it.

Judging a record (``judge``) is contextual, decaying and fail-closed:

1. every signer key must be registered (unknown keys count for nothing);
2. not revoked as compromised since (or before) the record's integration time, and not rotated
   out before it;
3. one of its grants must cover the predicate type (glob on the whole URI) and *every* subject
   name (glob per ``/`` segment: ``*`` never crosses ``/``, as TUF delegations match paths);
4. that grant must be valid at the record's time (``not_before`` <= t <= ``not_after``) and not
   past its ``review_by`` at the time of judging (past it: ``stale`` until re-affirmed);
5. the keys that pass must come from at least *threshold* distinct principals (the highest
   threshold whose predicate-type glob matches; 1 by default): two keys of one principal
   count once.

Times are seconds since the epoch; the ledger's integration time is the trusted clock.

Keyless signers (Sigstore certificates) are principals too: ``register-identity`` names an
identity (a SAN glob, the exact OIDC issuer and, for CI workflows, the exact source repository)
instead of a public key. Its id is the SHA-256 of the identity's RFC 8785 JSON and it lives in
the same state as keys (``KeyState`` with ``algorithm`` ``sigstore-identity`` and the identity
JSON where a key's SPKI would be), so grants, review-by, revocation and thresholds apply to it
unchanged, and audit recomputes it like any key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
import fnmatch
import re
from fnmatch import fnmatchcase
from functools import lru_cache
from typing import Any

import json

from ledger.errors import MalformedError
from ledger.records.keys import public_key_from_der
from ledger.trust.tee_events import TEE_ACTIONS, TeeState, collateral_predicate, parse_collateral, parse_policy, tee_event_subject
from ledger.untrusted.json import parse_json

__all__ = [
    "ACTIONS",
    "IDENTITY_ALGORITHM",
    "Grant",
    "Identity",
    "KeyEvent",
    "KeyState",
    "TrustState",
    "GENESIS_PREV",
    "TEE_ROOT_ALGORITHM",
    "VERDICTS",
    "format_time",
    "identity_id",
    "key_event_subject",
    "matches_subject",
    "parse_key_event",
    "parse_time",
    "worst",
]

ACTIONS = ("register", "register-identity", "register-tee-root", "reaffirm", "rotate", "revoke", "threshold", *TEE_ACTIONS)
#: ``KeyState.algorithm`` of a keyless (Sigstore certificate identity) principal
IDENTITY_ALGORITHM = "sigstore-identity"
#: ``KeyState.algorithm`` prefix of a non-vendor TEE root (``tee-root:tpm``); its public_key is the
#: root certificate's DER and its key id the certificate's SHA-256 fingerprint
TEE_ROOT_ALGORITHM = "tee-root:"
#: the ``prev`` of the first key event of a ledger
GENESIS_PREV = (-1, "0" * 64)
#: verdicts from best to worst
VERDICTS = ("trusted", "stale", "missing", "untrusted")
_RANK = {v: i for i, v in enumerate(VERDICTS)}


def worst(verdicts: Iterable[str]) -> str:
    return max(verdicts, key=_RANK.__getitem__, default="trusted")


def rank(verdict: str) -> int:
    return _RANK[verdict]


# ------------------------------------------------------------------------------ time


#: the seconds ``format_time`` can write: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z
MIN_TIME = int(datetime(1, 1, 1, tzinfo=UTC).timestamp())
MAX_TIME = int(datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp())


def parse_time(text: str) -> int:
    """RFC 3339 → seconds since the epoch (MalformedError otherwise, and for a time whose offset
    takes it out of the years 1 to 9999 in UTC: it could not be written back)."""
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise MalformedError(f"{text!r} is not an RFC 3339 time") from exc
    if t.tzinfo is None:
        raise MalformedError(f"{text!r} has no time zone (use Z or +00:00)")
    seconds = int(t.timestamp())
    if not MIN_TIME <= seconds <= MAX_TIME:
        raise MalformedError(f"{text!r} is outside the years 1 to 9999 in UTC")
    return seconds


def format_time(t: int | None) -> str | None:
    """Seconds → RFC 3339 in UTC; a value outside the years 1 to 9999 (none is ever parsed, see
    ``parse_time``) is written as its number of seconds rather than failing."""
    if t is None:
        return None
    if not MIN_TIME <= t <= MAX_TIME:
        return f"{t} s since the epoch"
    when = datetime.fromtimestamp(t, UTC)
    return f"{when.year:04d}" + when.strftime("-%m-%dT%H:%M:%SZ")  # %Y is not zero-padded below 1000


# ------------------------------------------------------------------------------ grants


def matches_subject(pattern: str, name: str) -> bool:
    """fnmatch per ``/`` segment: the same number of segments, each matching (``*`` never crosses ``/``)."""
    segments = _segment_regexes(pattern)
    parts = name.split("/")
    return len(parts) == len(segments) and all(r.match(part) for r, part in zip(segments, parts, strict=True))


@lru_cache(maxsize=4096)
def _segment_regexes(pattern: str) -> tuple[re.Pattern[str], ...]:
    return tuple(re.compile(fnmatch.translate(segment)) for segment in pattern.split("/"))


@dataclass(frozen=True)
class Grant:
    """What a key may sign: predicate-type globs, subject-name globs (None: any subject), and when."""

    predicate_types: tuple[str, ...]
    subjects: tuple[str, ...] | None = None
    not_before: int | None = None
    not_after: int | None = None
    review_by: int | None = None

    def covers_type(self, predicate_type: str) -> bool:
        return any(fnmatchcase(predicate_type, p) for p in self.predicate_types)

    def covers_subject(self, name: str) -> bool:
        return self.subjects is None or any(matches_subject(p, name) for p in self.subjects)

    def valid_at(self, t: int) -> bool:
        return (self.not_before is None or self.not_before <= t) and (self.not_after is None or t <= self.not_after)

    def stale_at(self, t: int) -> bool:
        return self.review_by is not None and t > self.review_by

    def describe(self) -> str:
        parts = [f"predicate types {', '.join(self.predicate_types)}"]
        parts.append(f"subjects {', '.join(self.subjects)}" if self.subjects is not None else "any subject")
        for label, value in (("not before", self.not_before), ("not after", self.not_after), ("review by", self.review_by)):
            if value is not None:
                parts.append(f"{label} {format_time(value)}")
        return "[" + "; ".join(parts) + "]"

    def to_json(self) -> dict[str, Any]:
        """Storage form (epoch seconds)."""
        return {
            "predicate_types": list(self.predicate_types),
            "subjects": list(self.subjects) if self.subjects is not None else None,
            "not_before": self.not_before,
            "not_after": self.not_after,
            "review_by": self.review_by,
        }

    def to_predicate(self) -> dict[str, Any]:
        """The key-event predicate form (RFC 3339 times, absent fields left out)."""
        out: dict[str, Any] = {"predicate_types": list(self.predicate_types)}
        if self.subjects is not None:
            out["subjects"] = list(self.subjects)
        for name in ("not_before", "not_after", "review_by"):
            value = getattr(self, name)
            if value is not None:
                out[name] = format_time(value)
        return out

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Grant:
        subjects = doc.get("subjects")
        return cls(
            predicate_types=tuple(doc["predicate_types"]),
            subjects=tuple(subjects) if subjects is not None else None,
            not_before=doc.get("not_before"),
            not_after=doc.get("not_after"),
            review_by=doc.get("review_by"),
        )


# ------------------------------------------------------------------------------ identities


@dataclass(frozen=True)
class Identity:
    """A keyless signer: the certificate SAN (glob per ``/`` segment), the exact OIDC issuer and,
    when pinned, the exact source repository (a reusable workflow's SAN is the same for every
    repository that calls it: pin both to trust one caller)."""

    san: str
    issuer: str
    source_repository: str | None = None

    def __post_init__(self) -> None:
        if not self.san.strip() or not self.issuer.strip() or self.source_repository == "":
            raise MalformedError("an identity needs a SAN pattern and an issuer (and a non-empty source repository, if any)")

    def to_json(self) -> dict[str, str]:
        out = {"san": self.san, "issuer": self.issuer}
        if self.source_repository is not None:
            out["source_repository"] = self.source_repository
        return out

    def to_bytes(self) -> bytes:
        """RFC 8785 JSON (strings only: sorted keys, no spaces, UTF-8)."""
        return json.dumps(self.to_json(), ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode("utf-8")

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Identity:
        try:
            return cls(san=doc["san"], issuer=doc["issuer"], source_repository=doc.get("source_repository"))
        except (KeyError, TypeError) as exc:
            raise MalformedError("an identity is {\"san\", \"issuer\"[, \"source_repository\"]}") from exc

    @classmethod
    def from_bytes(cls, data: bytes) -> Identity:
        doc = parse_json(data, what="identity")
        if not isinstance(doc, dict):
            raise MalformedError("identity must be a JSON object")
        return cls.from_json(doc)

    @property
    def id(self) -> str:
        return identity_id(self)

    def describe(self) -> str:
        repo = f" for source repository {self.source_repository}" if self.source_repository else " (any source repository)"
        return f"SAN {self.san} from issuer {self.issuer}{repo}"


def identity_id(identity: Identity) -> str:
    """The principal id of an identity: lowercase hex SHA-256 of its RFC 8785 JSON."""
    return hashlib.sha256(identity.to_bytes()).hexdigest()


# ------------------------------------------------------------------------------ key events


@dataclass(frozen=True)
class KeyEvent:
    """A parsed key-event predicate (times as epoch seconds)."""

    action: str
    key_id: str | None = None
    principal: str | None = None
    public_key: bytes | None = None
    grants: tuple[Grant, ...] | None = None
    replaces: str | None = None
    review_by: int | None = None
    compromised_since: int | None = None
    predicate_type: str | None = None
    threshold: int | None = None
    reason: str | None = None
    #: when the administrator made the event (informational: it makes every event distinct)
    issued_at: int | None = None
    #: the keyless signer of a ``register-identity`` event
    identity: Identity | None = None
    #: (index, lowercase hex leaf hash) of the previous key event (None: a legacy event)
    prev: tuple[int, str] | None = None
    #: ``register-tee-root``: the root certificate (DER) and the evidence type it anchors
    certificate: bytes | None = None
    tee: str | None = None
    #: ``tee-policy``: the appraisal policy document (``ledger.attestation.policy_document``)
    appraisal_policy: Any = None
    #: ``tdx-collateral``: the files by field (``ledger.trust.tee_events``)
    collateral: Mapping[str, tuple[bytes, ...]] | None = None

    def to_predicate(self) -> dict[str, Any]:
        # no key_id: the statement's one subject digest is the key id (``key_event_subject``)
        out: dict[str, Any] = {"action": self.action}
        if self.principal is not None:
            out["principal"] = self.principal
        if self.public_key is not None:
            out["public_key"] = base64.b64encode(self.public_key).decode("ascii")
        if self.grants is not None:
            out["grants"] = [g.to_predicate() for g in self.grants]
        if self.replaces is not None:
            out["replaces"] = self.replaces
        if self.review_by is not None:
            out["review_by"] = format_time(self.review_by)
        if self.compromised_since is not None:
            out["compromised_since"] = format_time(self.compromised_since)
        if self.predicate_type is not None:
            out["predicate_type"] = self.predicate_type
        if self.threshold is not None:
            out["threshold"] = self.threshold
        if self.reason:
            out["reason"] = self.reason
        if self.issued_at is not None:
            out["issued_at"] = format_time(self.issued_at)
        if self.identity is not None:
            out["identity"] = self.identity.to_json()
        if self.prev is not None:
            out["prev"] = {"index": self.prev[0], "leaf_hash": self.prev[1]}
        if self.certificate is not None:
            out["certificate"] = base64.b64encode(self.certificate).decode("ascii")
        if self.tee is not None:
            out["tee"] = self.tee
        if self.appraisal_policy is not None:
            out["appraisal_policy"] = dict(self.appraisal_policy.document)
        if self.collateral is not None:
            out["collateral"] = collateral_predicate(self.collateral)
        return out

    def subject(self) -> dict[str, Any]:
        return key_event_subject(self)


#: the subject name of the events about one key, identity or TEE root (digest: its id)
_KEYED_SUBJECT = {"register-identity": "identity", "register-tee-root": "tee-root"}
_KEY_ID = re.compile(r"[0-9a-f]{64}")


def key_event_subject(event: KeyEvent) -> dict[str, Any]:
    """The statement subject of a key event: ``key`` (``identity``, ``tee-root``) with the key id
    as its SHA-256 digest (older events named it ``key:<key_id>`` and repeated it as
    ``predicate.key_id``; both are accepted), or for a threshold ``threshold:<predicate type
    glob>`` (digest: SHA-256 of the glob)."""
    if event.action in TEE_ACTIONS:
        return tee_event_subject(event.action, event.appraisal_policy, event.collateral)
    if event.action == "threshold":
        assert event.predicate_type is not None
        return {
            "name": f"threshold:{event.predicate_type}",
            "digest": {"sha256": hashlib.sha256(event.predicate_type.encode("utf-8")).hexdigest()},
        }
    assert event.key_id is not None
    return {"name": _KEYED_SUBJECT.get(event.action, "key"), "digest": {"sha256": event.key_id}}


def _event_key_id(predicate: Mapping[str, Any], subjects: Sequence[tuple[str, Mapping[str, str]]]) -> str | None:
    """The key id a key event is about: its one subject's SHA-256 digest (or, in older events,
    ``predicate.key_id``, which the subject check below holds equal to it)."""
    if predicate["action"] == "threshold" or predicate["action"] in TEE_ACTIONS:
        return predicate.get("key_id")
    if "key_id" in predicate:
        return str(predicate["key_id"])
    digest = subjects[0][1].get("sha256") if len(subjects) == 1 else None
    if not isinstance(digest, str) or not _KEY_ID.fullmatch(digest):
        raise MalformedError(f"a {predicate['action']} key event must have exactly one subject whose sha256 digest is the key id")
    return digest


def _grant_from_predicate(doc: Mapping[str, Any]) -> Grant:
    def t(name: str) -> int | None:
        return parse_time(doc[name]) if name in doc else None

    grant = Grant(
        predicate_types=tuple(doc["predicate_types"]),
        subjects=tuple(doc["subjects"]) if "subjects" in doc else None,
        not_before=t("not_before"),
        not_after=t("not_after"),
        review_by=t("review_by"),
    )
    if grant.not_before is not None and grant.not_after is not None and grant.not_after < grant.not_before:
        raise MalformedError("predicate.grants: not_after is before not_before")
    return grant


def parse_key_event(predicate: Mapping[str, Any], subjects: Sequence[tuple[str, Mapping[str, str]]]) -> KeyEvent:
    """A key event from a predicate that already passed the key-event/v1 schema, and the
    statement's subjects ((name, digest) pairs), which must name what the event is about."""
    key_id = _event_key_id(predicate, subjects)
    public_key = None
    if "public_key" in predicate:
        try:
            public_key = base64.b64decode(predicate["public_key"], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise MalformedError("predicate.public_key is not base64") from exc
        key = public_key_from_der(public_key)
        if key.key_id != key_id:
            raise MalformedError(f"the key id {key_id} is not the SHA-256 of predicate.public_key ({key.key_id})")
    certificate = None
    if "certificate" in predicate:
        try:
            certificate = base64.b64decode(predicate["certificate"], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise MalformedError("predicate.certificate is not base64") from exc
        if hashlib.sha256(certificate).hexdigest() != key_id:
            raise MalformedError(f"the key id {key_id} is not the SHA-256 fingerprint of predicate.certificate")
        _check_certificate(certificate)
    prev = predicate.get("prev")
    event = KeyEvent(
        action=predicate["action"],
        prev=(prev["index"], prev["leaf_hash"]) if prev is not None else None,
        certificate=certificate,
        tee=predicate.get("tee"),
        key_id=key_id,
        principal=predicate.get("principal"),
        public_key=public_key,
        grants=tuple(_grant_from_predicate(g) for g in predicate["grants"]) if "grants" in predicate else None,
        replaces=predicate.get("replaces"),
        review_by=parse_time(predicate["review_by"]) if "review_by" in predicate else None,
        compromised_since=parse_time(predicate["compromised_since"]) if "compromised_since" in predicate else None,
        predicate_type=predicate.get("predicate_type"),
        threshold=predicate.get("threshold"),
        reason=predicate.get("reason"),
        issued_at=parse_time(predicate["issued_at"]) if "issued_at" in predicate else None,
        identity=Identity.from_json(predicate["identity"]) if "identity" in predicate else None,
        appraisal_policy=parse_policy(predicate),
        collateral=parse_collateral(predicate),
    )
    if (event.action == "tee-policy") != (event.appraisal_policy is not None) or (
        event.action == "tdx-collateral"
    ) != (event.collateral is not None):
        raise MalformedError("predicate.appraisal_policy / predicate.collateral belong to (and only to) tee-policy / tdx-collateral events")
    if (event.action == "register-identity") != (event.identity is not None):
        raise MalformedError("predicate.identity belongs to (and only to) a register-identity event")
    if event.identity is not None and event.identity.id != event.key_id:
        raise MalformedError(f"the key id {event.key_id} is not the SHA-256 of predicate.identity ({event.identity.id})")
    if (event.action == "register-tee-root") != (event.certificate is not None and event.tee is not None):
        raise MalformedError("predicate.certificate and predicate.tee belong to (and only to) a register-tee-root event")
    if event.prev is not None and event.prev[0] == -1 and event.prev[1] != GENESIS_PREV[1]:
        raise MalformedError("predicate.prev: the first key event's leaf_hash is 64 zeros")
    if event.action == "rotate" and event.replaces == event.key_id:
        raise MalformedError("predicate.replaces names the new key itself")
    expected = key_event_subject(event)
    keyed = event.action != "threshold" and event.action not in TEE_ACTIONS
    names = {expected["name"], f"{expected['name']}:{event.key_id}"} if keyed else {expected["name"]}
    if len(subjects) != 1 or subjects[0][0] not in names or dict(subjects[0][1]) != expected["digest"]:
        raise MalformedError(
            f"a {event.action} key event must have exactly one subject {expected['name']!r} with digest {expected['digest']}"
        )
    return event


def _check_certificate(der: bytes) -> None:
    from ledger.untrusted.x509 import load_der_certificate  # noqa: PLC0415

    load_der_certificate(der, "predicate.certificate")


# ------------------------------------------------------------------------------ state


@dataclass(frozen=True)
class KeyState:
    """A signer key (or identity, or TEE root) as the key events left it. Every field is derived
    from key-event entries."""

    key_id: str
    principal: str
    algorithm: str
    public_key: bytes
    grants: tuple[Grant, ...]
    registered_index: int
    registered_at: int
    last_event_index: int
    revoked_index: int | None = None
    revoked_at: int | None = None
    #: records integrated at or after this time are not trusted (revocation)
    compromised_since: int | None = None
    #: rotation: the key that replaced this one, from when
    replaced_by: str | None = None
    retired_at: int | None = None
    replaces: str | None = None

    @property
    def identity(self) -> Identity | None:
        """The keyless signer, for an identity principal (None for a key)."""
        return Identity.from_bytes(self.public_key) if self.algorithm == IDENTITY_ALGORITHM else None

    @property
    def is_tee_root(self) -> bool:
        return self.algorithm.startswith(TEE_ROOT_ALGORITHM)

    @property
    def status(self) -> str:
        if self.revoked_index is not None:
            return "revoked"
        if self.replaced_by is not None:
            return "rotated"
        return "active"

    def freshness(self, as_of: int) -> dict[str, Any]:
        """Decay as of ``as_of``: ``stale`` when every grant with a review-by is past it (its
        records are judged stale until re-affirmed), the soonest review-by still ahead and, for a
        stale key, since when. Shown alike by ``keys list``, ``GET /signers`` and the UI."""
        dated = [g.review_by for g in self.grants if g.review_by is not None]
        ahead = [t for t in dated if t >= as_of]
        past = [t for t in dated if t < as_of]
        stale = bool(dated) and not ahead and len(dated) == len(self.grants)
        return {
            "stale": stale,
            "stale_since": format_time(max(past)) if stale and past else None,
            "next_review_by": format_time(min(ahead)) if ahead else None,
            "stale_grants": len(past),
        }

    def to_json(self) -> dict[str, Any]:
        identity = self.identity
        return {
            "key_id": self.key_id,
            "principal": self.principal,
            "algorithm": self.algorithm,
            **({"identity": identity.to_json()} if identity is not None else {}),
            "status": self.status,
            "grants": [
                {**g.to_json(), **{k: format_time(getattr(g, k)) for k in ("not_before", "not_after", "review_by")}}
                for g in self.grants
            ],
            "registered_index": self.registered_index,
            "registered_at": format_time(self.registered_at),
            "last_event_index": self.last_event_index,
            "revoked_index": self.revoked_index,
            "revoked_at": format_time(self.revoked_at),
            "compromised_since": format_time(self.compromised_since),
            "replaced_by": self.replaced_by,
            "retired_at": format_time(self.retired_at),
            "replaces": self.replaces,
        }


@dataclass
class TrustState:
    """The policy as of some index: keys by id and thresholds by predicate-type glob, with the
    threshold history (a record is judged by the thresholds in force at its own index).

    A service may hold a partial state (only the keys it loaded); ``apply`` and ``judge`` only
    look at the keys an event or a record names.
    """

    root_key_id: str | None = None
    keys: dict[str, KeyState] = field(default_factory=dict)
    #: predicate-type glob → (threshold, index of the event that set it): the latest
    thresholds: dict[str, tuple[int, int]] = field(default_factory=dict)
    last_event_index: int = -1
    #: (index, predicate-type glob, threshold) of every threshold event applied, in index order
    threshold_history: list[tuple[int, str, int]] = field(default_factory=list)
    #: TEE appraisal policies and TDX collateral (``tee-policy``, ``tdx-collateral`` events)
    tee: TeeState = field(default_factory=TeeState)

    def copy(self) -> TrustState:
        return TrustState(
            self.root_key_id, dict(self.keys), dict(self.thresholds), self.last_event_index, list(self.threshold_history),
            self.tee.copy(),
        )

    def threshold_for(self, predicate_type: str, at: int | None = None) -> int:
        """The threshold for a record of ``predicate_type`` at index ``at`` (set by events before
        it; None: a record after every event of this state)."""
        current: dict[str, tuple[int, int]]
        if at is None:
            current = self.thresholds
        elif self.threshold_history:
            current = {}
            for index, pattern, n in self.threshold_history:
                if index >= at:
                    break
                current[pattern] = (n, index)
        else:  # a state read from the tables: only the latest threshold per pattern is known
            current = {p: v for p, v in self.thresholds.items() if v[1] < at}
        return max((n for p, (n, _) in current.items() if fnmatchcase(predicate_type, p)), default=1)

    def retired_index(self, key: KeyState) -> int | None:
        """The index of the rotation that retired ``key`` (None: not rotated)."""
        if key.replaced_by is None:
            return None
        new = self.keys.get(key.replaced_by)
        return new.registered_index if new is not None else key.last_event_index

    def history(self, key_id: str) -> list[KeyState]:
        """The key and every key it replaced (rotation chain), newest first."""
        out: list[KeyState] = []
        seen: set[str] = set()
        current = self.keys.get(key_id)
        while current is not None and current.key_id not in seen:
            out.append(current)
            seen.add(current.key_id)
            current = self.keys.get(current.replaces or "")
        return out

    def check(self, event: KeyEvent) -> str | None:
        """Why ``event`` cannot apply to this state, or None if it can."""
        key = self.keys.get(event.key_id or "")
        if event.action in ("register", "register-identity", "register-tee-root"):
            if key is not None:
                what = "identity" if key.algorithm == IDENTITY_ALGORITHM else "TEE root" if key.is_tee_root else "key"
                return f"{what} {event.key_id} is already registered (as {key.principal!r}, {key.status})"
        elif event.action == "rotate":
            if key is not None:
                return f"key {event.key_id} is already registered (as {key.principal!r}, {key.status})"
            old = self.keys.get(event.replaces or "")
            if old is None:
                return f"no key {event.replaces} is registered to rotate from"
            if old.status != "active":
                return f"key {event.replaces} is {old.status}; only an active key can be rotated"
            if old.algorithm == IDENTITY_ALGORITHM or old.is_tee_root:
                return f"{event.replaces} is not a signing key: register the new one and revoke the old"
        elif event.action in ("reaffirm", "revoke"):
            if key is None:
                return f"no key {event.key_id} is registered"
        return None

    def apply(self, event: KeyEvent, index: int, time: int) -> str | None:
        """Apply one key-event entry (at ``index``, integrated at ``time``). Deterministic and
        total: an event that cannot apply changes nothing and its reason is returned."""
        problem = self.check(event)
        self.last_event_index = max(self.last_event_index, index)
        if problem is not None:
            return problem
        if event.action in ("register", "register-identity", "register-tee-root"):
            assert event.key_id and event.principal
            if event.action == "register":
                assert event.public_key is not None and event.grants
                algorithm, public, grants = public_key_from_der(event.public_key).algorithm, event.public_key, event.grants
            elif event.action == "register-identity":
                assert event.identity is not None and event.grants
                algorithm, public, grants = IDENTITY_ALGORITHM, event.identity.to_bytes(), event.grants
            else:
                assert event.certificate is not None and event.tee
                algorithm, public = TEE_ROOT_ALGORITHM + event.tee, event.certificate
                # a root is reviewed like a key: one grant for its evidence type, with its review-by
                grants = event.grants or (Grant((algorithm,), review_by=event.review_by),)
            self.keys[event.key_id] = KeyState(
                key_id=event.key_id, principal=event.principal, algorithm=algorithm, public_key=public, grants=grants,
                registered_index=index, registered_at=time, last_event_index=index,
            )
        elif event.action == "rotate":
            assert event.key_id and event.public_key is not None and event.replaces
            old = self.keys[event.replaces]
            self.keys[event.replaces] = replace(old, replaced_by=event.key_id, retired_at=time, last_event_index=index)
            self.keys[event.key_id] = KeyState(
                key_id=event.key_id,
                principal=event.principal or old.principal,
                algorithm=public_key_from_der(event.public_key).algorithm,
                public_key=event.public_key,
                grants=event.grants or old.grants,
                registered_index=index,
                registered_at=time,
                last_event_index=index,
                replaces=old.key_id,
            )
        elif event.action == "reaffirm":
            # The remedy for decay: re-affirming a key covers its whole rotation history (the
            # principal vouches again for what its earlier keys signed) and works for rotated and
            # revoked keys too (for a revoked key it only matters to records signed before its
            # compromised-since: the later ones stay condemned).
            for key in self.history(event.key_id or ""):
                grants = tuple(replace(g, review_by=event.review_by) for g in key.grants)
                self.keys[key.key_id] = replace(key, grants=grants, last_event_index=index)
        elif event.action == "revoke":
            key = self.keys[event.key_id or ""]
            since = time if event.compromised_since is None else min(event.compromised_since, time)
            if key.compromised_since is not None:
                since = min(since, key.compromised_since)  # a second revocation can only widen it
            self.keys[key.key_id] = replace(
                key,
                revoked_index=key.revoked_index if key.revoked_index is not None else index,
                revoked_at=key.revoked_at if key.revoked_at is not None else time,
                compromised_since=since,
                last_event_index=index,
            )
        elif event.action == "threshold":
            assert event.predicate_type is not None and event.threshold is not None
            self.thresholds[event.predicate_type] = (event.threshold, index)
            self.threshold_history.append((index, event.predicate_type, event.threshold))
        elif event.action in TEE_ACTIONS:
            self.tee.apply(event.action, event.appraisal_policy, event.collateral, index)
        return None
