"""Rekor entries in a bundle: inclusion proof and checkpoint, SET, and body consistency.

Rekor v1 signs checkpoints with ECDSA (signed-note type 0x02, key name = the log's host,
origin ``<host> - <tree id>``) and gives an inclusion promise (SET) over the entry. Rekor v2 signs
with Ed25519 (type 0x01, key name = origin = the log's host) and gives no SET or integrated time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import rfc8785
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ledger import merkle
from ledger.tlog.checkpoint import Checkpoint, parse_checkpoint_text
from ledger.errors import MalformedError, RootMismatchError, SignatureError, VerificationError
from ledger.tlog.hashing import leaf_hash
from ledger.tlog.note import ECDSAVerifier, Ed25519Verifier, Verifier, verify_note
from ledger.interop.sigstore.bundle import Bundle, TlogEntry
from ledger.interop.sigstore.trust import TransparencyLog, rekor_v2_log_id

__all__ = ["SUPPORTED_KINDS", "check_entry_body", "verify_inclusion_proof", "verify_set"]

SUPPORTED_KINDS = ("hashedrekord/0.0.1", "hashedrekord/0.0.2", "dsse/0.0.1", "intoto/0.0.2")


@dataclass(frozen=True)
class SignerMaterial:
    """What the body must name as the signer: the certificate, or the managed public key."""

    certificate: x509.Certificate | None
    public_key_der: bytes | None


# --------------------------------------------------------------------------------------------
# Inclusion proof, checkpoint and SET


def _checkpoint_verifier(log: TransparencyLog, origin: str) -> Verifier:
    """The note verifier of the log's key, bound to the log by its trusted-root entry."""
    der = log.public_key_der
    if log.is_ed25519:
        # Rekor v2: the log id is SHA-256(origin || LF || 0x01 || key), so the trusted root's
        # log id binds the origin (and key name) to the key.
        assert log.public_key is not None
        if rekor_v2_log_id(origin, log.public_key) != log.log_id:  # type: ignore[arg-type]
            raise VerificationError(f"checkpoint origin {origin!r} is not the origin of log {log.base_url}")
        raw = log.public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return Ed25519Verifier(origin, raw)
    # Rekor v1: the ECDSA key id does not hash the name, so the origin is checked against the host.
    if origin != log.host and not origin.startswith(log.host + " - "):
        raise VerificationError(f"checkpoint origin {origin!r} is not a tree of log {log.host}")
    try:
        return ECDSAVerifier(log.host, der)
    except (MalformedError, ValueError) as exc:
        raise VerificationError(f"log {log.base_url} key cannot verify checkpoints: {exc}") from exc


def verify_inclusion_proof(entry: TlogEntry, log: TransparencyLog) -> Checkpoint:
    """The entry's leaf is in the tree the log's signed checkpoint commits to.

    Raises:
        VerificationError: the proof, the checkpoint or its signature does not verify.
    """
    proof = entry.inclusion_proof
    assert proof is not None
    if proof.checkpoint is None:
        raise VerificationError("inclusion proof has no checkpoint")
    # The leaf is SHA-256(0x00 || canonicalized body); the proof leads to the stated root.
    try:
        merkle.verify_inclusion(
            proof.log_index, proof.tree_size, leaf_hash(entry.canonicalized_body), list(proof.hashes), proof.root_hash
        )
    except RootMismatchError as exc:
        raise VerificationError(f"inclusion proof does not lead to the stated root: {exc}") from exc
    # The checkpoint text parses before we know which key name to use.
    text_end = proof.checkpoint.rfind("\n\n")
    if text_end < 0:
        raise VerificationError("checkpoint is not a signed note")
    try:
        checkpoint = parse_checkpoint_text(proof.checkpoint[: text_end + 1])
        verifier = _checkpoint_verifier(log, checkpoint.origin)
        verify_note(proof.checkpoint, [verifier])
    except MalformedError as exc:
        raise VerificationError(f"checkpoint is malformed: {exc}") from exc
    except SignatureError as exc:
        raise SignatureError(f"checkpoint signature does not verify with the key of log {log.base_url}: {exc}") from exc
    if checkpoint.size != proof.tree_size or checkpoint.root != proof.root_hash:
        raise VerificationError(
            f"checkpoint (size {checkpoint.size}) does not commit to the proof's tree "
            f"(size {proof.tree_size}, root {proof.root_hash.hex()})"
        )
    return checkpoint


def verify_set(entry: TlogEntry, log: TransparencyLog) -> None:
    """The inclusion promise: the log's signature over the canonical JSON of the entry.

    Rekor v1 signs RFC 8785 JSON ``{"body", "integratedTime", "logID" (hex), "logIndex"}``.
    """
    assert entry.signed_entry_timestamp is not None
    payload = rfc8785.dumps(
        {
            "body": base64.b64encode(entry.canonicalized_body).decode("ascii"),
            "integratedTime": entry.integrated_time,
            "logID": entry.log_id.hex(),
            "logIndex": entry.log_index,
        }
    )
    if not log.verify(entry.signed_entry_timestamp, payload):
        raise SignatureError(f"signed entry timestamp does not verify with the key of log {log.base_url}")


# --------------------------------------------------------------------------------------------
# Body consistency: the logged entry is this bundle's signature, by this signer, over this content


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise VerificationError("tlog entry body is not JSON") from exc


def _get(doc: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(doc, dict) or key not in doc:
            raise VerificationError(f"tlog entry body has no {'.'.join(path)}")
        doc = doc[key]
    return doc


def _b64(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise VerificationError(f"tlog entry body {what} is not a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise VerificationError(f"tlog entry body {what} is not valid base64") from exc


def _pem_der(pem: bytes, what: str) -> tuple[str, bytes]:
    """('certificate' | 'key', DER) of a PEM certificate or public key."""
    try:
        if b"CERTIFICATE" in pem:
            return "certificate", x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
        key = serialization.load_pem_public_key(pem)
    except ValueError as exc:
        raise VerificationError(f"tlog entry body {what} is not a PEM certificate or key") from exc
    return "key", key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _check_signer(kind: str, der: bytes, signer: SignerMaterial, what: str) -> None:
    if signer.certificate is not None:
        expected = signer.certificate.public_bytes(serialization.Encoding.DER)
        if kind != "certificate" or der != expected:
            raise VerificationError(f"tlog entry {what} is not the bundle's signing certificate")
    elif kind != "key" or der != signer.public_key_der:
        raise VerificationError(f"tlog entry {what} is not the given public key")


def _check_kind(doc: Any, entry: TlogEntry) -> None:
    if doc.get("kind") != entry.kind or doc.get("apiVersion") != entry.version:
        raise VerificationError(
            f"tlog entry body is {doc.get('kind')}/{doc.get('apiVersion')}, "
            f"but the bundle says {entry.kind_version}"
        )


def _hashedrekord_v001(entry: TlogEntry, bundle: Bundle, signer: SignerMaterial, digest: bytes | None) -> None:
    doc = _json(entry.canonicalized_body)
    _check_kind(doc, entry)
    if bundle.message_signature is None:
        raise VerificationError("a hashedrekord/0.0.1 entry records a message signature, but the bundle holds DSSE")
    if _get(doc, "spec", "data", "hash", "algorithm") != "sha256":
        raise VerificationError("tlog entry hash algorithm is not sha256")
    if _get(doc, "spec", "data", "hash", "value") != (digest or b"").hex():
        raise VerificationError("tlog entry digest does not match the signed artifact digest")
    if _b64(_get(doc, "spec", "signature", "content"), "signature") != bundle.signature:
        raise VerificationError("tlog entry signature does not match the bundle's signature")
    pem = _b64(_get(doc, "spec", "signature", "publicKey", "content"), "public key")
    _check_signer(*_pem_der(pem, "public key"), signer, "public key")


def _hashedrekord_v002(entry: TlogEntry, bundle: Bundle, signer: SignerMaterial, digest: bytes | None) -> None:
    doc = _json(entry.canonicalized_body)
    _check_kind(doc, entry)
    spec = _get(doc, "spec", "hashedRekordV002")
    # For DSSE, Rekor v2 logs the digest of PAE(payloadType, payload) (rekor-v2 spec §6.1.4).
    expected = hashlib.sha256(bundle.envelope.pae()).digest() if bundle.envelope is not None else digest
    if _get(spec, "data", "algorithm") != "SHA2_256":
        raise VerificationError("tlog entry digest algorithm is not SHA2_256")
    if _b64(_get(spec, "data", "digest"), "digest") != expected:
        raise VerificationError("tlog entry digest does not match the signed content")
    if _b64(_get(spec, "signature", "content"), "signature") != bundle.signature:
        raise VerificationError("tlog entry signature does not match the bundle's signature")
    verifier = _get(spec, "signature", "verifier")
    if isinstance(verifier, dict) and "x509Certificate" in verifier:
        der = _b64(_get(verifier, "x509Certificate", "rawBytes"), "certificate")
        _check_signer("certificate", der, signer, "verifier")
    else:
        der = _b64(_get(verifier, "publicKey", "rawBytes"), "public key")
        _check_signer("key", der, signer, "verifier")


def _dsse_v001(entry: TlogEntry, bundle: Bundle, signer: SignerMaterial, digest: bytes | None) -> None:
    del digest
    doc = _json(entry.canonicalized_body)
    _check_kind(doc, entry)
    envelope = bundle.envelope
    if envelope is None:
        raise VerificationError("a dsse/0.0.1 entry records a DSSE envelope, but the bundle holds a message signature")
    # envelopeHash covers the envelope's uncanonicalised JSON and cannot be recomputed; the
    # payload hash and the signature list can, and together they pin the envelope.
    if _get(doc, "spec", "payloadHash", "algorithm") != "sha256":
        raise VerificationError("tlog entry payload hash algorithm is not sha256")
    if _get(doc, "spec", "payloadHash", "value") != hashlib.sha256(envelope.payload).hexdigest():
        raise VerificationError("tlog entry payload hash does not match the envelope's payload")
    signatures = _get(doc, "spec", "signatures")
    if not isinstance(signatures, list) or len(signatures) != len(envelope.signatures):
        raise VerificationError("tlog entry signatures do not match the envelope's signatures")
    for logged, sig in zip(signatures, envelope.signatures, strict=True):
        if _b64(_get(logged, "signature"), "signature") != sig.sig:
            raise VerificationError("tlog entry signature does not match the envelope's signature")
        pem = _b64(_get(logged, "verifier"), "verifier")
        _check_signer(*_pem_der(pem, "verifier"), signer, "verifier")


def _intoto_v002(entry: TlogEntry, bundle: Bundle, signer: SignerMaterial, digest: bytes | None) -> None:
    del digest
    doc = _json(entry.canonicalized_body)
    _check_kind(doc, entry)
    envelope = bundle.envelope
    if envelope is None:
        raise VerificationError("an intoto/0.0.2 entry records a DSSE envelope, but the bundle holds a message signature")
    content = _get(doc, "spec", "content")
    # intoto/0.0.2 stores the whole envelope, its base64 fields base64-encoded once more.
    logged = _get(content, "envelope")
    if _get(logged, "payloadType") != envelope.payload_type:
        raise VerificationError("tlog entry payloadType does not match the envelope's")
    payload = _b64(_b64(_get(logged, "payload"), "payload").decode("ascii", "replace"), "payload")
    if payload != envelope.payload:
        raise VerificationError("tlog entry payload does not match the envelope's payload")
    if _get(content, "payloadHash", "algorithm") != "sha256" or _get(
        content, "payloadHash", "value"
    ) != hashlib.sha256(envelope.payload).hexdigest():
        raise VerificationError("tlog entry payload hash does not match the envelope's payload")
    signatures = _get(logged, "signatures")
    if not isinstance(signatures, list) or len(signatures) != len(envelope.signatures):
        raise VerificationError("tlog entry signatures do not match the envelope's signatures")
    for item, sig in zip(signatures, envelope.signatures, strict=True):
        logged_sig = _b64(_b64(_get(item, "sig"), "signature").decode("ascii", "replace"), "signature")
        if logged_sig != sig.sig:
            raise VerificationError("tlog entry signature does not match the envelope's signature")
        pem = _b64(_get(item, "publicKey"), "public key")
        _check_signer(*_pem_der(pem, "public key"), signer, "public key")


_BODY_CHECKS: dict[str, Callable[[TlogEntry, Bundle, SignerMaterial, bytes | None], None]] = {
    "hashedrekord/0.0.1": _hashedrekord_v001,
    "hashedrekord/0.0.2": _hashedrekord_v002,
    "dsse/0.0.1": _dsse_v001,
    "intoto/0.0.2": _intoto_v002,
}


def check_entry_body(entry: TlogEntry, bundle: Bundle, signer: SignerMaterial, digest: bytes | None) -> None:
    """The logged body records this bundle's content, signature and signer (no CVE-2022-36056).

    ``digest`` is the SHA-256 of the artifact a message signature covers.

    Raises:
        VerificationError: the body names another signature, digest, payload or signer, or its
            kind is not supported.
    """
    check = _BODY_CHECKS.get(entry.kind_version)
    if check is None:
        raise VerificationError(
            f"tlog entry kind {entry.kind_version} is not supported (supported: {', '.join(SUPPORTED_KINDS)})"
        )
    check(entry, bundle, signer, digest)
