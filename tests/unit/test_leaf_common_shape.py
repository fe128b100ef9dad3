"""The leaf decoder's common-shape path (one signature, one signer, plain strings, read by slicing)
decodes exactly what the document path decodes, and leaves everything else to it."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.errors import LedgerError
from ledger.records.keys import generate_private_key
from ledger.records.leaf import COMMON_DSSE_LEAF, _common_dsse_leaf, _decode_document, decode_leaf, encode_leaf

_KEY = generate_private_key("ed25519")
_P256 = generate_private_key("ecdsa-p256")
_SPKI = base64.b64encode(_KEY.public_key.spki_der).decode()


def _leaf(payload: str = "e30=", payload_type: str = "application/vnd.in-toto+json", keyid: str | None = "k",
          sig: str = "AAAA", integrated_time: int = 1, key_id: str | None = None, public_key: str = _SPKI) -> bytes:
    signature = {"sig": sig} if keyid is None else {"keyid": keyid, "sig": sig}
    signer = {"public_key": public_key} if key_id is None else {"key_id": key_id, "public_key": public_key}
    envelope = {"payload": payload, "payloadType": payload_type, "signatures": [signature]}
    return (b'{"envelope":' + __import__("json").dumps(envelope, separators=(",", ":"), sort_keys=True).encode()
            + b',"integrated_time":' + str(integrated_time).encode() + b',"kind":"dsse","signers":['
            + __import__("json").dumps(signer, separators=(",", ":"), sort_keys=True).encode() + b"]}")


def _outcome(decode, data: bytes):  # type: ignore[no-untyped-def]
    try:
        leaf = decode(data)
    except LedgerError as exc:
        return ("error", type(exc).__name__)
    env = leaf.envelope
    return (leaf.kind, leaf.integrated_time, tuple(k.key_id for k in leaf.signers), env.payload, env.payload_type,
            tuple((s.sig, s.keyid) for s in env.signatures), dict(env.document))


def _same(data: bytes) -> bool:
    """Both paths agree; returns whether the common path took it."""
    fast = _common_dsse_leaf(data)
    if fast is None:
        return False
    assert _outcome(lambda d: fast, data) == _outcome(_decode_document, data)
    assert _outcome(decode_leaf, data) == _outcome(_decode_document, data)
    return True


@pytest.mark.parametrize("fields", [
    {}, {"keyid": None}, {"keyid": ""}, {"key_id": _KEY.public_key.key_id}, {"payload": ""}, {"integrated_time": 0},
    {"integrated_time": 2**53 - 1}, {"payload_type": "text/plain; charset=x ~!#$%"}, {"sig": "QR=="},
    {"public_key": base64.b64encode(_P256.public_key.spki_der).decode()},
])
def test_common_leaves_take_the_common_path_and_decode_the_same(fields: dict) -> None:  # type: ignore[type-arg]
    data = _leaf(**fields)
    assert COMMON_DSSE_LEAF.fullmatch(data) is not None
    assert _same(data)


@pytest.mark.parametrize("fields", [
    {"payload": "e30"},  # unpadded: the document path pads it
    {"payload": "e3-_"},  # URL-safe alphabet
    {"payload": "abc=="},  # excess padding
    {"sig": "A"}, {"sig": "AB=C"},
    {"key_id": "0" * 64},  # a key_id that is not its key's
    {"public_key": "AAAA"},  # not a key
    {"public_key": base64.b64encode(b"\x00" * 44).decode()},
    {"integrated_time": 2**53},  # beyond a double's exact integers
    {"payload_type": 'a"b'}, {"payload_type": "a\\b"}, {"payload_type": "é"}, {"keyid": "\u2028"},
])
def test_what_the_common_path_does_not_vouch_for_goes_to_the_document_path(fields: dict) -> None:  # type: ignore[type-arg]
    data = _leaf(**fields)
    assert _common_dsse_leaf(data) is None
    assert _outcome(decode_leaf, data) == _outcome(_decode_document, data)


def test_two_signatures_or_signers_are_not_the_common_shape() -> None:
    data = encode_leaf({"payload": "e30=", "payloadType": "x", "signatures": [{"sig": "AAAA"}, {"sig": "AAAB"}]}, 1, [_KEY.public_key])
    assert COMMON_DSSE_LEAF.fullmatch(data) is None and len(decode_leaf(data).envelope.signatures) == 2
    data = encode_leaf({"payload": "e30=", "payloadType": "x", "signatures": [{"sig": "AAAA"}]}, 1, [_KEY.public_key, _P256.public_key])
    assert COMMON_DSSE_LEAF.fullmatch(data) is None and len(decode_leaf(data).signers) == 2


@settings(max_examples=600, deadline=None)
@given(st.data())
def test_any_one_byte_change_decodes_the_same_either_way(data: st.DataObject) -> None:
    base = bytearray(_leaf(keyid=data.draw(st.sampled_from([None, "", "hint"])),
                           key_id=data.draw(st.sampled_from([None, _KEY.public_key.key_id]))))
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(base) - 1))
        base[i] = data.draw(st.sampled_from(b' "\\{}[],:0123456789=+/-_AQaqzZe'))
    mutated = bytes(base)
    if not _same(mutated):
        assert _outcome(decode_leaf, mutated) == _outcome(_decode_document, mutated)


#: an SPKI whose algorithm OID (1.3.101.127) no library knows: cryptography raises its own error
_UNKNOWN_SPKI = bytes.fromhex("302a300506032b657f032100") + b"\x01" * 32


def test_a_key_of_an_unknown_algorithm_is_a_malformed_key_everywhere() -> None:
    from ledger.errors import MalformedError  # noqa: PLC0415
    from ledger.records.keys import load_public_key, public_key_from_der  # noqa: PLC0415

    for load in (public_key_from_der, load_public_key):
        with pytest.raises(MalformedError, match="supported algorithm"):
            load(_UNKNOWN_SPKI)
    pem = b"-----BEGIN PUBLIC KEY-----\n" + base64.encodebytes(_UNKNOWN_SPKI) + b"-----END PUBLIC KEY-----\n"
    with pytest.raises(MalformedError, match="supported algorithm"):
        load_public_key(pem)
    # a leaf recording such a signer is refused as malformed data, by either path
    data = _leaf(public_key=base64.b64encode(_UNKNOWN_SPKI).decode())
    assert COMMON_DSSE_LEAF.fullmatch(data) is not None and _common_dsse_leaf(data) is None
    with pytest.raises(MalformedError):
        decode_leaf(data)


def test_signer_keys_are_ed25519_p256_or_p384_each_with_its_hash() -> None:
    """ECDSA signs with its curve's hash: SHA-256 for P-256, SHA-384 for P-384 (DER or raw r||s);
    the other hash, or any other curve, does not verify or is refused."""
    import os  # noqa: PLC0415

    from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature  # noqa: PLC0415

    from ledger.errors import MalformedError  # noqa: PLC0415
    from ledger.records.keys import PrivateKey, load_private_key, public_key_from_der  # noqa: PLC0415

    message = os.urandom(200)
    for curve, right, wrong in ((ec.SECP256R1(), hashes.SHA256(), hashes.SHA384()), (ec.SECP384R1(), hashes.SHA384(), hashes.SHA256())):
        raw_key = ec.generate_private_key(curve)
        key = PrivateKey(raw_key)
        public = public_key_from_der(key.public_key.spki_der)
        assert public.algorithm == f"ecdsa-p{curve.key_size}"
        assert public.verify(key.sign(message), message) and not public.verify(key.sign(message), message + b"!")
        assert public.verify(raw_key.sign(message, ec.ECDSA(right)), message)
        assert not public.verify(raw_key.sign(message, ec.ECDSA(wrong)), message)
        r, s = decode_dss_signature(key.sign(message))
        size = curve.key_size // 8
        assert public.verify(r.to_bytes(size, "big") + s.to_bytes(size, "big"), message)
        assert public_key_from_der(load_private_key(key.to_pem()).public_key.spki_der).verify(key.sign(message), message)
    p521 = ec.generate_private_key(ec.SECP521R1()).public_key()
    with pytest.raises(MalformedError, match="Ed25519, ECDSA P-256 or ECDSA P-384"):
        public_key_from_der(p521.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))
    # a 256-bit curve that is not P-256 (secp256k1) is another curve, not P-256
    k1 = ec.generate_private_key(ec.SECP256K1()).public_key()
    with pytest.raises(MalformedError, match="Ed25519, ECDSA P-256 or ECDSA P-384"):
        public_key_from_der(k1.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))
