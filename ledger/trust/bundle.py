"""Verdict bundles v1: everything needed to re-derive an artifact's verdict offline (pure).

A verdict bundle answers "may I deploy this?" for someone who trusts nothing but the log's
verifier key (and, optionally, a witness policy). It is JSON::

    {"media_type": "application/vnd.provledger.verdict-bundle.v1+json",
     "subject":    "sha256:<64 hex>",                 the artifact asked about
     "at":         null | <index>,                    judge as the ledger stood at this entry
     "checkpoint": "<signed note>",                   C2SP checkpoint, cosignatures included
     "trust_head": "<signed note>",                   the log's statement of its key history (below)
     "root_of_trust": {"key_id": "<hex>", "public_key": "<base64 DER SPKI>"},
     "entries": [{"index": N, "entry": "<base64 leaf bytes>",
                  "inclusion": ["<base64 hash>", ...]}, ...]}    ascending, distinct indexes

More fields are allowed and ignored: a verifier never believes a verdict written in a bundle.
``entries`` holds every record reachable from the subject (every link's records, the firmware
images deployments rest on), every key-event entry of the log up to the checkpoint, and the
entry ``at`` names; each ``inclusion`` is the RFC 9162 inclusion proof of that leaf in the
bundle's checkpoint.

**The trust head: why a dropped key event is caught.** Dropping records from a bundle can only
take support away (a digest is trusted because a trusted record holds it up; untrusted records
never pull it down), so a bundle that omits records can make a verdict worse, never better.
Key events are the opposite: a revocation, a threshold or a rotation is *negative* evidence,
and a server that omitted one could make a revoked key's record look trusted. So the key
history must be provably complete. Three things make it so:

1. Every key event names its predecessor (``predicate.prev = {"index", "leaf_hash"}`` of the
   previous key-event entry; index -1 and 32 zero bytes for the first; ``ledger.trust.fold``).
   A key event removed from the middle leaves its successor pointing at an entry that is not
   in the bundle.
2. The log signs, with the same key as its checkpoints, a *trust head* note for the
   checkpoint's tree::

       provenance-ledger/trust-head/v1
       <origin>
       <tree size>
       <root hash, base64>
       <administrator key id, hex>            the root of trust that signs key events
       <number of key-event entries among the first <tree size> entries>
       <index of the last of them, or "-">
       <its leaf hash, base64, or "-">

   Its first line is not an origin and its second is not a decimal, so no checkpoint parser
   accepts it (domain separation from checkpoints). A key event removed from the *end* of the
   history leaves the bundle's last key event different from the signed head; a key event
   removed anywhere leaves fewer than the signed count.
3. Every key-event entry in the bundle carries its inclusion proof in the checkpoint, whose
   size and root the trust head repeats, so the head, the count and the chain of
   predecessors all speak about the same tree.

A log that signs a false head has signed a lie with its own key, which anyone holding both
the note and the entries can show (like a forked checkpoint). Ed25519 is deterministic, so a
bundle for a given checkpoint is the same bytes every time (cacheable per checkpoint).

**Verification** (:func:`verify_verdict_bundle`), in order; any failure raises:

1. the bundle parses within its limits (:func:`parse_verdict_bundle`; MalformedError);
2. its subject is the artifact asked about, and it judges as of the index asked about (``at``,
   or the checkpoint itself when none is asked: a bundle "as of" an older entry never passes
   for a current verdict);
3. the checkpoint is signed by the log key (and cosigned as the witness policy demands; with a
   maximum age, that many witnesses cosigned it recently: a checkpoint carries no time of its
   own, so only fresh cosignatures rule out a replayed bundle from before a revocation);
4. the trust head is signed by the log key, for the checkpoint's origin, size and root, and
   the root of trust's public key hashes to the key id it names;
5. every entry's inclusion proof leads to the checkpoint's root;
6. every entry decodes, and every signer it records signed it (DSSE; Sigstore bundles as
   ``ledger.verify.verify_bundle_leaf_signature``); key events are signed by the root of trust;
7. the key history is complete: as many key events as the head counts, the last one is the
   head, each names the one before it;
8. the trust state and the chain's verdict are recomputed by the trust fold
   (``ledger.trust.fold`` / ``ledger.trust.verdict``: the code the server runs) from these
   bytes alone, as of entry ``at`` (its integrated time) or of ``now``.

Expectations a deploy gate states (:class:`Expectations`) are then checked on that verdict.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from ledger import merkle
from ledger.tlog.checkpoint import Checkpoint
from ledger.untrusted.json import parse_json
from ledger.errors import MalformedError, SignatureError, TooLargeError, VerificationError
from ledger.tlog.hashing import HASH_SIZE, leaf_hash
from ledger.records.keys import PublicKey, public_key_from_der
from ledger.tlog.note import NoteSigner, Verifier, b64decode_canonical, sign_note, verify_note

__all__ = [
    "MAX_BUNDLE_ENTRIES",
    "MAX_VERDICT_BUNDLE_BYTES",
    "TRUST_HEAD_HEADER",
    "VERDICT_BUNDLE_MEDIA_TYPE",
    "BundleEntry",
    "Expectations",
    "TrustHead",
    "VerdictBundle",
    "format_trust_head_text",
    "format_verdict_bundle",
    "open_trust_head",
    "parse_artifact_digest",
    "parse_trust_head_text",
    "parse_verdict_bundle",
    "sign_trust_head",
]

VERDICT_BUNDLE_MEDIA_TYPE = "application/vnd.provledger.verdict-bundle.v1+json"
TRUST_HEAD_HEADER = "provenance-ledger/trust-head/v1"
#: a bundle of 20 links over 1,000 key events is about 1.9 MB; this leaves room for big SBOMs
MAX_VERDICT_BUNDLE_BYTES = 64 * 1024 * 1024
#: entries a bundle holds at most (records reachable from the subject plus the key history)
MAX_BUNDLE_ENTRIES = 200_000
#: one leaf at most: a 4 MiB envelope (``MAX_ENVELOPE_BYTES``) with its signer list, as base64
MAX_ENTRY_BYTES = 8 * 1024 * 1024

_SHA256 = re.compile(r"[0-9a-f]{64}")
#: canonical decimal of at most 20 digits (every uint64): int() never meets a huge literal
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,19}")
_MAX_INDEX = (1 << 63) - 1


def parse_artifact_digest(text: str) -> str:
    """``sha256:<64 lowercase hex>`` (upper-case hex is lowered), or MalformedError."""
    if not isinstance(text, str):
        raise MalformedError("an artifact digest is a string sha256:<64 hex>")
    alg, sep, value = text.partition(":")
    value = value.lower()
    if alg.lower() != "sha256" or not sep or not _SHA256.fullmatch(value):
        raise MalformedError(f"{text[:80]!r} is not an artifact digest: give sha256:<64 hex digits>")
    return f"sha256:{value}"


# ------------------------------------------------------------------------------ trust head


@dataclass(frozen=True)
class TrustHead:
    """The log's signed statement of its key history at a tree (see the module docstring)."""

    origin: str
    size: int
    root: bytes
    admin_key_id: str
    count: int
    head_index: int | None
    head_leaf_hash: bytes | None

    def __post_init__(self) -> None:
        if (self.count == 0) != (self.head_index is None) or (self.head_index is None) != (self.head_leaf_hash is None):
            raise MalformedError("a trust head names a last key event exactly when it counts some")
        if self.head_index is not None and not 0 <= self.head_index < self.size:
            raise MalformedError(f"the trust head's last key event {self.head_index} is outside the tree of {self.size}")
        if self.count > self.size:
            raise MalformedError("the trust head counts more key events than the tree has entries")
        if not _SHA256.fullmatch(self.admin_key_id):
            raise MalformedError("the trust head's administrator key id is not 64 lowercase hex digits")


def format_trust_head_text(head: TrustHead) -> str:
    b64 = lambda value: base64.b64encode(value).decode("ascii")  # noqa: E731
    lines = [
        TRUST_HEAD_HEADER,
        head.origin,
        str(head.size),
        b64(head.root),
        head.admin_key_id,
        str(head.count),
        "-" if head.head_index is None else str(head.head_index),
        "-" if head.head_leaf_hash is None else b64(head.head_leaf_hash),
    ]
    return "".join(line + "\n" for line in lines)


def parse_trust_head_text(text: str) -> TrustHead:
    """Parse a trust head's note text (strict: one encoding). Raises MalformedError."""
    lines = text.split("\n")
    if len(lines) != 9 or lines[-1] != "" or lines[0] != TRUST_HEAD_HEADER:
        raise MalformedError(f"the trust head is not a {TRUST_HEAD_HEADER} text of eight lines")
    _, origin, size, root, admin, count, index, head_hash, _ = lines

    def decimal(value: str, what: str) -> int:
        if not _DECIMAL.fullmatch(value) or len(value) > 19:
            raise MalformedError(f"the trust head's {what} is not a canonical decimal")
        return int(value)

    root_bytes = b64decode_canonical(root, "trust head root")
    if len(root_bytes) != HASH_SIZE:
        raise MalformedError("the trust head's root is not 32 bytes")
    hashed = None if head_hash == "-" else b64decode_canonical(head_hash, "trust head leaf hash")
    if hashed is not None and len(hashed) != HASH_SIZE:
        raise MalformedError("the trust head's leaf hash is not 32 bytes")
    return TrustHead(
        origin=origin,
        size=decimal(size, "tree size"),
        root=root_bytes,
        admin_key_id=admin,
        count=decimal(count, "key-event count"),
        head_index=None if index == "-" else decimal(index, "last key-event index"),
        head_leaf_hash=hashed,
    )


def sign_trust_head(head: TrustHead, signer: NoteSigner) -> bytes:
    """The trust head as a signed note (the log key signs it, as it signs checkpoints)."""
    return sign_note(format_trust_head_text(head), [signer])


def open_trust_head(note: bytes | str, verifier: Verifier) -> TrustHead:
    """Verify a trust head note with the log's key; return it.

    Raises:
        MalformedError: it does not parse. SignatureError: not signed by the log key.
        VerificationError: it is for another origin than the key's.
    """
    head = parse_trust_head_text(verify_note(note, [verifier]).text)
    if head.origin != verifier.name:
        raise VerificationError(f"the trust head is for log {head.origin!r}, not {verifier.name!r}")
    return head


# ------------------------------------------------------------------------------ the bundle


@dataclass(frozen=True)
class BundleEntry:
    index: int
    data: bytes
    inclusion: tuple[bytes, ...]


@dataclass(frozen=True)
class VerdictBundle:
    subject: str
    checkpoint: bytes
    trust_head: bytes
    root_of_trust: bytes  # DER SPKI of the administrator key
    entries: tuple[BundleEntry, ...]
    at: int | None = None

    def entry(self, index: int) -> BundleEntry | None:
        for item in self.entries:
            if item.index == index:
                return item
        return None


def format_verdict_bundle(bundle: VerdictBundle) -> dict[str, Any]:
    """The bundle's JSON value (``json.dumps`` it; :func:`parse_verdict_bundle` reads it back)."""
    b64 = lambda value: base64.b64encode(value).decode("ascii")  # noqa: E731
    root = public_key_from_der(bundle.root_of_trust)
    return {
        "media_type": VERDICT_BUNDLE_MEDIA_TYPE,
        "subject": bundle.subject,
        "at": bundle.at,
        "checkpoint": bundle.checkpoint.decode("utf-8"),
        "trust_head": bundle.trust_head.decode("utf-8"),
        "root_of_trust": {"key_id": root.key_id, "public_key": b64(bundle.root_of_trust)},
        "entries": [
            {"index": e.index, "entry": b64(e.data), "inclusion": [b64(h) for h in e.inclusion]}
            for e in bundle.entries
        ],
    }


def _b64(value: Any, what: str, *, limit: int) -> bytes:
    if not isinstance(value, str):
        raise MalformedError(f"{what} must be a base64 string")
    if len(value) > limit:
        raise TooLargeError(f"{what} is over the limit of {limit} bytes")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MalformedError(f"{what} is not valid base64") from exc


def _index(value: Any, what: str) -> int:
    if type(value) is not int or not 0 <= value <= _MAX_INDEX:
        raise MalformedError(f"{what} must be a non-negative integer")
    return value


def parse_verdict_bundle(data: bytes | str | Mapping[str, Any]) -> VerdictBundle:
    """Parse a verdict bundle (bytes, text or a decoded JSON object) without verifying it.

    Raises:
        TooLargeError: over ``MAX_VERDICT_BUNDLE_BYTES``, ``MAX_BUNDLE_ENTRIES`` or a field limit.
        MalformedError: anything that is not a v1 verdict bundle (wrong media type, a missing
            or mistyped field, bad base64, a hash that is not 32 bytes, indexes not ascending, a
            root of trust whose ``key_id`` is not its public key's).
    """
    if isinstance(data, bytes | bytearray | str):
        if len(data) > MAX_VERDICT_BUNDLE_BYTES:
            raise TooLargeError(f"the verdict bundle is over the limit of {MAX_VERDICT_BUNDLE_BYTES} bytes")
        doc = parse_json(data, what="the verdict bundle")  # the one strict loader for untrusted bytes
    else:
        doc = data
    if not isinstance(doc, Mapping):
        raise MalformedError("a verdict bundle is a JSON object")
    if doc.get("media_type") != VERDICT_BUNDLE_MEDIA_TYPE:
        raise MalformedError(f"the verdict bundle's media_type is not {VERDICT_BUNDLE_MEDIA_TYPE!r}")
    subject = parse_artifact_digest(doc.get("subject"))  # type: ignore[arg-type]
    if subject != doc.get("subject"):
        raise MalformedError("the verdict bundle's subject must be sha256:<64 lowercase hex> (one encoding)")
    at = doc.get("at")
    if at is not None:
        at = _index(at, "the verdict bundle's at")
    notes = {}
    for name in ("checkpoint", "trust_head"):
        value = doc.get(name)
        if not isinstance(value, str) or not value:
            raise MalformedError(f"the verdict bundle's {name} must be a signed note (text)")
        notes[name] = value.encode("utf-8", "surrogatepass")
    root = doc.get("root_of_trust")
    if not isinstance(root, Mapping):
        raise MalformedError('the verdict bundle\'s root_of_trust must be {"key_id", "public_key"}')
    root_der = _b64(root.get("public_key"), "root_of_trust.public_key", limit=16_384)
    if root.get("key_id") != public_key_from_der(root_der).key_id:
        raise MalformedError("the verdict bundle's root_of_trust.key_id is not the key id of its public_key")
    entries = doc.get("entries")
    if not isinstance(entries, list):
        raise MalformedError("the verdict bundle's entries must be a list")
    if len(entries) > MAX_BUNDLE_ENTRIES:
        raise TooLargeError(f"the verdict bundle holds {len(entries)} entries, over the limit of {MAX_BUNDLE_ENTRIES}")
    parsed: list[BundleEntry] = []
    previous = -1
    for position, item in enumerate(entries):
        what = f"entries[{position}]"
        if not isinstance(item, Mapping):
            raise MalformedError(f"{what} must be an object")
        index = _index(item.get("index"), f"{what}.index")
        if index <= previous:
            raise MalformedError(f"{what}.index {index} is not above the previous entry's: entries ascend, once each")
        previous = index
        proof = item.get("inclusion")
        if not isinstance(proof, list) or len(proof) > merkle.MAX_PROOF_HASHES:
            raise MalformedError(f"{what}.inclusion must be a list of at most {merkle.MAX_PROOF_HASHES} hashes")
        hashes = []
        for h in proof:
            value = _b64(h, f"{what}.inclusion hash", limit=64)
            if len(value) != HASH_SIZE:
                raise MalformedError(f"{what}.inclusion holds a hash of {len(value)} bytes, not {HASH_SIZE}")
            hashes.append(value)
        parsed.append(BundleEntry(index, _b64(item.get("entry"), f"{what}.entry", limit=MAX_ENTRY_BYTES), tuple(hashes)))
    return VerdictBundle(subject, notes["checkpoint"], notes["trust_head"], root_der, tuple(parsed), at)


# ------------------------------------------------------------------------------ expectations


@dataclass(frozen=True)
class Expectations:
    """What a deploy gate demands beyond a trusted chain (all of them must hold).

    ``predicate_type``: a trusted record about the artifact itself has this predicate type
    (exact, or a glob such as ``https://slsa.dev/provenance/*``). ``signer``: a trusted record
    about the artifact counted this principal (or key id). ``deployment``: a trusted
    deployment of the artifact (TEE evidence verified) is in the chain.
    """

    predicate_type: str | None = None
    signer: str | None = None
    deployment: bool = False

    def __bool__(self) -> bool:
        return self.predicate_type is not None or self.signer is not None or self.deployment


@dataclass(frozen=True)
class ExpectationResult:
    name: str
    ok: bool
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "reason": self.reason}


def _signers_of(link: Mapping[str, Any]) -> set[str]:
    names = {s.strip() for s in str(link.get("signer") or "").split(",") if s.strip()}
    why = link.get("why")
    if isinstance(why, Mapping):
        names |= {str(p) for p in why.get("principals") or ()} | {str(k) for k in why.get("signers") or ()}
    if link.get("key_id"):
        names.add(str(link["key_id"]))
    return names


def check_expectations(
    chain: Mapping[str, Any], predicate_types: Mapping[int, str], expectations: Expectations
) -> list[ExpectationResult]:
    """Each expectation, met or not, judged on the recomputed chain (never on the bundle's word)."""
    artifact = chain.get("artifact")
    own = [
        link for link in chain.get("links", ())
        if link.get("subject") == artifact and link.get("index") is not None and link.get("verdict") == "trusted"
    ]
    out: list[ExpectationResult] = []
    if expectations.predicate_type is not None:
        want = expectations.predicate_type
        hits = [link["index"] for link in own if fnmatchcase(predicate_types.get(link["index"], ""), want)]
        out.append(ExpectationResult(
            "predicate_type", bool(hits),
            f"trusted record(s) {hits} about {artifact} have predicate type {want}" if hits
            else f"no trusted record about {artifact} has predicate type {want}",
        ))
    if expectations.signer is not None:
        want = expectations.signer
        hits = [link["index"] for link in own if want in _signers_of(link)]
        out.append(ExpectationResult(
            "signer", bool(hits),
            f"trusted record(s) {hits} about {artifact} are signed by {want}" if hits
            else f"no trusted record about {artifact} is signed by {want}",
        ))
    if expectations.deployment:
        hits = [link["index"] for link in own if link.get("kind") == "deployment"]
        out.append(ExpectationResult(
            "deployment", bool(hits),
            f"trusted deployment record(s) {hits} bind {artifact} to verified TEE evidence" if hits
            else f"no trusted deployment record binds {artifact} to verified TEE evidence",
        ))
    return out


# ------------------------------------------------------------------------------ verification


@dataclass
class VerifiedBundle:
    """What :func:`verify_verdict_bundle` established, and the verdict it recomputed."""

    subject: str
    checkpoint: Checkpoint
    head: TrustHead
    witnesses: tuple[str, ...]
    #: the chain of trust JSON, recomputed by the trust fold (GUIDE shape)
    chain: dict[str, Any]
    as_of_time: int
    key_events: tuple[int, ...]
    entries: int
    signatures: int
    at: int | None = None
    expectations: list[ExpectationResult] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        return str(self.chain["verdict"])

    @property
    def ok(self) -> bool:
        """Trusted, and every expectation met: what a deploy gate passes on."""
        return self.verdict == "trusted" and all(e.ok for e in self.expectations)

    def to_json(self) -> dict[str, Any]:
        return {
            **self.chain,
            "ok": self.ok,
            "expectations": [e.to_json() for e in self.expectations],
            "evidence": {
                "checkpoint": {
                    "origin": self.checkpoint.origin,
                    "size": self.checkpoint.size,
                    "root": base64.b64encode(self.checkpoint.root).decode("ascii"),
                },
                "witnesses": list(self.witnesses),
                "entries": self.entries,
                "signatures": self.signatures,
                "key_events": len(self.key_events),
                "key_event_head": self.head.head_index,
                "administrator_key": self.head.admin_key_id,
                "at": self.at,
                "as_of_time": self.as_of_time,
            },
        }


def _check_inclusion(bundle: VerdictBundle, cp: Checkpoint) -> None:
    for item in bundle.entries:
        if item.index >= cp.size:
            raise VerificationError(f"bundle entry {item.index} is outside the checkpoint's tree of {cp.size} entries")
        try:
            merkle.verify_inclusion(item.index, cp.size, leaf_hash(item.data), list(item.inclusion), cp.root)
        except VerificationError as exc:
            raise VerificationError(f"bundle entry {item.index} is not in the checkpoint's tree: {exc}") from exc


def _root_key(bundle: VerdictBundle, head: TrustHead) -> PublicKey:
    key = public_key_from_der(bundle.root_of_trust)
    if key.key_id != head.admin_key_id:
        raise VerificationError(
            f"the bundle's root of trust is key {key.key_id}, but the log's trust head names {head.admin_key_id}"
        )
    return key


def _witnesses(
    note: bytes, verifiers: Sequence[Verifier], threshold: int, *, max_age: int | None, now: int
) -> tuple[str, ...]:
    """The witness policy on the checkpoint; with ``max_age``, ``threshold`` of the witnesses
    must have cosigned it within ``max_age`` seconds of ``now`` (cosignature/v1 timestamps).

    A checkpoint alone says nothing of when it was made: an old bundle (or a server replaying
    one from before a revocation) verifies as of its own checkpoint. Fresh cosignatures from
    witnesses the verifier trusts are what rule that out.
    """
    from ledger.tlog.checkpoint import cosignatures_result  # noqa: PLC0415

    if not threshold:
        if max_age is not None:
            raise MalformedError("a maximum checkpoint age needs a witness policy (--witness): only cosignatures carry a time")
        return ()
    result = cosignatures_result(note, verifiers, threshold)
    if result.failed:
        raise SignatureError(f"invalid cosignature for key {', '.join(result.failed)}")
    if len(result.witnesses) < threshold:
        raise VerificationError(f"{len(result.witnesses)} of the required {threshold} witness cosignatures verified")
    if max_age is not None:
        fresh = [name for name, t in result.witnesses.items() if t is not None and now - t <= max_age]
        if len(fresh) < threshold:
            raise VerificationError(
                f"{len(fresh)} of the required {threshold} witnesses cosigned the checkpoint within the last "
                f"{max_age} seconds: the bundle may be stale (an older checkpoint than the log's latest)"
            )
    return tuple(result.witnesses)
