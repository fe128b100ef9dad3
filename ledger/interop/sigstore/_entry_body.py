"""The body of a bundle's Rekor entry records this bundle: its content, signature and signer.

The log side of an entry (inclusion proof, checkpoint, SET) is :mod:`ledger.interop.rekor`; this module
checks that what the log recorded is the bundle at hand (no CVE-2022-36056), per entry kind:
``hashedrekord`` 0.0.1 and 0.0.2, ``dsse`` 0.0.1 and 0.0.2, and ``intoto`` 0.0.2.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import rfc8785
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ledger.errors import MalformedError, VerificationError
from ledger.interop.sigstore.bundle import Bundle, TlogEntry
from ledger.records.dsse import Envelope
from ledger.untrusted.json import parse_json
from ledger.untrusted.x509 import load_pem_certificates

__all__ = ["SUPPORTED_KINDS", "SignerMaterial", "check_entry_body"]

SUPPORTED_KINDS = ("hashedrekord/0.0.1", "hashedrekord/0.0.2", "dsse/0.0.1", "dsse/0.0.2", "intoto/0.0.2")


@dataclass(frozen=True)
class SignerMaterial:
    """What the body must name as the signer: the certificate, or the managed public key."""

    certificate: x509.Certificate | None
    public_key_der: bytes | None


# --------------------------------------------------------------------------------------------
# Body consistency: the logged entry is this bundle's signature, by this signer, over this content


def _json(body: bytes) -> Any:
    try:
        return parse_json(body, what="tlog entry body")
    except MalformedError as exc:
        raise VerificationError(str(exc)) from exc


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
            return "certificate", load_pem_certificates(pem)[0].public_bytes(serialization.Encoding.DER)
        key = serialization.load_pem_public_key(pem)
    except (ValueError, UnsupportedAlgorithm, MalformedError) as exc:
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
    """A ``hashedrekord/0.0.1`` body: the SHA-256 the signature covers, the signature, the signer.

    For a message signature that is the artifact's digest. A DSSE bundle may be logged this way
    too (Sigstore client spec, "Bundle content vs. Rekor entry kind"; sigstore-go writes it): the
    digest is then SHA-256(PAE(payloadType, payload)), the bytes the envelope's one signature
    covers, as for ``hashedrekord/0.0.2``."""
    doc = _json(entry.canonicalized_body)
    _check_kind(doc, entry)
    if bundle.envelope is not None:
        expected, names = hashlib.sha256(bundle.envelope.pae()).hexdigest(), "the DSSE envelope's PAE"
    else:
        expected, names = (digest or b"").hex(), "the signed artifact digest"
    if _get(doc, "spec", "data", "hash", "algorithm") != "sha256":
        raise VerificationError("tlog entry hash algorithm is not sha256")
    if _get(doc, "spec", "data", "hash", "value") != expected:
        raise VerificationError(f"tlog entry digest does not match {names}")
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
    _check_v2_verifier(_get(spec, "signature", "verifier"), signer)


def _check_v2_verifier(verifier: Any, signer: SignerMaterial) -> None:
    """A Rekor v2 ``Verifier``: the DER of an ``x509Certificate`` or of a ``publicKey``."""
    if isinstance(verifier, dict) and "x509Certificate" in verifier:
        der = _b64(_get(verifier, "x509Certificate", "rawBytes"), "certificate")
        _check_signer("certificate", der, signer, "verifier")
    else:
        der = _b64(_get(verifier, "publicKey", "rawBytes"), "public key")
        _check_signer("key", der, signer, "verifier")


def _envelope_entry(entry: TlogEntry, bundle: Bundle) -> tuple[Any, Envelope]:
    """The body of an entry that records a DSSE envelope (its kind checked), and the bundle's envelope."""
    doc = _json(entry.canonicalized_body)
    _check_kind(doc, entry)
    if bundle.envelope is None:
        raise VerificationError(
            f"the tlog entry ({entry.kind_version}) records a DSSE envelope, but the bundle holds a message signature"
        )
    return doc, bundle.envelope


def _dsse_v001(entry: TlogEntry, bundle: Bundle, signer: SignerMaterial, digest: bytes | None) -> None:
    del digest
    doc, envelope = _envelope_entry(entry, bundle)
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


def _dsse_v002(entry: TlogEntry, bundle: Bundle, signer: SignerMaterial, digest: bytes | None) -> None:
    """A ``dsse/0.0.2`` body (Rekor v2's ``DSSELogEntryV002``) against the bundle's envelope:
    ``payloadHash`` is SHA2_256 of the payload bytes (its digest in base64), and each of
    ``signatures`` holds one of the envelope's signatures (``content``) and its ``verifier``."""
    del digest
    doc, envelope = _envelope_entry(entry, bundle)
    spec = _get(doc, "spec", "dsseV002")
    if _get(spec, "payloadHash", "algorithm") != "SHA2_256":
        raise VerificationError("tlog entry payload hash algorithm is not SHA2_256")
    if _b64(_get(spec, "payloadHash", "digest"), "payload hash") != hashlib.sha256(envelope.payload).digest():
        raise VerificationError("tlog entry payload hash does not match the envelope's payload")
    signatures = _get(spec, "signatures")
    if not isinstance(signatures, list) or len(signatures) != len(envelope.signatures):
        raise VerificationError("tlog entry signatures do not match the envelope's signatures")
    for logged, sig in zip(signatures, envelope.signatures, strict=True):
        if _b64(_get(logged, "content"), "signature") != sig.sig:
            raise VerificationError("tlog entry signature does not match the envelope's signature")
        _check_v2_verifier(_get(logged, "verifier"), signer)


def _intoto_envelope_hashes(envelope: Envelope, logged_signatures: list[Any]) -> set[str]:
    """The values an ``intoto/0.0.2`` entry's ``content.hash`` may hold for this envelope.

    Rekor's type (pkg/types/intoto/v0.0.2, schema: "the hash algorithm and value encompassing
    the entire signed envelope") keeps ``hash`` as the client sent it: the server computes
    ``payloadHash`` itself but never recomputes ``hash``. Its value is therefore the client's
    construction. The one in the field (sigstore-js, which signs npm provenance;
    ``calculateDSSEHash`` in its tlog/format.ts) is SHA-256 of the RFC 8785 JSON of
    ``{"payloadType", "payload": base64(payload), "signatures": [{"sig": base64(sig),
    "publicKey": <the signer's PEM, as logged>, "keyid" (only when not empty)}]}``; sigstore-js
    1.x left ``publicKey`` out. The third is SHA-256(PAE(payloadType, payload)), the bytes the
    signature covers (sigstore-conformance's ``intoto-canonical-log-entry`` logs it). All three
    are recomputed from the bundle's envelope; a hash over other bytes (rekor-cli hashes the
    envelope file as uploaded) cannot be recomputed and is refused.
    """
    (signature,) = envelope.signatures  # a bundle's envelope has exactly one (parse_bundle)
    try:
        pem = base64.b64decode(logged_signatures[0]["publicKey"], validate=True).decode("utf-8")
    except (KeyError, TypeError, binascii.Error, ValueError, UnicodeDecodeError, IndexError):
        pem = None
    item: dict[str, str] = {"sig": base64.b64encode(signature.sig).decode("ascii")}
    if signature.keyid:
        item["keyid"] = signature.keyid
    forms = [item] + ([{**item, "publicKey": pem}] if pem is not None else [])
    return {
        hashlib.sha256(
            rfc8785.dumps(
                {
                    "payloadType": envelope.payload_type,
                    "payload": base64.b64encode(envelope.payload).decode("ascii"),
                    "signatures": [form],
                }
            )
        ).hexdigest()
        for form in forms
    } | {hashlib.sha256(envelope.pae()).hexdigest()}


def _intoto_v002(entry: TlogEntry, bundle: Bundle, signer: SignerMaterial, digest: bytes | None) -> None:
    """An ``intoto/0.0.2`` body (Rekor pkg/types/intoto/v0.0.2) against the bundle's envelope.

    Rekor's ``Canonicalize`` for this kind keeps ``envelope.payloadType``,
    ``envelope.signatures`` (each ``sig`` and ``publicKey``), ``hash`` and ``payloadHash`` and
    drops the payload (``writeOnly`` in the schema), so the body is tied to the envelope by:

    * ``payloadHash``: Rekor sets it in ``Unmarshal`` to hex SHA-256 of the *decoded* payload
      bytes (algorithm ``sha256``, the schema's only value);
    * ``hash``: see :func:`_intoto_envelope_hashes`;
    * each signature: ``sig`` is the envelope's base64 signature string base64-encoded once more
      (Rekor's ``strfmt.Base64([]byte(sig.Sig))``), and ``publicKey`` is base64 of the signer's
      PEM certificate or key;
    * a ``payload`` still present (some logs keep it) is likewise base64 of the envelope's base64
      payload string and must be the envelope's payload.
    """
    del digest
    doc, envelope = _envelope_entry(entry, bundle)
    content = _get(doc, "spec", "content")
    logged = _get(content, "envelope")
    if _get(logged, "payloadType") != envelope.payload_type:
        raise VerificationError("tlog entry payloadType does not match the envelope's")
    if isinstance(logged, dict) and "payload" in logged:
        payload = _b64(_b64(_get(logged, "payload"), "payload").decode("ascii", "replace"), "payload")
        if payload != envelope.payload:
            raise VerificationError("tlog entry payload does not match the envelope's payload")
    if _get(content, "payloadHash", "algorithm") != "sha256":
        raise VerificationError("tlog entry payload hash algorithm is not sha256")
    if _get(content, "payloadHash", "value") != hashlib.sha256(envelope.payload).hexdigest():
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
    if _get(content, "hash", "algorithm") != "sha256":
        raise VerificationError("tlog entry envelope hash algorithm is not sha256")
    if _get(content, "hash", "value") not in _intoto_envelope_hashes(envelope, signatures):
        raise VerificationError("tlog entry envelope hash does not match the envelope")


_BODY_CHECKS: dict[str, Callable[[TlogEntry, Bundle, SignerMaterial, bytes | None], None]] = {
    "hashedrekord/0.0.1": _hashedrekord_v001,
    "hashedrekord/0.0.2": _hashedrekord_v002,
    "dsse/0.0.1": _dsse_v001,
    "dsse/0.0.2": _dsse_v002,
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
