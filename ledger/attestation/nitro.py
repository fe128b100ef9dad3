"""AWS Nitro Enclaves attestation documents: parsing and appraisal.

Layout: ../shared/docs/tee-evidence-formats.md §5 (aws-nitro-enclaves-nsm-api
``docs/attestation_process.md``). The evidence is the COSE_Sign1 CBOR (tagged 18 or not), or the
same bytes in base64 text. It carries its chain: ``certificate`` ← ``cabundle[-1]`` ← … ←
``cabundle[0]``, and the root must be the pinned AWS Nitro Enclaves Root G1.

Appraisal steps (the check names):

1. ``cose_signature``: ES384 (r‖s big-endian) over Sig_structure
   ``["Signature1", protected, h'', payload]`` by the key of ``certificate``.
2. ``cert_chain``: to the pinned root, every certificate valid at ``now`` (leaf certificates
   live about 3 hours: pass the document's own time to appraise archived evidence).
3. ``document_time``: the document's timestamp is not after ``now`` (plus 5 minutes of clock
   skew), and not older than ``policy.max_evidence_age`` when set.
4. Policy: ``debug_disabled`` (debug enclaves report PCR0, PCR1 and PCR2 as zeros),
   ``measurement_matches`` (PCR0, the hash of the whole enclave image), ``registers_match``
   (``pcr0``..``pcr15``), ``report_data_binding`` (``nonce``).
"""

from __future__ import annotations

import base64
import binascii
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

import ledger.attestation._x509 as _x509
from ledger.attestation.appraisal import (
    Appraisal,
    Policy,
    check_debug,
    check_measurement,
    check_registers,
    check_report_data,
    require_aware,
)
from ledger.errors import MalformedError

__all__ = [
    "AWS_NITRO_ROOT_FINGERPRINTS",
    "NitroDocument",
    "appraise_nitro",
    "parse_document",
]

COSE_ALG_ES384 = -35
COSE_SIGN1_TAG = 18
MAX_DOCUMENT_BYTES = 64 * 1024
CLOCK_SKEW = timedelta(minutes=5)
#: 9999-12-31T23:59:59.999Z in milliseconds: a later timestamp is no date at all
MAX_TIMESTAMP_MS = 253_402_300_799_999

#: SHA-256 of the DER of the AWS Nitro Enclaves Root G1. Computed once from
#: ../shared/vectors/tee/roots/aws/aws_nitro_enclaves_root_G1.pem (evervault's copy, identical to
#: cabundle[0] of every real document).
AWS_NITRO_ROOT_FINGERPRINTS: Mapping[str, str] = {
    "641a0321a3e244efe456463195d606317ed7cdcc3c1756e09893f3c68f79bb5b": "AWS Nitro Enclaves Root G1",
}


@dataclass(frozen=True)
class NitroDocument:
    protected: bytes
    payload: bytes
    signature: bytes
    module_id: str
    digest: str
    timestamp_ms: int
    pcrs: dict[int, bytes]
    certificate: bytes
    cabundle: list[bytes]
    public_key: bytes | None
    user_data: bytes | None
    nonce: bytes | None

    @property
    def timestamp(self) -> datetime:
        # parse_document bounds timestamp_ms (MAX_TIMESTAMP_MS), so this always converts
        return datetime.fromtimestamp(self.timestamp_ms / 1000, tz=UTC)

    @property
    def debug(self) -> bool:
        return all(not any(self.pcrs.get(i, b"")) for i in (0, 1, 2))


def _cbor(data: bytes, what: str) -> Any:
    decoder = cbor2.CBORDecoder(io.BytesIO(data))
    try:
        value = decoder.decode()
    except (cbor2.CBORError, ValueError, TypeError, OverflowError, RecursionError, EOFError) as exc:
        msg = f"{what} is not valid CBOR: {exc}"
        raise MalformedError(msg) from exc
    if decoder.fp.tell() != len(data):
        msg = f"{what} has trailing bytes after the CBOR item"
        raise MalformedError(msg)
    return value


_BASE64_TEXT = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=\r\n\t ")


def _unwrap_text(data: bytes) -> bytes:
    """Binary CBOR as is; text made only of base64 characters is decoded first."""
    stripped = data.strip()
    if not stripped or not set(stripped) <= _BASE64_TEXT:
        return data
    try:
        return base64.b64decode(b"".join(stripped.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        msg = "Nitro attestation document is neither COSE_Sign1 CBOR nor base64 text"
        raise MalformedError(msg) from exc


def _field(payload: dict[Any, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    if name not in payload:
        msg = f"Nitro attestation document has no {name!r}"
        raise MalformedError(msg)
    value = payload[name]
    if not isinstance(value, kind) or isinstance(value, bool):
        msg = f"Nitro attestation document field {name!r} has the wrong type"
        raise MalformedError(msg)
    return value


def _optional_bytes(payload: dict[Any, Any], name: str) -> bytes | None:
    value = payload.get(name)
    if value is not None and not isinstance(value, bytes):
        msg = f"Nitro attestation document field {name!r} must be bytes or null"
        raise MalformedError(msg)
    return value


def parse_document(data: bytes) -> NitroDocument:
    """Parse a Nitro attestation document (COSE_Sign1 CBOR, or base64 of it).

    Raises:
        MalformedError: not CBOR, not a COSE_Sign1 with ES384, or a payload field missing or
            of the wrong type.
    """
    if len(data) > MAX_DOCUMENT_BYTES:
        msg = f"Nitro attestation document is larger than {MAX_DOCUMENT_BYTES} bytes"
        raise MalformedError(msg)
    outer = _cbor(_unwrap_text(bytes(data)), "Nitro attestation document")
    if isinstance(outer, cbor2.CBORTag):
        if outer.tag != COSE_SIGN1_TAG:
            msg = f"Nitro attestation document has CBOR tag {outer.tag}, not 18 (COSE_Sign1)"
            raise MalformedError(msg)
        outer = outer.value
    # Inside a tag cbor2 yields immutable containers (tuple, frozendict).
    if not isinstance(outer, list | tuple) or len(outer) != 4:
        msg = "Nitro attestation document is not a 4-element COSE_Sign1 array"
        raise MalformedError(msg)
    protected, unprotected, payload_bytes, signature = outer
    if not (isinstance(protected, bytes) and isinstance(payload_bytes, bytes)
            and isinstance(signature, bytes) and isinstance(unprotected, Mapping)):
        msg = "COSE_Sign1 elements have the wrong types"
        raise MalformedError(msg)
    header = _cbor(protected, "COSE protected header")
    if not isinstance(header, dict) or header.get(1) != COSE_ALG_ES384:
        msg = "COSE protected header does not name ES384 (alg -35)"
        raise MalformedError(msg)
    if len(signature) != 96:
        msg = f"ES384 signature must be 96 bytes, got {len(signature)}"
        raise MalformedError(msg)
    payload = _cbor(payload_bytes, "Nitro attestation payload")
    if not isinstance(payload, dict):
        msg = "Nitro attestation payload is not a CBOR map"
        raise MalformedError(msg)
    digest = _field(payload, "digest", str)
    if digest != "SHA384":
        msg = f"Nitro attestation digest {digest!r} is not SHA384"
        raise MalformedError(msg)
    pcrs = _field(payload, "pcrs", dict)
    for index, value in pcrs.items():
        if not (isinstance(index, int) and 0 <= index < 32 and isinstance(value, bytes)
                and len(value) == 48):
            msg = "Nitro attestation PCRs must map 0..31 to 48-byte values"
            raise MalformedError(msg)
    cabundle = _field(payload, "cabundle", list)
    if not cabundle or not all(isinstance(c, bytes) for c in cabundle):
        msg = "Nitro attestation cabundle must be a non-empty list of certificates"
        raise MalformedError(msg)
    timestamp = _field(payload, "timestamp", int)
    if not 0 <= timestamp <= MAX_TIMESTAMP_MS:
        msg = f"Nitro attestation timestamp {timestamp} ms is not between 0 and {MAX_TIMESTAMP_MS} (the year 9999)"
        raise MalformedError(msg)
    document = NitroDocument(
        protected=protected,
        payload=payload_bytes,
        signature=signature,
        module_id=_field(payload, "module_id", str),
        digest=digest,
        timestamp_ms=timestamp,
        pcrs=dict(pcrs),
        certificate=_field(payload, "certificate", bytes),
        cabundle=list(cabundle),
        public_key=_optional_bytes(payload, "public_key"),
        user_data=_optional_bytes(payload, "user_data"),
        nonce=_optional_bytes(payload, "nonce"),
    )
    for der in [document.certificate, *document.cabundle]:
        _x509.load_der(der)
    return document


def sig_structure(protected: bytes, payload: bytes) -> bytes:
    """The COSE Sig_structure for COSE_Sign1 with empty external AAD (RFC 9052 §4.4)."""
    return cbor2.dumps(["Signature1", protected, b"", payload])


def appraise_nitro(
    evidence: bytes,
    *,
    endorsements: Sequence[bytes],
    now: datetime,
    policy: Policy,
    roots: Mapping[str, str] = AWS_NITRO_ROOT_FINGERPRINTS,
) -> Appraisal:
    """Appraise a Nitro Enclaves attestation document (endorsements are not used).

    Raises:
        MalformedError: the document does not parse.
    """
    require_aware(now)
    doc = parse_document(evidence)
    del endorsements  # the document carries its whole chain
    appraisal = Appraisal(kind="nitro")

    # (1) COSE signature by the leaf certificate's key.
    key = _x509.load_der(doc.certificate).public_key()
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp384r1":
        der = encode_dss_signature(
            int.from_bytes(doc.signature[:48], "big"), int.from_bytes(doc.signature[48:], "big")
        )
        try:
            key.verify(der, sig_structure(doc.protected, doc.payload), ec.ECDSA(hashes.SHA384()))
            appraisal.add("cose_signature", True, "ES384 over the COSE Sig_structure verifies")
        except InvalidSignature:
            appraisal.add("cose_signature", False, "the ES384 COSE signature does not verify")
    else:
        appraisal.add("cose_signature", False, "the document certificate's key is not P-384")

    # (2) Chain: certificate ← cabundle[-1] ← … ← cabundle[0] = pinned root.
    if _x509.fingerprint(doc.cabundle[0]) not in roots:
        appraisal.add(
            "cert_chain", False, f"cabundle[0] {_x509.describe(doc.cabundle[0])} is not pinned"
        )
    else:
        chain = _x509.verify_chain(doc.certificate, doc.cabundle, roots, now)
        appraisal.add("cert_chain", chain.ok, chain.reason)

    # (3) The document's own time.
    stamp = doc.timestamp
    if stamp > now + CLOCK_SKEW:
        appraisal.add("document_time", False, f"timestamp {stamp.isoformat()} is after {now}")
    elif policy.max_evidence_age is not None and now - stamp > policy.max_evidence_age:
        appraisal.add(
            "document_time", False, f"timestamp {stamp.isoformat()} is older than allowed"
        )
    else:
        appraisal.add("document_time", True, f"timestamp {stamp.isoformat()}")

    # (4) Policy.
    check_debug(appraisal, policy, debug=doc.debug, what="PCR0-2")
    pcr0 = doc.pcrs.get(0, b"")
    check_measurement(appraisal, policy, pcr0)
    registers = {f"pcr{i}": value for i, value in doc.pcrs.items()}
    check_registers(appraisal, policy, registers)
    check_report_data(appraisal, policy, doc.nonce, pad_to=None, what="nonce")

    appraisal.claims = {
        "kind": "nitro",
        "measurement": pcr0.hex(),
        "report_data": (doc.nonce or b"").hex(),
        "debug": doc.debug,
        "module_id": doc.module_id,
        "timestamp_ms": doc.timestamp_ms,
        "timestamp": stamp.isoformat(),
        "nonce": doc.nonce.hex() if doc.nonce is not None else None,
        "user_data": doc.user_data.hex() if doc.user_data is not None else None,
        "public_key": doc.public_key.hex() if doc.public_key is not None else None,
        **{name: value.hex() for name, value in sorted(registers.items(), key=lambda kv: int(kv[0][3:]))},
    }
    return appraisal
