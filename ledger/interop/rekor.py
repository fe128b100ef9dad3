"""Offline verification of Rekor log entries: inclusion proof, checkpoint and inclusion promise.

This is the one Rekor entry verifier of the ledger: ``ledger.interop.sigstore`` verifies the
``tlogEntries`` of a bundle with it, and it verifies a Rekor REST ``LogEntry`` on its own.

A Rekor v1 entry (the ``tlogEntries[]`` item of a Sigstore bundle, or the REST ``LogEntry``)
carries the entry's canonicalized body, its integrated time, the log id, the entry's *global*
index, and at least one of:

* an inclusion proof into one shard's tree (with its own *tree* index) and that shard's signed
  checkpoint: inclusion **proven**;
* a signed entry timestamp (SET, the "inclusion promise"): the log's signature over the entry,
  its integrated time and global index: inclusion **promised**. Older bundles (v0.1: npm
  publish attestations, cosign output) carry only this.

A Rekor v2 entry has an inclusion proof under an Ed25519-signed checkpoint and no SET or
integrated time.

:func:`verify_rekor_entry` checks, in order:

1. the log id is the log key's: SHA-256 of its DER SubjectPublicKeyInfo (v1), or
   SHA-256(origin || LF || 0x01 || raw Ed25519 key) with the origin the log's name (v2);
2. where there is an inclusion proof: the leaf hash SHA-256(0x00 || canonicalized body) is at
   the tree index under the proof's root; the checkpoint is signed by the log key (v1: ECDSA
   note signature, type 0x02, key id SHA-256(SPKI)[:4], key name the log's host, origin
   ``<host> - <tree id>`` or, for a log of one tree, ``<host>``; v2: Ed25519, type 0x01,
   origin = key name = the log's host) and commits to the proof's size and root;
3. where there is a SET: it is the log key's signature (v1 ECDSA P-256 SHA-256 DER) over the
   RFC 8785 JSON of ``{"body", "integratedTime", "logID" (hex), "logIndex" (global)}``;
4. an entry with neither is refused; ``require_set`` / ``require_proof`` refuse an entry
   without the one asked for.

Pure: stdlib, cryptography, rfc8785.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import rfc8785
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from ledger import merkle
from ledger.tlog.checkpoint import Checkpoint, parse_checkpoint_text
from ledger.errors import MalformedError, RootMismatchError, SignatureError, VerificationError
from ledger.tlog.hashing import HASH_SIZE, leaf_hash
from ledger.tlog.note import ECDSAVerifier, Ed25519Verifier, Verifier, verify_note

__all__ = [
    "REKOR_V1_LOG_NAME",
    "RekorInclusionProof",
    "RekorV1Entry",
    "VerifiedRekorEntry",
    "parse_rekor_v1_entry",
    "rekor_log_id",
    "rekor_v1_set_payload",
    "verify_inclusion_path",
    "verify_rekor_entry",
    "verify_rekor_set",
]

#: The key name on rekor.sigstore.dev's checkpoints (the origin adds " - <tree id>").
REKOR_V1_LOG_NAME = "rekor.sigstore.dev"
#: A canonicalized body is a small JSON document; anything this big is not one.
MAX_BODY_BYTES = 1 << 20
_MAX_UINT64 = (1 << 64) - 1
#: canonical decimal of at most 20 digits (every uint64): int() never meets a huge literal
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,19}")

#: How an entry's inclusion in the log is established.
Inclusion = Literal["proven", "promised"]


@dataclass(frozen=True)
class RekorInclusionProof:
    #: the index inside the shard's tree: what the inclusion proof uses
    tree_index: int
    tree_size: int
    root_hash: bytes
    hashes: tuple[bytes, ...]
    #: the signed-note text of the checkpoint (None: the proof came without one)
    checkpoint: bytes | None


@dataclass(frozen=True)
class RekorV1Entry:
    body: bytes
    #: seconds since the epoch; 0 when absent (Rekor v2)
    integrated_time: int
    log_id: bytes
    #: the global (virtual, across shards) index: what the SET signs
    log_index: int
    proof: RekorInclusionProof | None = None
    signed_entry_timestamp: bytes | None = None


@dataclass(frozen=True)
class VerifiedRekorEntry:
    entry: RekorV1Entry
    #: the checkpoint the inclusion proof reaches; None when inclusion is only promised
    checkpoint: Checkpoint | None
    #: the shard's tree id (Rekor v1 origin ``<host> - <tree id>``); None for v2, for an origin
    #: of the host alone, or without a proof
    tree_id: int | None
    set_verified: bool

    @property
    def inclusion(self) -> Inclusion:
        """``proven`` (inclusion proof under a signed checkpoint) or ``promised`` (SET only)."""
        return "proven" if self.checkpoint is not None else "promised"


# --------------------------------------------------------------------------------------------
# Parsing (both the Sigstore bundle's protobuf-JSON and the Rekor REST LogEntry)


def _int(value: object, what: str) -> int:
    """A uint64 given as a JSON integer or (protobuf-JSON int64) a decimal string."""
    if isinstance(value, str) and _DECIMAL.fullmatch(value):
        value = int(value)
    if type(value) is not int or not 0 <= value <= _MAX_UINT64:
        raise MalformedError(f"Rekor entry {what} is not a non-negative 64-bit integer")
    return value


def _b64(value: object, what: str) -> bytes:
    if not isinstance(value, str):
        raise MalformedError(f"Rekor entry {what} is not a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MalformedError(f"Rekor entry {what} is not valid base64") from exc


def _hex(value: object, what: str) -> bytes:
    if not isinstance(value, str) or not re.fullmatch(r"(?:[0-9a-f]{2})*", value):
        raise MalformedError(f"Rekor entry {what} is not lowercase hex")
    return bytes.fromhex(value)


def _hash(value: bytes, what: str) -> bytes:
    if len(value) != HASH_SIZE:
        raise MalformedError(f"Rekor entry {what} is {len(value)} bytes, not {HASH_SIZE}")
    return value


def _obj(doc: Mapping[str, Any], key: str, what: str) -> Mapping[str, Any]:
    value = doc.get(key)
    if not isinstance(value, Mapping):
        raise MalformedError(f"Rekor entry has no {what}")
    return value


def _checkpoint_bytes(value: object) -> bytes:
    if isinstance(value, Mapping):  # bundle: {"envelope": "<note>"}
        value = value.get("envelope")
    if not isinstance(value, str) or not value:
        raise MalformedError("Rekor entry has no checkpoint")
    return value.encode("utf-8")


def _parse_proof(proof: object, decode: Any) -> RekorInclusionProof | None:
    """The inclusion proof; absent or ``null`` means none (a promise-only entry)."""
    if proof is None:
        return None
    if not isinstance(proof, Mapping):
        raise MalformedError("Rekor entry inclusion proof is not a JSON object")
    raw_hashes = proof.get("hashes", [])
    if not isinstance(raw_hashes, list) or len(raw_hashes) > merkle.MAX_PROOF_HASHES:
        raise MalformedError("Rekor inclusion proof hashes must be a list of at most 64")
    return RekorInclusionProof(
        tree_index=_int(proof.get("logIndex"), "inclusion proof logIndex"),
        tree_size=_int(proof.get("treeSize"), "treeSize"),
        root_hash=_hash(decode(proof.get("rootHash"), "rootHash"), "rootHash"),
        hashes=tuple(_hash(decode(h, f"proof hash {i}"), f"proof hash {i}") for i, h in enumerate(raw_hashes)),
        checkpoint=_checkpoint_bytes(proof.get("checkpoint")),
    )


def parse_rekor_v1_entry(doc: Mapping[str, Any]) -> RekorV1Entry:
    """Parse a Rekor v1 entry: a bundle ``tlogEntries[]`` item or a REST ``LogEntry`` value.

    The inclusion proof may be absent or ``null`` (then the SET must vouch for the entry, which
    :func:`verify_rekor_entry` checks).

    Raises:
        MalformedError: a field is missing or not in its encoding.
    """
    if not isinstance(doc, Mapping):
        raise MalformedError("a Rekor entry must be a JSON object")
    if "canonicalizedBody" in doc:  # Sigstore bundle (protobuf-JSON: base64 bytes, string ints)
        body = _b64(doc["canonicalizedBody"], "canonicalizedBody")
        log_id = _b64(_obj(doc, "logId", "log id").get("keyId"), "logId.keyId")
        promise = doc.get("inclusionPromise")
        set_b64 = promise.get("signedEntryTimestamp") if isinstance(promise, Mapping) else None
        proof = _parse_proof(doc.get("inclusionProof"), _b64)
    else:  # REST LogEntry value (hex hashes, JSON ints)
        verification = _obj(doc, "verification", "verification")
        body = _b64(doc.get("body"), "body")
        log_id = _hex(doc.get("logID"), "logID")
        set_b64 = verification.get("signedEntryTimestamp")
        proof = _parse_proof(verification.get("inclusionProof"), _hex)
    if len(body) > MAX_BODY_BYTES:
        raise MalformedError(f"Rekor entry body is over {MAX_BODY_BYTES} bytes")
    return RekorV1Entry(
        body=body,
        integrated_time=_int(doc.get("integratedTime", 0), "integratedTime"),
        log_id=_hash(log_id, "log id"),
        log_index=_int(doc.get("logIndex"), "logIndex"),
        proof=proof,
        signed_entry_timestamp=None if set_b64 in (None, "") else _b64(set_b64, "signedEntryTimestamp"),
    )


# --------------------------------------------------------------------------------------------
# Keys


PublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | rsa.RSAPublicKey


def _load_key(der: bytes) -> PublicKey:
    try:
        key = serialization.load_der_public_key(der)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise MalformedError("the Rekor log key is not a DER SubjectPublicKeyInfo") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | rsa.RSAPublicKey):
        raise MalformedError(f"the Rekor log key type {type(key).__name__} is not supported")
    return key


def rekor_log_id(public_key_der: bytes, log_name: str) -> bytes:
    """The log id of a log key: SHA-256(DER SPKI) for Rekor v1 (ECDSA, RSA); for Rekor v2
    (Ed25519) SHA-256(origin || LF || 0x01 || raw key), the origin being the log's name."""
    key = _load_key(public_key_der)
    if isinstance(key, ed25519.Ed25519PublicKey):
        raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return hashlib.sha256(log_name.encode("utf-8") + b"\n\x01" + raw).digest()
    return hashlib.sha256(public_key_der).digest()


def _verify_signature(key: PublicKey, signature: bytes, data: bytes) -> bool:
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            algorithm = {384: hashes.SHA384(), 521: hashes.SHA512()}.get(key.curve.key_size, hashes.SHA256())
            key.verify(signature, data, ec.ECDSA(algorithm))
        elif isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, data)
        else:
            key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError):
        return False
    return True


# --------------------------------------------------------------------------------------------
# Verification


def rekor_v1_set_payload(entry: RekorV1Entry) -> bytes:
    """The bytes a Rekor v1 SET signs: RFC 8785 JSON of body, integratedTime, logID, logIndex.

    Raises:
        MalformedError: a number RFC 8785 cannot write exactly (beyond 2**53: no SET covers it).
    """
    try:
        return rfc8785.dumps(
            {
                "body": base64.b64encode(entry.body).decode("ascii"),
                "integratedTime": entry.integrated_time,
                "logID": entry.log_id.hex(),
                "logIndex": entry.log_index,
            }
        )
    except (rfc8785.CanonicalizationError, ValueError) as exc:
        raise MalformedError(f"the entry's integratedTime or logIndex is beyond what a signed entry timestamp covers: {exc}") from exc


def verify_rekor_set(entry: RekorV1Entry, log_public_key: bytes) -> None:
    """The inclusion promise is the log key's signature over :func:`rekor_v1_set_payload`.

    Raises:
        SignatureError: there is no SET, or it does not verify.
        MalformedError: the key does not load.
    """
    if entry.signed_entry_timestamp is None:
        raise SignatureError("the entry has no signed entry timestamp")
    key = _load_key(log_public_key)
    if not _verify_signature(key, entry.signed_entry_timestamp, rekor_v1_set_payload(entry)):
        raise SignatureError("the signed entry timestamp does not verify under the log key")


def _checkpoint_verifier(key: PublicKey, der: bytes, log_name: str) -> Verifier:
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            return Ed25519Verifier(log_name, raw)
        return ECDSAVerifier(log_name, der)
    except ValueError as exc:  # a trusted root whose log has no usable name (an empty baseUrl, say)
        raise VerificationError(f"the log's name {log_name!r} cannot name a checkpoint signer: {exc}") from exc


def verify_inclusion_path(body: bytes, proof: RekorInclusionProof) -> None:
    """The leaf SHA-256(0x00 || body) is at the proof's tree index under the proof's root hash.

    Only the path: the root is signed by no one until a checkpoint is checked too (an older
    v0.1 bundle's proof may come without one; its inclusion then rests on the SET).

    Raises:
        VerificationError: the path does not lead to the stated root.
    """
    try:
        merkle.verify_inclusion(proof.tree_index, proof.tree_size, leaf_hash(body), list(proof.hashes), proof.root_hash)
    except RootMismatchError as exc:
        raise VerificationError(f"the inclusion proof does not lead to the stated root: {exc}") from exc


def _verify_proof(entry: RekorV1Entry, key: PublicKey, der: bytes, log_name: str) -> tuple[Checkpoint, int | None]:
    proof = entry.proof
    assert proof is not None
    if proof.checkpoint is None:
        raise VerificationError("the inclusion proof has no checkpoint")
    verify_inclusion_path(entry.body, proof)
    # The checkpoint is the log's, for that tree.
    note = verify_note(proof.checkpoint, [_checkpoint_verifier(key, der, log_name)])
    cp = parse_checkpoint_text(note.text)
    tree_id: int | None = None
    if isinstance(key, ed25519.Ed25519PublicKey):
        # Rekor v2: the origin is the key name, and the log id binds it (checked by the caller).
        if cp.origin != log_name:
            raise VerificationError(f"checkpoint origin {cp.origin!r} is not the log's origin {log_name!r}")
    else:
        # Rekor v1 names each shard's tree: "<host> - <tree id>"; a log of one tree may sign
        # plain "<host>" (sigstore-conformance's own test logs do). The signature is the log
        # key's either way, so either names this log.
        host, sep, tree = cp.origin.partition(" - ")
        if host != log_name or (sep and not _DECIMAL.fullmatch(tree)):
            raise VerificationError(f"checkpoint origin {cp.origin!r} is not '{log_name}' or '{log_name} - <tree id>'")
        tree_id = int(tree) if sep else None
    if cp.size != proof.tree_size or cp.root != proof.root_hash:
        raise VerificationError(
            f"the checkpoint (size {cp.size}) is not the inclusion proof's tree (size {proof.tree_size})"
            if cp.size != proof.tree_size
            else "the checkpoint's root differs from the inclusion proof's root"
        )
    return cp, tree_id


def verify_rekor_entry(
    entry: RekorV1Entry | Mapping[str, Any],
    log_public_key: bytes,
    *,
    log_name: str = REKOR_V1_LOG_NAME,
    require_set: bool = False,
    require_proof: bool = False,
) -> VerifiedRekorEntry:
    """Verify a Rekor entry offline against the log's public key (steps in the module doc).

    Args:
        entry: a parsed entry, or the JSON of one (see :func:`parse_rekor_v1_entry`).
        log_public_key: the log's key as DER SubjectPublicKeyInfo (ECDSA for v1, Ed25519 v2).
        log_name: the key name on the log's checkpoints (its host).
        require_set: refuse an entry without a signed entry timestamp.
        require_proof: refuse an entry whose inclusion is only promised.

    Raises:
        MalformedError: the entry, key or checkpoint does not parse.
        SignatureError: the checkpoint's or the SET's signature is bad or missing.
        VerificationError: a wrong log id or origin, a checkpoint that is not the proof's, an
            inclusion proof that does not lead to the checkpoint's root, or neither a proof
            nor a promise.
    """
    if not isinstance(entry, RekorV1Entry):
        entry = parse_rekor_v1_entry(entry)
    key = _load_key(log_public_key)
    # (1) The entry names this log.
    if rekor_log_id(log_public_key, log_name) != entry.log_id:
        raise VerificationError(f"the entry's log id {entry.log_id.hex()} is not the id of the given log key")
    if entry.proof is None and entry.signed_entry_timestamp is None:
        raise VerificationError("the entry has neither an inclusion proof nor an inclusion promise (SET)")
    if entry.proof is None and require_proof:
        raise VerificationError("the entry has no inclusion proof: its inclusion is only promised (SET)")
    # (2) The inclusion proof and the checkpoint.
    checkpoint, tree_id = _verify_proof(entry, key, log_public_key, log_name) if entry.proof is not None else (None, None)
    # (3) The signed entry timestamp.
    if entry.signed_entry_timestamp is None:
        if require_set:
            raise SignatureError("the entry has no signed entry timestamp")
        return VerifiedRekorEntry(entry, checkpoint, tree_id, set_verified=False)
    verify_rekor_set(entry, log_public_key)
    return VerifiedRekorEntry(entry, checkpoint, tree_id, set_verified=True)
