"""Signed-note verifier keys (types 0x01, 0x02, 0x04, 0x05), vkeys, and verification under the
C2SP rules (unknown keys ignored, a bad known signature fails the note, duplicates dropped)."""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import nacl.exceptions
import nacl.signing
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ledger.errors import MalformedError, SignatureError
from ledger.tlog.note.encoding import (
    Note,
    SIG_COSIGNATURE_V1,
    SIG_ECDSA,
    SIG_ED25519,
    SIG_RFC6962,
    Signature,
    _DECIMAL,
    _ED25519_KEY_SIZE,
    _ED25519_SIG_SIZE,
    _KEY_ID_HEX,
    _MAX_UINT64,
    _TIMESTAMP_SIZE,
    _b64encode,
    _check_key_name,
    _key_id,
    _to_bytes,
    b64decode_canonical,
    is_valid_key_name,
    parse_note,
)

# --------------------------------------------------------------------------------------------
# Verifiers


class Verifier(Protocol):
    """A key that can check signatures on a note's text."""

    @property
    def name(self) -> str:
        """The key name in the signature line."""
        ...

    @property
    def key_id(self) -> int:
        """The 4-byte key id as a uint32."""
        ...

    def verify(self, msg: bytes, sig: bytes) -> bool:
        """Whether ``sig`` (without the key id) is valid over the note text ``msg``."""
        ...


def _load_p256_spki(spki: bytes, what: str) -> ec.EllipticCurvePublicKey:
    """A P-256 public key from its DER SubjectPublicKeyInfo, in canonical DER only."""
    try:
        key = serialization.load_der_public_key(spki)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise MalformedError(f"{what} is not a DER SubjectPublicKeyInfo") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise MalformedError(f"{what} is not an ECDSA P-256 key")
    canonical = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if canonical != spki:
        raise MalformedError(f"{what} is not in canonical DER")
    return key


def _ed25519_verify(key: nacl.signing.VerifyKey, msg: bytes, sig: bytes) -> bool:
    if len(sig) != _ED25519_SIG_SIZE:
        return False
    try:
        key.verify(msg, sig)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.CryptoError, ValueError):
        return False
    return True


def _make_ed25519_key(public_key: bytes) -> nacl.signing.VerifyKey:
    if len(public_key) != _ED25519_KEY_SIZE:
        raise MalformedError(f"Ed25519 public key is {len(public_key)} bytes, not 32")
    return nacl.signing.VerifyKey(bytes(public_key))


class NamedKey:
    """What every note key has: the name its signature lines carry and its 4-byte key id."""

    _name: str
    _key_id: int

    @property
    def name(self) -> str:
        return self._name

    @property
    def key_id(self) -> int:
        return self._key_id


class _Ed25519KeyVerifier(NamedKey):
    """What the Ed25519-keyed types (0x01 and 0x04) share: name, key id and vkey of
    ``sig_type || public key``; subclasses say what the signature covers."""

    sig_type: int

    def __init__(self, name: str, public_key: bytes) -> None:
        _check_key_name(name)
        self._key = _make_ed25519_key(public_key)
        self._name = name
        self.public_key = bytes(public_key)
        self._key_id = _key_id(name, self.sig_type, self.public_key)

    @property
    def vkey(self) -> str:
        key = bytes([self.sig_type]) + self.public_key
        return f"{self._name}+{self._key_id:08x}+{_b64encode(key)}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.vkey!r})"


class Ed25519Verifier(_Ed25519KeyVerifier):
    """Type 0x01: an Ed25519 signature over the note text."""

    sig_type = SIG_ED25519

    def verify(self, msg: bytes, sig: bytes) -> bool:
        return _ed25519_verify(self._key, msg, sig)


def cosignature_message(text: str | bytes, timestamp: int) -> bytes:
    """The bytes a cosignature/v1 signs: ``cosignature/v1\\ntime <ts>\\n`` then the note text."""
    if not 0 <= timestamp <= _MAX_UINT64:
        raise ValueError(f"cosignature timestamp {timestamp} is not a uint64")
    return f"cosignature/v1\ntime {timestamp}\n".encode("ascii") + _to_bytes(text)


class CosignatureV1Verifier(_Ed25519KeyVerifier):
    """Type 0x04: a witness cosignature, ``timestamp u64 BE || Ed25519 signature``."""

    sig_type = SIG_COSIGNATURE_V1

    @staticmethod
    def signature_timestamp(sig: bytes) -> int:
        """The cosigner's timestamp (seconds since the Unix epoch) carried in ``sig``."""
        if len(sig) != _TIMESTAMP_SIZE + _ED25519_SIG_SIZE:
            raise MalformedError(f"cosignature is {len(sig)} bytes, not 72")
        return int.from_bytes(sig[:_TIMESTAMP_SIZE], "big")

    def verify(self, msg: bytes, sig: bytes) -> bool:
        if len(sig) != _TIMESTAMP_SIZE + _ED25519_SIG_SIZE:
            return False
        timestamp = int.from_bytes(sig[:_TIMESTAMP_SIZE], "big")
        return _ed25519_verify(
            self._key, cosignature_message(msg, timestamp), sig[_TIMESTAMP_SIZE:]
        )


class ECDSAVerifier(NamedKey):
    """Type 0x02: an ECDSA P-256 SHA-256 DER signature over the note text (Rekor v1 style).

    The key id is ``SHA-256(DER SPKI)[:4]``; unlike the other types it does not hash the name.
    """

    sig_type = SIG_ECDSA

    def __init__(self, name: str, spki_der: bytes) -> None:
        _check_key_name(name)
        self._key = _load_p256_spki(bytes(spki_der), "ECDSA verifier key")
        self._name = name
        self.spki_der = bytes(spki_der)
        self._key_id = int.from_bytes(hashlib.sha256(self.spki_der).digest()[:4], "big")

    @property
    def vkey(self) -> str:
        return f"{self._name}+{self._key_id:08x}+{_b64encode(bytes([SIG_ECDSA]) + self.spki_der)}"

    def verify(self, msg: bytes, sig: bytes) -> bool:
        try:
            self._key.verify(sig, msg, ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, ValueError):
            return False
        return True

    def __repr__(self) -> str:
        return f"ECDSAVerifier({self.vkey!r})"


# TLS DigitallySigned: hash algorithm sha256 (4), signature algorithm ecdsa (3).
_TLS_SHA256 = 4
_TLS_ECDSA = 3
_RFC6962_HEADER = struct.Struct(">QBBH")  # timestamp_ms, hash alg, sig alg, signature length


class RFC6962Verifier(NamedKey):
    """Type 0x05: an RFC 6962 TreeHeadSignature over a checkpoint (static-ct-api).

    The signature is ``timestamp_ms u64 || TLS DigitallySigned(ECDSA P-256 SHA-256)`` over
    ``0x00 (v1) || 0x01 (tree_hash) || timestamp || tree_size u64 || root[32]``. That signed
    structure does not cover the origin, so the note text must be a checkpoint without extension
    lines whose origin equals this key's name.
    """

    sig_type = SIG_RFC6962

    def __init__(self, name: str, spki_der: bytes) -> None:
        _check_key_name(name)
        self._key = _load_p256_spki(bytes(spki_der), "RFC 6962 verifier key")
        self._name = name
        self.spki_der = bytes(spki_der)
        self._key_id = _key_id(name, SIG_RFC6962, hashlib.sha256(self.spki_der).digest())

    @property
    def vkey(self) -> str:
        key = bytes([SIG_RFC6962]) + self.spki_der
        return f"{self._name}+{self._key_id:08x}+{_b64encode(key)}"

    @staticmethod
    def signature_timestamp(sig: bytes) -> int:
        """The tree head's timestamp in milliseconds since the Unix epoch."""
        if len(sig) < _RFC6962_HEADER.size:
            raise MalformedError(f"RFC 6962 tree head signature is only {len(sig)} bytes")
        return int.from_bytes(sig[:_TIMESTAMP_SIZE], "big")

    def _tree_head(self, msg: bytes) -> tuple[int, bytes] | None:
        """(size, root) of a three-line checkpoint whose origin is this key's name."""
        try:
            text = msg.decode("utf-8")
        except UnicodeDecodeError:
            return None
        lines = text.split("\n")
        if len(lines) != 4 or lines[3] != "" or lines[0] != self._name:  # noqa: PLR2004
            return None
        if not _DECIMAL.fullmatch(lines[1]) or int(lines[1]) > _MAX_UINT64:
            return None
        try:
            root = b64decode_canonical(lines[2], "root")
        except MalformedError:
            return None
        if len(root) != 32:  # noqa: PLR2004
            return None
        return int(lines[1]), root

    def verify(self, msg: bytes, sig: bytes) -> bool:
        head = self._tree_head(msg)
        if head is None or len(sig) < _RFC6962_HEADER.size:
            return False
        timestamp, hash_alg, sig_alg, length = _RFC6962_HEADER.unpack_from(sig)
        der = sig[_RFC6962_HEADER.size :]
        if hash_alg != _TLS_SHA256 or sig_alg != _TLS_ECDSA or length != len(der):
            return False
        size, root = head
        signed = struct.pack(">BBQQ", 0, 1, timestamp, size) + root
        try:
            self._key.verify(der, signed, ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, ValueError):
            return False
        return True

    def __repr__(self) -> str:
        return f"RFC6962Verifier({self.vkey!r})"


def parse_vkey(vkey: str) -> Verifier:
    """A verifier from a C2SP verifier key ``<name>+<8 hex key id>+base64(type || key)``.

    Types 0x01 (Ed25519), 0x02 (ECDSA P-256), 0x04 (cosignature/v1) and 0x05 (RFC 6962).

    Raises:
        MalformedError: the string is not a vkey, the key is the wrong length, the type is
            unknown, or the key id does not match the name and key.
    """
    name, sep1, rest = vkey.partition("+")
    key_id_hex, sep2, encoded = rest.partition("+")
    if not sep1 or not sep2:
        raise MalformedError("verifier key is not <name>+<key id>+<key>")
    if not is_valid_key_name(name):
        raise MalformedError(f"verifier key has an invalid name {name!r}")
    if not _KEY_ID_HEX.fullmatch(key_id_hex):
        raise MalformedError(f"verifier key id {key_id_hex!r} is not 8 lowercase hex digits")
    key = b64decode_canonical(encoded, "verifier key")
    if not key:
        raise MalformedError("verifier key is empty")
    sig_type, material = key[0], key[1:]
    verifier: Verifier
    if sig_type == SIG_ED25519:
        verifier = Ed25519Verifier(name, material)
    elif sig_type == SIG_COSIGNATURE_V1:
        verifier = CosignatureV1Verifier(name, material)
    elif sig_type == SIG_ECDSA:
        verifier = ECDSAVerifier(name, material)
    elif sig_type == SIG_RFC6962:
        verifier = RFC6962Verifier(name, material)
    else:
        raise MalformedError(f"verifier key has unknown type 0x{sig_type:02x}")
    if verifier.key_id != int(key_id_hex, 16):
        raise MalformedError(
            f"verifier key id {key_id_hex} does not match its name and key "
            f"(expected {verifier.key_id:08x})"
        )
    return verifier


def format_vkey(name: str, public_key: bytes) -> str:
    """The Ed25519 (type 0x01) verifier key string for ``name`` and a 32-byte public key."""
    _check_key_name(name)
    if len(public_key) != _ED25519_KEY_SIZE:
        raise ValueError(f"Ed25519 public key is {len(public_key)} bytes, not 32")
    return Ed25519Verifier(name, public_key).vkey



# --------------------------------------------------------------------------------------------
# Verify


@dataclass(frozen=True)
class VerifiedSignature:
    """A signature that a known verifier accepted; ``timestamp`` for types 0x04 and 0x05."""

    verifier: Verifier
    signature: Signature
    timestamp: int | None = None

    @property
    def name(self) -> str:
        return self.signature.name

    @property
    def key_id(self) -> int:
        return self.signature.key_id


@dataclass(frozen=True)
class NoteVerification:
    """What :func:`verify_note_result` found; true only if it verified under the C2SP rules."""

    note: Note
    verified: tuple[VerifiedSignature, ...]
    #: signatures of known keys that did not verify (any one makes the note invalid)
    failed: tuple[Signature, ...]
    #: signatures of unknown keys, ignored
    unknown: tuple[Signature, ...]
    #: ``name+hexid`` of the keys the caller trusts, for the error message
    expected: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return bool(self.verified) and not self.failed

    def __bool__(self) -> bool:
        return self.ok

    @property
    def verified_names(self) -> list[str]:
        return [item.name for item in self.verified]

    def raise_for_failure(self) -> None:
        """Raise the :class:`SignatureError` that :func:`verify_note` raises, or return."""
        if self.failed:
            labels = ", ".join(sig.key_label for sig in self.failed)
            raise SignatureError(f"invalid signature for key {labels}")
        if not self.verified:
            names = ", ".join(sig.key_label for sig in self.unknown) or "no key at all"
            wanted = ", ".join(self.expected) or "none"
            raise SignatureError(
                f"the note has no verifiable signatures: it is not signed by the key you gave ({wanted}) "
                f"but by {names}; "
                "check the verifier key (for this ledger, `provledger log-key` prints it)"
            )


def _index_verifiers(verifiers: Iterable[Verifier]) -> dict[tuple[str, int], Verifier]:
    known: dict[tuple[str, int], Verifier] = {}
    for verifier in verifiers:
        key = (verifier.name, verifier.key_id)
        if key in known and known[key] is not verifier:
            raise ValueError(f"two verifiers share the key {verifier.name}+{verifier.key_id:08x}")
        known[key] = verifier
    return known


def _timestamp(verifier: Verifier, sig: bytes) -> int | None:
    if isinstance(verifier, CosignatureV1Verifier | RFC6962Verifier):
        return verifier.signature_timestamp(sig)
    return None


def verify_note_result(data: bytes | str, verifiers: Sequence[Verifier]) -> NoteVerification:
    """Check every signature of a note whose key is known, without raising for bad ones.

    Raises:
        MalformedError: the note does not parse.
        ValueError: two verifiers share a (name, key id).
    """
    note = parse_note(data)
    known = _index_verifiers(verifiers)
    text = note.text.encode("utf-8")
    seen: set[tuple[str, int]] = set()
    verified: list[VerifiedSignature] = []
    failed: list[Signature] = []
    unknown: list[Signature] = []
    for sig in note.signatures:
        key = (sig.name, sig.key_id)
        if key in seen:  # a duplicate (name, key id) is dropped, never verified
            continue
        seen.add(key)
        verifier = known.get(key)
        if verifier is None:
            unknown.append(sig)
        elif verifier.verify(text, sig.signature):
            verified.append(VerifiedSignature(verifier, sig, _timestamp(verifier, sig.signature)))
        else:
            failed.append(sig)
    expected = tuple(f"{v.name}+{v.key_id:08x}" for v in verifiers)
    return NoteVerification(note, tuple(verified), tuple(failed), tuple(unknown), expected)


def verify_note(data: bytes | str, verifiers: Sequence[Verifier]) -> Note:
    """Parse and verify a signed note under the C2SP rules; return it.

    Raises:
        MalformedError: the note does not parse.
        SignatureError: a known key's signature is bad (the message names ``name+hexid``),
            or no known key verifies.
    """
    result = verify_note_result(data, verifiers)
    result.raise_for_failure()
    return result.note
