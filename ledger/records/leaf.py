"""The leaf data: what each ledger entry commits to.

A leaf is canonical JSON (RFC 8785) of::

    {"kind": "dsse",
     "envelope": <the DSSE envelope as submitted>,
     "integrated_time": <seconds since the epoch, the ledger's clock>,
     "signers": [{"public_key": <base64 DER SPKI>}, ...]}

so a receipt alone lets anyone re-check the record's signature: ``signers`` names the keys that
the ledger verified it with (the tree commits to them; which of them are *trusted* is policy).
A signer's key id is the SHA-256 of that SPKI, so the leaf does not repeat it (a verdict bundle
carries every key event's leaf, and bytes count); leaves written before this change also carry
``"key_id"``, which must then match the key.

A Sigstore bundle is kept whole, so a receipt lets anyone re-verify it with Sigstore's tools::

    {"bundle": <the Sigstore bundle as submitted (its JSON value, canonicalised)>,
     "integrated_time": <seconds since the epoch, the ledger's clock>,
     "kind": "sigstore-bundle",
     "signer": {"key_id": <hex>, "public_key": <base64 DER SPKI of the key that signed>,
                "identity": {"san", "san_type", "issuer", "extensions": {...}} (keyless only),
                "verified_time": <seconds: the log's integrated time or RFC 3161 time at which the
                                  certificate was checked>, "verified_time_source": "tlog"|"rfc3161",
                "tlog_inclusion": "promised" (only when the Rekor entry carried a SET but no
                                  inclusion proof; absent when inclusion was proven)}}

The leaf hash is SHA-256(0x00 || leaf data).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import rfc8785

from ledger.records.dsse import Envelope, Signature, parse_envelope
from ledger.errors import LedgerError, MalformedError
from ledger.records.keys import PublicKey, public_key_from_der
from ledger.untrusted.json import MAX_JSON_DEPTH, parse_json

__all__ = [
    "COMMON_DSSE_LEAF",
    "LEAF_KIND_BUNDLE",
    "LEAF_KIND_DSSE",
    "Leaf",
    "canonical_json",
    "canonical_strings",
    "decode_leaf",
    "encode_bundle_leaf",
    "encode_leaf",
    "encode_leaf_from_canonical",
    "encode_leaf_with_signers",
    "envelope_hash",
    "plain_canonical",
    "signers_json",
]

LEAF_KIND_DSSE = "dsse"
LEAF_KIND_BUNDLE = "sigstore-bundle"


def canonical_json(value: Any) -> bytes:
    """RFC 8785 canonical JSON of any JSON value."""
    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
        raise MalformedError(f"cannot canonicalise as RFC 8785 JSON: {exc}") from exc


def canonical_strings(value: Any) -> bytes:
    """RFC 8785 for a value built only of strings, null, lists and objects with ASCII keys.

    For such values RFC 8785 is exactly Python's JSON encoder with sorted keys, no spaces and
    ``ensure_ascii=False``: the same escapes (the two-character forms for \\b \\f \\n \\r
    \\t, ``\\u00xx`` in lower case for other controls, ``\\"`` and ``\\\\``), every other
    character as itself, and ASCII keys sort the same by code point as by UTF-16 unit. Numbers
    are where the two differ, so callers pass only number-free values (envelopes after
    ``parse_envelope``, signer lists); tests hold it equal to ``rfc8785`` on such values.
    """
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate is not Unicode text
        raise MalformedError("cannot canonicalise: a string is not valid Unicode") from exc


def envelope_hash(document: Mapping[str, Any]) -> bytes:
    """SHA-256 of the envelope's canonical JSON: the identity used to spot duplicates."""
    return hashlib.sha256(canonical_strings(document)).digest()


def encode_leaf(document: Mapping[str, Any], integrated_time: int, signers: Sequence[PublicKey]) -> bytes:
    """The canonical leaf; ``document`` is a parsed envelope (strings only, see canonical_strings)."""
    return encode_leaf_from_canonical(canonical_strings(document), integrated_time, signers)


def encode_leaf_from_canonical(envelope: bytes, integrated_time: int, signers: Sequence[PublicKey]) -> bytes:
    """The leaf from the envelope's canonical bytes. Keys in RFC 8785 order:
    envelope < integrated_time < kind < signers; each part is itself canonical."""
    return encode_leaf_with_signers(envelope, integrated_time, signers_json(signers))


def signers_json(signers: Sequence[PublicKey]) -> bytes:
    """The leaf's ``signers`` member (canonical JSON); the same for every entry of one signer, so
    a sequencer computes it once per signer set (``encode_leaf_with_signers``)."""
    listed = [{"public_key": base64.b64encode(k.spki_der).decode("ascii")} for k in signers]
    return canonical_strings(listed)


def encode_leaf_with_signers(envelope: bytes, integrated_time: int, signers: bytes) -> bytes:
    """``encode_leaf_from_canonical`` with the signers already encoded by ``signers_json``."""
    if type(integrated_time) is not int or not 0 <= integrated_time < 2**53:
        raise ValueError("integrated_time must be a non-negative integer below 2**53")
    return b"".join(
        (
            b'{"envelope":',
            envelope,
            b',"integrated_time":',
            str(integrated_time).encode("ascii"),
            b',"kind":"' + LEAF_KIND_DSSE.encode("ascii") + b'","signers":',
            signers,
            b"}",
        )
    )


def encode_bundle_leaf(bundle: bytes, integrated_time: int, signer: bytes) -> bytes:
    """A ``sigstore-bundle`` leaf from the bundle's and the signer's canonical JSON. Keys in
    RFC 8785 order: bundle < integrated_time < kind < signer; each part is itself canonical."""
    if type(integrated_time) is not int or not 0 <= integrated_time < 2**53:
        raise ValueError("integrated_time must be a non-negative integer below 2**53")
    return b"".join(
        (
            b'{"bundle":',
            bundle,
            b',"integrated_time":',
            str(integrated_time).encode("ascii"),
            b',"kind":"' + LEAF_KIND_BUNDLE.encode("ascii") + b'","signer":',
            signer,
            b"}",
        )
    )


@dataclass(frozen=True)
class Leaf:
    kind: str
    #: the DSSE envelope; for a bundle leaf the bundle's envelope, None for a message signature
    envelope: Envelope | None
    integrated_time: int
    signers: tuple[PublicKey, ...]
    #: bundle leaves: the Sigstore bundle (JSON value) and the signer record
    bundle: Mapping[str, Any] | None = None
    signer: Mapping[str, Any] | None = None


class _NotPlain(Exception):
    """A number the plain encoder may write differently from RFC 8785 (the exact path decides)."""


def _plain_int(text: str) -> int:
    value = int(text)
    if abs(value) > _SAFE_INTEGER:
        raise _NotPlain
    return value


def _not_plain(_text: str) -> Any:
    raise _NotPlain


_SAFE_INTEGER = 2**53 - 1
_PLAIN_DECODER = json.JSONDecoder(parse_int=_plain_int, parse_float=_not_plain, parse_constant=_not_plain)


def plain_canonical(data: bytes) -> Any:
    """The decoded leaf (an object) when its bytes are provably RFC 8785 by a cheaper test, else None.

    For ASCII bytes whose only numbers are integers within ±(2**53 - 1), RFC 8785 is exactly
    Python's encoder with sorted keys, no spaces and ``ensure_ascii=False`` (``canonical_strings``:
    ASCII keys sort the same by code point as by UTF-16 unit; safe integers print the same). So
    when re-encoding the decoded value that way gives back the very bytes, they are canonical, and
    the strict loader would accept them too: a repeated key, an escaped surrogate, an escape RFC
    8785 does not use or a space would not re-encode to the same bytes, and fewer brackets than
    the depth limit cannot nest deeper than it. Anything else (None) takes the exact path."""
    if not data.isascii() or data.count(b"{") + data.count(b"[") > MAX_JSON_DEPTH:
        return None
    try:
        doc = _PLAIN_DECODER.decode(data.decode("ascii"))
        again = json.dumps(doc, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode("utf-8")
    except (_NotPlain, ValueError, UnicodeEncodeError, RecursionError):
        return None
    return doc if type(doc) is dict and again == data else None


#: The shape ``encode_leaf`` writes for one signature by one recorded signer, with strings that
#: need no escaping: bytes that match are RFC 8785 canonical by construction (keys in order, no
#: spaces, no escapes, the integer in its one form). The keyid hint is optional (key events
#: carry none), and so is the signer's key_id (older leaves).
COMMON_DSSE_LEAF = re.compile(
    rb'\{"envelope":\{"payload":"([A-Za-z0-9+/]*={0,2})","payloadType":"([ !#-\[\]-~]+)",'
    rb'"signatures":\[\{(?:"keyid":"([ !#-\[\]-~]*)",)?"sig":"([A-Za-z0-9+/]+={0,2})"\}\]\},'
    rb'"integrated_time":(0|[1-9][0-9]{0,15}),"kind":"dsse",'
    rb'"signers":\[\{(?:"key_id":"([0-9a-f]{64})",)?"public_key":"([A-Za-z0-9+/]+={0,2})"\}\]\}'
)


def _common_dsse_leaf(data: bytes) -> Leaf | None:
    """The leaf, read by slicing, when ``data`` has the common shape (COMMON_DSSE_LEAF) and
    every field decodes as the exact path would decode it; else None (the exact path decides,
    and words any error). Tests hold the two paths to the same leaves."""
    match = COMMON_DSSE_LEAF.fullmatch(data)
    if match is None:
        return None
    payload_b64, type_raw, keyid_raw, sig_b64, time_raw, key_id_raw, public_key_raw = match.groups()
    integrated_time = int(time_raw)
    if integrated_time > _SAFE_INTEGER:
        return None
    try:
        # the pattern has checked the alphabet; strict mode refuses what base64.b64decode(validate=True) does
        payload = binascii.a2b_base64(payload_b64, strict_mode=True)
        sig = binascii.a2b_base64(sig_b64, strict_mode=True)
        key = public_key_from_der(binascii.a2b_base64(public_key_raw, strict_mode=True))
    except (binascii.Error, LedgerError, ValueError):
        return None
    if not sig or (key_id_raw is not None and key_id_raw.decode("ascii") != key.key_id):
        return None
    payload_type = type_raw.decode("ascii")
    signature: dict[str, str] = {"sig": sig_b64.decode("ascii")}
    keyid = None
    if keyid_raw is not None:
        keyid = keyid_raw.decode("ascii")
        signature = {"keyid": keyid, **signature}
    document = {"payload": payload_b64.decode("ascii"), "payloadType": payload_type, "signatures": [signature]}
    envelope = Envelope(payload=payload, payload_type=payload_type, signatures=(Signature(sig=sig, keyid=keyid or None),), document=document)
    return Leaf(kind=LEAF_KIND_DSSE, envelope=envelope, integrated_time=integrated_time, signers=(key,))


def decode_leaf(data: bytes) -> Leaf:
    """Parse leaf data; it must be exactly the canonical encoding (one accepted encoding).

    Three paths, one result: the common shape read by slicing (:data:`COMMON_DSSE_LEAF`), other
    plain leaves through the cheaper canonical test (:func:`plain_canonical`), the rest through
    the strict loader and RFC 8785."""
    data = bytes(data)
    common = _common_dsse_leaf(data)
    return common if common is not None else _decode_document(data)


def _decode_document(data: bytes) -> Leaf:
    """``decode_leaf`` by decoding the JSON document (the paths other than the common shape)."""
    doc = plain_canonical(data)
    exact = doc is None
    if exact:
        doc = parse_json(data, what="leaf data")
    if not isinstance(doc, dict) or doc.get("kind") not in (LEAF_KIND_DSSE, LEAF_KIND_BUNDLE):
        raise MalformedError("leaf data is not a dsse or sigstore-bundle leaf")
    if exact and canonical_json(doc) != data:
        raise MalformedError("leaf data is not in canonical (RFC 8785) form")
    t = doc.get("integrated_time")
    if type(t) is not int or t < 0:
        raise MalformedError("leaf integrated_time must be a non-negative integer")
    if doc["kind"] == LEAF_KIND_BUNDLE:
        return _decode_bundle_leaf(doc, t)
    if set(doc) != {"envelope", "integrated_time", "kind", "signers"}:
        raise MalformedError("dsse leaf must hold exactly envelope, integrated_time, kind and signers")
    signers = doc.get("signers")
    if not isinstance(signers, list):
        raise MalformedError("leaf signers must be a list")
    keys = []
    for s in signers:
        if not isinstance(s, dict) or not isinstance(s.get("public_key"), str) or set(s) - {"key_id", "public_key"}:
            raise MalformedError("leaf signer must be an object with a base64 public_key (and, in older leaves, its key_id)")
        try:
            der = base64.b64decode(s["public_key"], validate=True)
        except ValueError as exc:
            raise MalformedError("leaf signer public_key is not base64") from exc
        key = public_key_from_der(der)
        if "key_id" in s and s["key_id"] != key.key_id:
            raise MalformedError("leaf signer key_id does not match its public key")
        keys.append(key)
    return Leaf(kind=LEAF_KIND_DSSE, envelope=parse_envelope(doc.get("envelope"), checked=True), integrated_time=t, signers=tuple(keys))


def _decode_bundle_leaf(doc: Mapping[str, Any], t: int) -> Leaf:
    """A ``sigstore-bundle`` leaf (already checked canonical). The bundle itself is parsed only
    as far as the leaf needs: ``ledger.verify`` parses and re-checks it in full."""
    if set(doc) != {"bundle", "integrated_time", "kind", "signer"}:
        raise MalformedError("sigstore-bundle leaf must hold exactly bundle, integrated_time, kind and signer")
    bundle, signer = doc["bundle"], doc["signer"]
    if not isinstance(bundle, dict) or not isinstance(bundle.get("mediaType"), str):
        raise MalformedError("leaf bundle must be a Sigstore bundle (a JSON object with a mediaType)")
    if not isinstance(signer, dict) or not isinstance(signer.get("public_key"), str):
        raise MalformedError("leaf signer must carry a base64 public_key")
    try:
        der = base64.b64decode(signer["public_key"], validate=True)
    except ValueError as exc:
        raise MalformedError("leaf signer public_key is not base64") from exc
    key = public_key_from_der(der)
    if signer.get("key_id") != key.key_id:
        raise MalformedError("leaf signer key_id does not match its public key")
    envelope = parse_envelope(bundle["dsseEnvelope"], checked=True) if "dsseEnvelope" in bundle else None
    return Leaf(
        kind=LEAF_KIND_BUNDLE, envelope=envelope, integrated_time=t, signers=(key,), bundle=bundle, signer=signer
    )
