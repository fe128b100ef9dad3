"""Re-verifying the DSSE signatures a leaf holds, with the signers the leaf records."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from ledger.records.dsse import pae, parse_envelope, verify_envelope_result
from ledger.errors import LedgerError, MalformedError
from ledger.records.keys import PublicKey, public_key_from_der
from ledger.records.leaf import LEAF_KIND_BUNDLE, LEAF_KIND_DSSE, decode_leaf, plain_canonical

__all__ = ["check_leaf_signatures"]


#: Signer public keys decoded once per process (a ledger has few signers, many entries).
MAX_CACHED_KEYS = 4096

_LEAF_KEYS = frozenset({"kind", "envelope", "integrated_time", "signers"})
#: a leaf signer: its public key, and in leaves written before key ids were left implicit, its key id
_SIGNER_SHAPES = (frozenset({"public_key"}), frozenset({"key_id", "public_key"}))
_MAX_SAFE_INT = 2**53  # RFC 8785 numbers are IEEE doubles: beyond this the fast path gives way


class _Signers:
    """Signer keys decoded from leaves, cached by their base64 DER (few signers, many entries)."""

    def __init__(self) -> None:
        self._keys: dict[str, PublicKey] = {}

    def key(self, public_key: str, key_id: str | None) -> PublicKey:
        key = self._keys.get(public_key)
        if key is None:
            try:
                key = public_key_from_der(base64.b64decode(public_key, validate=True))
            except ValueError as exc:
                raise MalformedError("leaf signer public_key is not base64") from exc
            if len(self._keys) >= MAX_CACHED_KEYS:
                self._keys.clear()
            self._keys[public_key] = key
        if key_id is not None and key.key_id != key_id:
            raise MalformedError("leaf signer key_id does not match its public key")
        return key


_SIGNERS = _Signers()


#: The shape ``ledger.records.leaf.encode_leaf`` writes for one signature by one recorded signer, with
#: strings that need no escaping: bytes that match are RFC 8785 canonical by construction. The
#: keyid hint is optional (key events carry none), and so is the signer's key_id (older leaves).
_COMMON_LEAF = re.compile(
    rb'\{"envelope":\{"payload":"([A-Za-z0-9+/]*={0,2})","payloadType":"([ !#-\[\]-~]+)",'
    rb'"signatures":\[\{(?:"keyid":"([ !#-\[\]-~]*)",)?"sig":"([A-Za-z0-9+/]+={0,2})"\}\]\},'
    rb'"integrated_time":(0|[1-9][0-9]{0,15}),"kind":"dsse",'
    rb'"signers":\[\{(?:"key_id":"([0-9a-f]{64})",)?"public_key":"([A-Za-z0-9+/]+={0,2})"\}\]\}'
)


def check_leaf_signatures(data: bytes, signers: _Signers = _SIGNERS) -> tuple[str, str] | None:
    """Re-verify the DSSE envelope in leaf ``data`` with the signers the leaf records.

    Returns None when every recorded signer's signature verifies, else (problem kind, message).

    Three paths, one verdict. The common leaf (one signature, one signer, plain strings) is
    matched as bytes: its fields are sliced out without decoding JSON, and since they need no
    escaping the bytes are canonical by construction. Other leaves of the ``encode_leaf`` shape
    pass the leaf decoder's own canonical test (``ledger.records.leaf.plain_canonical``) with
    their signer keys from a cache. Anything else takes the exact path,
    ``ledger.records.leaf.decode_leaf``. Tests hold the paths to the same verdicts.
    """
    match = _COMMON_LEAF.fullmatch(data)
    if match is not None:
        payload_b64, payload_type, _keyid, sig_b64, t, key_id, public_key = match.groups()
        try:
            # the pattern has checked the alphabet, which is all that validate=True adds
            payload = binascii.a2b_base64(payload_b64)
            sig = binascii.a2b_base64(sig_b64)
        except binascii.Error:
            pass  # padding the strict decoder refuses: let the exact path judge
        else:
            if sig and int(t) < _MAX_SAFE_INT:
                try:
                    key = signers.key(public_key.decode("ascii"), key_id.decode("ascii") if key_id is not None else None)
                except LedgerError as exc:
                    return "leaf_data", exc.diagnostics()
                if key.verify(sig, pae(payload_type.decode("ascii"), payload)):
                    return None
                return "signature", f"no signature in its envelope verifies with its recorded signer {key.key_id}"
    try:
        keys, envelope = _decode_fast(data, signers)
    except _SlowPath:
        try:
            leaf = decode_leaf(data)
        except LedgerError as exc:
            return "leaf_data", exc.diagnostics()
        if leaf.kind == LEAF_KIND_BUNDLE:
            return _check_bundle_leaf(leaf)
        keys, envelope = list(leaf.signers), leaf.envelope
    except LedgerError as exc:
        return "leaf_data", exc.diagnostics()
    if not keys:
        return "signature", "its leaf records no signer"
    verified = {k.key_id for k in verify_envelope_result(envelope, keys).keys}
    for key in keys:
        if key.key_id not in verified:
            return "signature", f"no signature in its envelope verifies with its recorded signer {key.key_id}"
    return None


def _check_bundle_leaf(leaf: Any) -> tuple[str, str] | None:
    """A Sigstore-bundle leaf: its content signature by its recorded signer, as an offline
    verifier of its receipt checks it (``ledger.verify``). The certificate chain and transparency
    entries inside the bundle are Sigstore's to re-check (the ledger checked them on entry)."""
    from ledger.verify import verify_bundle_leaf_signature  # noqa: PLC0415

    try:
        verify_bundle_leaf_signature(leaf)
    except LedgerError as exc:
        return "signature", exc.diagnostics()
    return None


class _SlowPath(Exception):
    """The leaf is not in the common shape: decode it the exact (slow) way."""


def _decode_fast(data: bytes, signers: _Signers) -> tuple[list[PublicKey], Any]:
    """A leaf of ``encode_leaf``'s shape whose bytes pass the leaf decoder's canonical test
    (``ledger.records.leaf.plain_canonical``), with its signers from the cache; else _SlowPath."""
    doc = plain_canonical(data)
    if doc is None or doc.keys() != _LEAF_KEYS or doc["kind"] != LEAF_KIND_DSSE:
        raise _SlowPath
    t, recorded = doc["integrated_time"], doc["signers"]
    if type(t) is not int or t < 0 or type(recorded) is not list:
        raise _SlowPath
    for s in recorded:
        if type(s) is not dict or s.keys() not in _SIGNER_SHAPES or type(s["public_key"]) is not str or type(s.get("key_id", "")) is not str:
            raise _SlowPath
    envelope = parse_envelope(doc["envelope"], checked=True)
    return [signers.key(s["public_key"], s.get("key_id")) for s in recorded], envelope
