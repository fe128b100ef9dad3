"""Offline verification of Sigstore Rekor v1 log entries: inclusion proof, checkpoint and SET.

A Rekor v1 entry (the ``tlogEntries[]`` item of a Sigstore bundle, or the REST ``LogEntry``)
carries the entry's canonicalized body, its integrated time, the log id, the entry's *global*
index, an inclusion proof into one shard's tree (with its own *tree* index) and that shard's
signed checkpoint, and optionally a signed entry timestamp (SET).

``verify_rekor_v1_entry`` checks, in order:

1. the log id is SHA-256 of the log's public key (DER SubjectPublicKeyInfo);
2. the checkpoint is signed by that key (ECDSA P-256 note signature, type 0x02, key id =
   SHA-256(SPKI)[:4]) under the log's name, and its origin is ``<log name> - <tree id>``;
3. the checkpoint's size and root are those of the inclusion proof;
4. the leaf hash SHA-256(0x00 || canonicalized body) is at the tree index under that root;
5. the SET, where present (or required), is the log key's ECDSA P-256 SHA-256 DER signature over
   the RFC 8785 JSON of ``{"body", "integratedTime", "logID", "logIndex"}`` (global index).

Pure: stdlib, cryptography, rfc8785.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ledger import merkle
from ledger.tlog.checkpoint import Checkpoint, parse_checkpoint_text
from ledger.errors import MalformedError, SignatureError, VerificationError
from ledger.tlog.hashing import HASH_SIZE, leaf_hash
from ledger.tlog.note import ECDSAVerifier, verify_note

__all__ = [
    "REKOR_V1_LOG_NAME",
    "RekorV1Entry",
    "VerifiedRekorEntry",
    "parse_rekor_v1_entry",
    "rekor_v1_set_payload",
    "verify_rekor_v1_entry",
]

#: The key name on rekor.sigstore.dev's checkpoints (the origin adds " - <tree id>").
REKOR_V1_LOG_NAME = "rekor.sigstore.dev"
#: A canonicalized body is a small JSON document; anything this big is not one.
MAX_BODY_BYTES = 1 << 20
_MAX_UINT64 = (1 << 64) - 1
_DECIMAL = re.compile(r"0|[1-9][0-9]*")
_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class RekorV1Entry:
    body: bytes
    integrated_time: int
    log_id: bytes
    #: the global (virtual, across shards) index: what the SET signs
    log_index: int
    #: the index inside the shard's tree: what the inclusion proof uses
    tree_index: int
    tree_size: int
    root_hash: bytes
    hashes: tuple[bytes, ...]
    checkpoint: bytes
    signed_entry_timestamp: bytes | None = None


@dataclass(frozen=True)
class VerifiedRekorEntry:
    entry: RekorV1Entry
    checkpoint: Checkpoint
    tree_id: int
    set_verified: bool


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


def parse_rekor_v1_entry(doc: Mapping[str, Any]) -> RekorV1Entry:
    """Parse a Rekor v1 entry: a bundle ``tlogEntries[]`` item or a REST ``LogEntry`` value.

    Raises:
        MalformedError: a field is missing or not in its encoding.
    """
    if not isinstance(doc, Mapping):
        raise MalformedError("a Rekor entry must be a JSON object")
    if "canonicalizedBody" in doc:  # Sigstore bundle (protobuf-JSON: base64 bytes, string ints)
        proof = _obj(doc, "inclusionProof", "inclusion proof")
        body = _b64(doc["canonicalizedBody"], "canonicalizedBody")
        log_id = _b64(_obj(doc, "logId", "log id").get("keyId"), "logId.keyId")
        promise = doc.get("inclusionPromise")
        set_b64 = promise.get("signedEntryTimestamp") if isinstance(promise, Mapping) else None
        root = _b64(proof.get("rootHash"), "rootHash")
        raw_hashes = proof.get("hashes", [])
        decode = _b64
    else:  # REST LogEntry value (hex hashes, JSON ints)
        verification = _obj(doc, "verification", "verification")
        proof = _obj(verification, "inclusionProof", "inclusion proof")
        body = _b64(doc.get("body"), "body")
        log_id = _hex(doc.get("logID"), "logID")
        set_b64 = verification.get("signedEntryTimestamp")
        root = _hex(proof.get("rootHash"), "rootHash")
        raw_hashes = proof.get("hashes", [])
        decode = _hex
    if len(body) > MAX_BODY_BYTES:
        raise MalformedError(f"Rekor entry body is over {MAX_BODY_BYTES} bytes")
    if not isinstance(raw_hashes, list) or len(raw_hashes) > merkle.MAX_PROOF_HASHES:
        raise MalformedError("Rekor inclusion proof hashes must be a list of at most 64")
    return RekorV1Entry(
        body=body,
        integrated_time=_int(doc.get("integratedTime"), "integratedTime"),
        log_id=_hash(log_id, "log id"),
        log_index=_int(doc.get("logIndex"), "logIndex"),
        tree_index=_int(proof.get("logIndex"), "inclusion proof logIndex"),
        tree_size=_int(proof.get("treeSize"), "treeSize"),
        root_hash=_hash(root, "rootHash"),
        hashes=tuple(
            _hash(decode(h, f"proof hash {i}"), f"proof hash {i}") for i, h in enumerate(raw_hashes)
        ),
        checkpoint=_checkpoint_bytes(proof.get("checkpoint")),
        signed_entry_timestamp=None
        if set_b64 in (None, "")
        else _b64(set_b64, "signedEntryTimestamp"),
    )


# --------------------------------------------------------------------------------------------
# Verification


def rekor_v1_set_payload(entry: RekorV1Entry) -> bytes:
    """The bytes a Rekor v1 SET signs: RFC 8785 JSON of body, integratedTime, logID, logIndex."""
    return rfc8785.dumps(
        {
            "body": base64.b64encode(entry.body).decode("ascii"),
            "integratedTime": entry.integrated_time,
            "logID": entry.log_id.hex(),
            "logIndex": entry.log_index,
        }
    )


def verify_rekor_v1_entry(
    entry: RekorV1Entry | Mapping[str, Any],
    log_public_key: bytes,
    *,
    log_name: str = REKOR_V1_LOG_NAME,
    require_set: bool = False,
) -> VerifiedRekorEntry:
    """Verify a Rekor v1 entry offline against the log's public key.

    Args:
        entry: a parsed entry, or the JSON of one (see :func:`parse_rekor_v1_entry`).
        log_public_key: the log's ECDSA P-256 key as DER SubjectPublicKeyInfo.
        log_name: the key name on the log's checkpoints (its hostname).
        require_set: refuse an entry without a signed entry timestamp.

    Raises:
        MalformedError: the entry, key or checkpoint does not parse.
        SignatureError: the checkpoint's or the SET's signature is bad or missing.
        VerificationError: a wrong log id or origin, a checkpoint that is not the proof's, or
            an inclusion proof that does not lead to the checkpoint's root.
    """
    if not isinstance(entry, RekorV1Entry):
        entry = parse_rekor_v1_entry(entry)
    verifier = ECDSAVerifier(log_name, log_public_key)
    # (1) The entry names this log.
    if hashlib.sha256(log_public_key).digest() != entry.log_id:
        raise VerificationError(
            f"the entry's log id {entry.log_id.hex()} is not the SHA-256 of the given log key"
        )
    # (2) The checkpoint is the log's, for one of its shards.
    note = verify_note(entry.checkpoint, [verifier])
    cp = parse_checkpoint_text(note.text)
    host, sep, tree_id = cp.origin.partition(" - ")
    if host != log_name or not sep or not _DECIMAL.fullmatch(tree_id):
        raise VerificationError(f"checkpoint origin {cp.origin!r} is not '{log_name} - <tree id>'")
    # (3) The checkpoint commits to the proof's tree.
    if cp.size != entry.tree_size or cp.root != entry.root_hash:
        raise VerificationError(
            f"the checkpoint (size {cp.size}) is not the inclusion proof's tree (size {entry.tree_size})"
            if cp.size != entry.tree_size
            else "the checkpoint's root differs from the inclusion proof's root"
        )
    # (4) The entry is in that tree.
    merkle.verify_inclusion(
        entry.tree_index, cp.size, leaf_hash(entry.body), list(entry.hashes), cp.root
    )
    # (5) The signed entry timestamp.
    if entry.signed_entry_timestamp is None:
        if require_set:
            raise SignatureError("the entry has no signed entry timestamp")
        set_verified = False
    else:
        key = serialization.load_der_public_key(
            log_public_key
        )  # a P-256 key: ECDSAVerifier checked it
        assert isinstance(key, ec.EllipticCurvePublicKey)
        try:
            key.verify(
                entry.signed_entry_timestamp, rekor_v1_set_payload(entry), ec.ECDSA(hashes.SHA256())
            )
        except (InvalidSignature, ValueError) as exc:
            raise SignatureError(
                "the signed entry timestamp does not verify under the log key"
            ) from exc
        set_verified = True
    return VerifiedRekorEntry(entry, cp, int(tree_id), set_verified)
