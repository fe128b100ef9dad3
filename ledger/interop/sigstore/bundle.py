"""Sigstore bundles (sigstore/protobuf-specs ``sigstore_bundle.proto``, JSON form): strict parsing.

A bundle carries one signed thing (a ``messageSignature`` over an artifact digest, or a DSSE
envelope), the material to verify it (a Fulcio certificate, or a hint naming a managed public
key), the transparency-log entries that record it and optional RFC 3161 timestamps.

Parsing is strict and bounded: exactly the protobuf-JSON field names (lowerCamelCase), no unknown
fields, standard padded base64 for bytes, int64 as a JSON integer or a canonical decimal string
(protobuf JSON writes them as strings), and named caps on every repeated field. Parsing checks
shape only; :func:`ledger.interop.sigstore.verify.verify_bundle` checks meaning.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping, Set
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from rfc3161_client import decode_timestamp_response

from ledger.records.dsse import Envelope, parse_envelope
from ledger.errors import MalformedError, TooLargeError
from ledger.untrusted.json import parse_json
from ledger.untrusted.x509 import load_der_certificate

__all__ = [
    "BUNDLE_MEDIA_TYPES",
    "MAX_BUNDLE_BYTES",
    "MAX_CHAIN_CERTIFICATES",
    "MAX_PROOF_HASHES",
    "MAX_TIMESTAMPS",
    "MAX_TLOG_ENTRIES",
    "Bundle",
    "InclusionProof",
    "MessageSignature",
    "TlogEntry",
    "parse_bundle",
]

#: A bundle over this many bytes is refused with a TooLargeError naming the limit. It holds a DSSE
#: envelope (``ledger.records.dsse.MAX_ENVELOPE_BYTES``, 4 MiB) plus certificates, proofs and timestamps.
MAX_BUNDLE_BYTES = 8 * 1024 * 1024
#: Real bundles carry one entry; a few leave room for multi-log setups without inviting DoS.
MAX_TLOG_ENTRIES = 8
#: sigstore-go and sigstore-python cap RFC 3161 timestamps at 32.
MAX_TIMESTAMPS = 32
MAX_CHAIN_CERTIFICATES = 10
#: An inclusion proof in a tree of at most 2^64 leaves has at most 64 hashes.
MAX_PROOF_HASHES = 64
MAX_CHECKPOINT_BYTES = 64 * 1024

#: Accepted media types and the bundle version each one names. v0.3 has two spellings.
BUNDLE_MEDIA_TYPES: Mapping[str, str] = {
    "application/vnd.dev.sigstore.bundle+json;version=0.1": "0.1",
    "application/vnd.dev.sigstore.bundle+json;version=0.2": "0.2",
    "application/vnd.dev.sigstore.bundle+json;version=0.3": "0.3",
    "application/vnd.dev.sigstore.bundle.v0.3+json": "0.3",
}

#: canonical decimal of at most 20 digits (every uint64): int() never meets a huge literal
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,19}")
_MAX_INT64 = (1 << 63) - 1
_HASH_ALGORITHMS = {"SHA2_256": 32, "SHA2_384": 48, "SHA2_512": 64}


@dataclass(frozen=True)
class InclusionProof:
    """A Merkle inclusion proof of the entry's leaf, and the log's signed checkpoint (a note)."""

    log_index: int
    root_hash: bytes
    tree_size: int
    hashes: tuple[bytes, ...]
    #: the signed-note text of the checkpoint; required from bundle v0.2 on
    checkpoint: str | None


@dataclass(frozen=True)
class TlogEntry:
    """One transparency-log entry (protobuf-specs ``TransparencyLogEntry``)."""

    log_index: int
    #: the log's id: SHA-256 of its DER public key (Rekor v1) or of ``origin || LF || 0x01 || key``
    log_id: bytes
    kind: str
    version: str
    #: seconds since the epoch; 0 when absent (Rekor v2 does not set it)
    integrated_time: int
    #: the inclusion promise (Rekor v1 SET), DER ECDSA signature
    signed_entry_timestamp: bytes | None
    inclusion_proof: InclusionProof | None
    #: the log entry body exactly as the log hashed it into its leaf
    canonicalized_body: bytes

    @property
    def kind_version(self) -> str:
        return f"{self.kind}/{self.version}"


@dataclass(frozen=True)
class MessageSignature:
    """A signature over an artifact's digest (``hashedrekord``)."""

    #: ``SHA2_256`` etc., or None when the bundle does not state the digest
    digest_algorithm: str | None
    digest: bytes | None
    signature: bytes


@dataclass(frozen=True)
class Bundle:
    """A parsed, not yet verified, Sigstore bundle."""

    media_type: str
    #: ``0.1``, ``0.2`` or ``0.3``
    version: str
    #: the signing certificate first (keyless); empty for a public-key bundle
    certificates: tuple[x509.Certificate, ...]
    #: the hint naming a managed key (``verificationMaterial.publicKey.hint``), or None
    public_key_hint: str | None
    tlog_entries: tuple[TlogEntry, ...]
    #: DER RFC 3161 TimeStampResponses
    rfc3161_timestamps: tuple[bytes, ...]
    message_signature: MessageSignature | None
    envelope: Envelope | None
    #: the bundle as submitted, byte for byte (kept so anyone can re-verify it with Sigstore tools)
    raw: bytes

    @property
    def is_keyless(self) -> bool:
        return bool(self.certificates)

    @property
    def signing_certificate(self) -> x509.Certificate | None:
        return self.certificates[0] if self.certificates else None

    @property
    def signature(self) -> bytes:
        """The content's signature: the DSSE envelope's one signature, or the message signature."""
        if self.envelope is not None:
            return self.envelope.signatures[0].sig
        assert self.message_signature is not None
        return self.message_signature.signature


# --------------------------------------------------------------------------------------------
# Strict field readers. ``where`` is a JSON path used in messages, e.g. tlogEntries[0].logId.


def _object(
    value: object, where: str, allowed: set[str], required: Set[str] = frozenset()
) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise MalformedError(f"bundle {where} must be a JSON object")
    unknown = set(value) - allowed
    if unknown:
        raise MalformedError(f"bundle {where} has unknown fields: {', '.join(sorted(unknown))}")
    missing = required - set(value)
    if missing:
        raise MalformedError(f"bundle {where} is missing {', '.join(sorted(missing))}")
    return value


def _string(value: object, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise MalformedError(f"bundle {where} must be a non-empty string")
    return value


def _bytes(value: object, where: str, *, allow_empty: bool = False) -> bytes:
    """Standard padded base64 (what protobuf JSON writes for ``bytes``)."""
    if not isinstance(value, str):
        raise MalformedError(f"bundle {where} must be a base64 string")
    try:
        decoded = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MalformedError(f"bundle {where} is not valid standard base64") from exc
    if not decoded and not allow_empty:
        raise MalformedError(f"bundle {where} is empty")
    return decoded


def _int64(value: object, where: str) -> int:
    """An int64 as protobuf JSON writes it (a decimal string) or as a plain JSON integer."""
    if isinstance(value, bool):
        raise MalformedError(f"bundle {where} must be an integer")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and _DECIMAL.fullmatch(value):
        number = int(value)
    else:
        raise MalformedError(f"bundle {where} must be a non-negative integer in canonical decimal")
    if not 0 <= number <= _MAX_INT64:
        raise MalformedError(f"bundle {where} is out of range")
    return number


def _list(value: object, where: str, limit: int) -> list[Any]:
    if not isinstance(value, list):
        raise MalformedError(f"bundle {where} must be a list")
    if len(value) > limit:
        raise MalformedError(f"bundle {where} has {len(value)} items, more than {limit}")
    return value


def _certificate(value: object, where: str) -> x509.Certificate:
    obj = _object(value, where, {"rawBytes"}, {"rawBytes"})
    der = _bytes(obj["rawBytes"], f"{where}.rawBytes")
    return load_der_certificate(der, f"bundle {where}")


# --------------------------------------------------------------------------------------------
# Parts


def _parse_inclusion_proof(value: object, where: str) -> InclusionProof:
    obj = _object(
        value,
        where,
        {"logIndex", "rootHash", "treeSize", "hashes", "checkpoint"},
        {"rootHash", "treeSize"},
    )
    root_hash = _bytes(obj["rootHash"], f"{where}.rootHash")
    if len(root_hash) != 32:  # noqa: PLR2004
        raise MalformedError(f"bundle {where}.rootHash is {len(root_hash)} bytes, not 32")
    hashes = []
    for i, item in enumerate(_list(obj.get("hashes", []), f"{where}.hashes", MAX_PROOF_HASHES)):
        digest = _bytes(item, f"{where}.hashes[{i}]")
        if len(digest) != 32:  # noqa: PLR2004
            raise MalformedError(f"bundle {where}.hashes[{i}] is {len(digest)} bytes, not 32")
        hashes.append(digest)
    checkpoint = None
    if "checkpoint" in obj:
        cp = _object(obj["checkpoint"], f"{where}.checkpoint", {"envelope"}, {"envelope"})
        checkpoint = _string(cp["envelope"], f"{where}.checkpoint.envelope")
        if len(checkpoint.encode("utf-8")) > MAX_CHECKPOINT_BYTES:
            raise MalformedError(f"bundle {where}.checkpoint is over {MAX_CHECKPOINT_BYTES} bytes")
    return InclusionProof(
        log_index=_int64(obj.get("logIndex", "0"), f"{where}.logIndex"),
        root_hash=root_hash,
        tree_size=_int64(obj["treeSize"], f"{where}.treeSize"),
        hashes=tuple(hashes),
        checkpoint=checkpoint,
    )


def _parse_tlog_entry(value: object, where: str) -> TlogEntry:
    obj = _object(
        value,
        where,
        {
            "logIndex",
            "logId",
            "kindVersion",
            "integratedTime",
            "inclusionPromise",
            "inclusionProof",
            "canonicalizedBody",
        },
        {"logId", "kindVersion", "canonicalizedBody"},
    )
    log_id = _object(obj["logId"], f"{where}.logId", {"keyId"}, {"keyId"})
    kind_version = _object(
        obj["kindVersion"], f"{where}.kindVersion", {"kind", "version"}, {"kind", "version"}
    )
    # protobuf JSON writes an unset message field as absent, but some producers (older npm
    # publish attestations, cosign) write ``null``: both mean "not present".
    promise = None
    if obj.get("inclusionPromise") is not None:
        item = _object(
            obj["inclusionPromise"],
            f"{where}.inclusionPromise",
            {"signedEntryTimestamp"},
            {"signedEntryTimestamp"},
        )
        promise = _bytes(item["signedEntryTimestamp"], f"{where}.inclusionPromise.signedEntryTimestamp")
    proof = None
    if obj.get("inclusionProof") is not None:
        proof = _parse_inclusion_proof(obj["inclusionProof"], f"{where}.inclusionProof")
    return TlogEntry(
        log_index=_int64(obj.get("logIndex", "0"), f"{where}.logIndex"),
        log_id=_bytes(log_id["keyId"], f"{where}.logId.keyId"),
        kind=_string(kind_version["kind"], f"{where}.kindVersion.kind"),
        version=_string(kind_version["version"], f"{where}.kindVersion.version"),
        integrated_time=_int64(obj.get("integratedTime", "0"), f"{where}.integratedTime"),
        signed_entry_timestamp=promise,
        inclusion_proof=proof,
        canonicalized_body=_bytes(obj["canonicalizedBody"], f"{where}.canonicalizedBody"),
    )


def _parse_message_signature(value: object) -> MessageSignature:
    obj = _object(value, "messageSignature", {"messageDigest", "signature"}, {"signature"})
    algorithm = digest = None
    if "messageDigest" in obj:
        md = _object(
            obj["messageDigest"], "messageSignature.messageDigest", {"algorithm", "digest"}, {"algorithm", "digest"}
        )
        algorithm = _string(md["algorithm"], "messageSignature.messageDigest.algorithm")
        if algorithm not in _HASH_ALGORITHMS:
            raise MalformedError(
                f"bundle messageSignature.messageDigest.algorithm {algorithm!r} is not one of "
                f"{', '.join(_HASH_ALGORITHMS)}"
            )
        digest = _bytes(md["digest"], "messageSignature.messageDigest.digest")
        if len(digest) != _HASH_ALGORITHMS[algorithm]:
            raise MalformedError(
                f"bundle messageSignature.messageDigest.digest is {len(digest)} bytes, "
                f"not {_HASH_ALGORITHMS[algorithm]} for {algorithm}"
            )
    return MessageSignature(
        digest_algorithm=algorithm,
        digest=digest,
        signature=_bytes(obj["signature"], "messageSignature.signature"),
    )


def _parse_verification_material(
    value: object, version: str
) -> tuple[tuple[x509.Certificate, ...], str | None, tuple[TlogEntry, ...], tuple[bytes, ...]]:
    obj = _object(
        value,
        "verificationMaterial",
        {"publicKey", "x509CertificateChain", "certificate", "tlogEntries", "timestampVerificationData"},
    )
    # Exactly one of the three kinds of signer material (a protobuf oneof).
    present = [k for k in ("publicKey", "x509CertificateChain", "certificate") if k in obj]
    if len(present) != 1:
        raise MalformedError(
            "bundle verificationMaterial must hold exactly one of publicKey, "
            f"x509CertificateChain or certificate (found {', '.join(present) or 'none'})"
        )
    certificates: tuple[x509.Certificate, ...] = ()
    hint = None
    if "publicKey" in obj:
        key = _object(obj["publicKey"], "verificationMaterial.publicKey", {"hint"})
        hint = key.get("hint")
        if hint is not None:
            hint = _string(hint, "verificationMaterial.publicKey.hint")
        hint = hint or ""
    elif "x509CertificateChain" in obj:
        chain = _object(
            obj["x509CertificateChain"], "verificationMaterial.x509CertificateChain", {"certificates"}, {"certificates"}
        )
        items = _list(
            chain["certificates"], "verificationMaterial.x509CertificateChain.certificates", MAX_CHAIN_CERTIFICATES
        )
        if not items:
            raise MalformedError("bundle verificationMaterial.x509CertificateChain.certificates is empty")
        certificates = tuple(
            _certificate(item, f"verificationMaterial.x509CertificateChain.certificates[{i}]")
            for i, item in enumerate(items)
        )
    else:
        if version != "0.3":
            raise MalformedError(f"bundle v{version} must use x509CertificateChain, not certificate (v0.3 only)")
        certificates = (_certificate(obj["certificate"], "verificationMaterial.certificate"),)
    if version == "0.3" and "x509CertificateChain" in obj:
        raise MalformedError("bundle v0.3 must use certificate, not x509CertificateChain")

    entries = tuple(
        _parse_tlog_entry(item, f"verificationMaterial.tlogEntries[{i}]")
        for i, item in enumerate(
            _list(obj.get("tlogEntries", []), "verificationMaterial.tlogEntries", MAX_TLOG_ENTRIES)
        )
    )
    timestamps: list[bytes] = []
    if "timestampVerificationData" in obj:
        tvd = _object(
            obj["timestampVerificationData"], "verificationMaterial.timestampVerificationData", {"rfc3161Timestamps"}
        )
        where = "verificationMaterial.timestampVerificationData.rfc3161Timestamps"
        for i, item in enumerate(_list(tvd.get("rfc3161Timestamps", []), where, MAX_TIMESTAMPS)):
            ts = _object(item, f"{where}[{i}]", {"signedTimestamp"}, {"signedTimestamp"})
            token = _bytes(ts["signedTimestamp"], f"{where}[{i}].signedTimestamp")
            try:
                decode_timestamp_response(token)
            except ValueError as exc:
                raise MalformedError(f"bundle {where}[{i}] is not an RFC 3161 TimeStampResponse") from exc
            timestamps.append(token)
    return certificates, hint, entries, tuple(timestamps)


def parse_bundle(data: bytes) -> Bundle:
    """Parse a Sigstore bundle (JSON) without verifying it.

    Args:
        data: the bundle's JSON bytes, as submitted.

    Returns:
        The parsed bundle; ``raw`` keeps ``data`` unchanged.

    Raises:
        TooLargeError: the bundle is over ``MAX_BUNDLE_BYTES``.
        MalformedError: it is not JSON, not a bundle of a known media type, or any field is
            missing, unknown, of the wrong type or badly encoded (the message names the field).
    """
    raw = bytes(data)
    if len(raw) > MAX_BUNDLE_BYTES:
        raise TooLargeError(f"bundle is {len(raw)} bytes, over the limit of {MAX_BUNDLE_BYTES} bytes")
    doc = parse_json(raw, what="bundle")
    obj = _object(
        doc,
        "document",
        {"mediaType", "verificationMaterial", "messageSignature", "dsseEnvelope"},
        {"mediaType", "verificationMaterial"},
    )
    media_type = obj["mediaType"]
    if not isinstance(media_type, str) or media_type not in BUNDLE_MEDIA_TYPES:
        raise MalformedError(
            f"bundle mediaType {str(media_type)[:100]!r} is not a known Sigstore bundle type "
            f"(accepted: {', '.join(BUNDLE_MEDIA_TYPES)})"
        )
    version = BUNDLE_MEDIA_TYPES[media_type]
    certificates, hint, entries, timestamps = _parse_verification_material(obj["verificationMaterial"], version)

    if ("messageSignature" in obj) == ("dsseEnvelope" in obj):
        raise MalformedError("bundle must hold exactly one of messageSignature or dsseEnvelope")
    message = envelope = None
    if "messageSignature" in obj:
        message = _parse_message_signature(obj["messageSignature"])
    else:
        envelope = parse_envelope(obj["dsseEnvelope"])
        # A bundle's envelope carries exactly one signature (protobuf-specs).
        if len(envelope.signatures) != 1:
            raise MalformedError(
                f"bundle dsseEnvelope has {len(envelope.signatures)} signatures; a bundle carries exactly one"
            )
    return Bundle(
        media_type=media_type,
        version=version,
        certificates=certificates,
        public_key_hint=hint,
        tlog_entries=entries,
        rfc3161_timestamps=timestamps,
        message_signature=message,
        envelope=envelope,
        raw=raw,
    )
