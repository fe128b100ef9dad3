"""DSSE envelopes (secure-systems-lab/dsse v1.0.2): parse, sign and verify.

Signatures cover PAE = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body, over the decoded
payload. ``keyid`` is an unauthenticated hint: a verifier never depends on it.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ledger.errors import MalformedError, SignatureError, TooLargeError, shorten
from ledger.records.keys import PrivateKey, PublicKey
from ledger.untrusted.json import check_json, parse_json

__all__ = [
    "MAX_ENVELOPE_BYTES",
    "MAX_SIGNATURES",
    "Envelope",
    "Signature",
    "pae",
    "parse_envelope",
    "sign_envelope",
    "EnvelopeVerification",
    "verify_envelope",
    "verify_envelope_result",
]

#: An envelope over this many bytes (as JSON) is refused with a TooLargeError naming the limit.
MAX_ENVELOPE_BYTES = 4 * 1024 * 1024
MAX_SIGNATURES = 16


def pae(payload_type: str, payload: bytes) -> bytes:
    """The DSSE pre-authentication encoding."""
    t = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


def _b64decode(value: object, what: str) -> bytes:
    """Standard or URL-safe base64, with or without padding (DSSE requires accepting both)."""
    if not isinstance(value, str):
        raise MalformedError(f"{what} must be a base64 string")
    text = value.strip()
    if "-" in text or "_" in text:
        text = text.replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MalformedError(f"{what} is not valid base64") from exc


@dataclass(frozen=True)
class Signature:
    sig: bytes
    keyid: str | None = None


@dataclass(frozen=True)
class Envelope:
    payload: bytes
    payload_type: str
    signatures: tuple[Signature, ...]
    #: the envelope as a JSON object, as submitted (kept in the leaf)
    document: Mapping[str, Any]

    def pae(self) -> bytes:
        return pae(self.payload_type, self.payload)


def parse_envelope(data: bytes | str | Mapping[str, Any], *, limit: int = MAX_ENVELOPE_BYTES, checked: bool = False) -> Envelope:
    """Parse a DSSE envelope from JSON bytes or an already decoded object. Strict and bounded.

    ``checked``: the object is part of a value the strict loader (``parse_json``) or the leaf
    decoder's canonical test already accepted whole, so its JSON rules need no second walk."""
    if isinstance(data, bytes | str):
        raw = data.encode("utf-8") if isinstance(data, str) else data
        if len(raw) > limit:
            raise TooLargeError(f"envelope is {len(raw)} bytes, over the limit of {limit} bytes")
        doc = parse_json(raw, what="envelope")
    else:
        doc = data
        if not checked:
            check_json(doc, what="envelope")
    if not isinstance(doc, dict):
        raise MalformedError("envelope must be a JSON object")
    unknown = set(doc) - {"payload", "payloadType", "signatures"}
    if "_type" in doc and "subject" in doc and "payload" not in doc:
        raise MalformedError(
            "this is an in-toto statement, not a signed DSSE envelope: sign it first "
            "(provledger sign --key KEY.pem STATEMENT.json > envelope.json) and submit the envelope"
        )
    if unknown:
        raise MalformedError(f"envelope has unknown fields: {shorten(', '.join(sorted(unknown)), 200)}")
    payload_type = doc.get("payloadType")
    if not isinstance(payload_type, str) or not payload_type:
        raise MalformedError("envelope payloadType must be a non-empty string")
    payload = _b64decode(doc.get("payload"), "envelope payload")
    sigs = doc.get("signatures")
    if not isinstance(sigs, list) or not sigs:
        raise MalformedError("envelope signatures must be a non-empty list")
    if len(sigs) > MAX_SIGNATURES:
        raise MalformedError(f"envelope has {len(sigs)} signatures, more than {MAX_SIGNATURES}")
    parsed = []
    for i, s in enumerate(sigs):
        if not isinstance(s, dict) or set(s) - {"keyid", "sig"}:
            raise MalformedError(f"envelope signature {i} must be an object with sig and keyid")
        keyid = s.get("keyid")
        if keyid is not None and not isinstance(keyid, str):
            raise MalformedError(f"envelope signature {i} keyid must be a string")
        sig = _b64decode(s.get("sig"), f"envelope signature {i}")
        if not sig:
            raise MalformedError(f"envelope signature {i} is empty")
        parsed.append(Signature(sig=sig, keyid=keyid or None))
    return Envelope(payload=payload, payload_type=payload_type, signatures=tuple(parsed), document=doc)


def sign_envelope(payload: bytes, payload_type: str, signers: Sequence[PrivateKey], *, hint: bool = True) -> dict[str, Any]:
    """A DSSE envelope (as a JSON object) signed by each signer, keyid = the signer's key id
    (``hint=False``: no keyid, for envelopes whose verifier knows the one key to try)."""
    message = pae(payload_type, payload)
    return {
        "payload": base64.b64encode(payload).decode("ascii"),
        "payloadType": payload_type,
        "signatures": [
            ({"keyid": s.key_id} if hint else {}) | {"sig": base64.b64encode(s.sign(message)).decode("ascii")}
            for s in signers
        ],
    }


@dataclass(frozen=True)
class EnvelopeVerification:
    """Which keys signed an envelope, and which signatures no known key verifies."""

    keys: list[PublicKey]
    #: (signature position, keyid hint) of each signature that no candidate key verifies
    unverified: list[tuple[int, str | None]]


def verify_envelope_result(envelope: Envelope, keys: Iterable[PublicKey]) -> EnvelopeVerification:
    """Try every signature: first the key its keyid hints at, then every other candidate key."""
    candidates = list(keys)
    by_id = {k.key_id: k for k in candidates}
    message = envelope.pae()
    verified: dict[str, PublicKey] = {}
    unverified: list[tuple[int, str | None]] = []
    for i, sig in enumerate(envelope.signatures):
        hinted = by_id.get(sig.keyid) if sig.keyid else None
        order = [hinted, *(k for k in candidates if k is not hinted)] if hinted else candidates
        for key in order:
            if key.verify(sig.sig, message):
                verified[key.key_id] = key
                break
        else:
            unverified.append((i, sig.keyid))
    return EnvelopeVerification(keys=list(verified.values()), unverified=unverified)


def verify_envelope(envelope: Envelope, keys: Iterable[PublicKey]) -> list[PublicKey]:
    """The distinct keys that signed the envelope; SignatureError unless every signature verifies."""
    result = verify_envelope_result(envelope, keys)
    if result.unverified:
        i, hint = result.unverified[0]
        named = f" (keyid {hint})" if hint else ""
        raise SignatureError(f"envelope signature {i}{named} does not verify with any known key")
    return result.keys
