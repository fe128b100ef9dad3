"""C2SP signed notes (c2sp.org/signed-note): parse, format, sign and verify.

A signed note is a UTF-8 text ending in a newline, a blank line, and one or more signature
lines ``— <name> <base64(key_id[4] || signature)>``. The text is everything up to and including
the newline before the *last* blank line, so the text itself may contain blank lines.

This module is pure (stdlib, PyNaCl, cryptography) and takes bytes. Parsing is strict: every
input that is not in the one accepted encoding raises :class:`~ledger.errors.MalformedError`.
Verification follows the C2SP rules:

* signatures whose (name, key id) pair is unknown are ignored;
* a known key whose signature does not verify makes the note invalid;
* a note with no known key that verifies is invalid;
* a second signature by the same (name, key id) is dropped.

Signature types handled here (the first byte of a verifier key):

=====  ==========================================  ===========================================
type   signature                                   key id
=====  ==========================================  ===========================================
0x01   Ed25519 over the text                       SHA-256(name || LF || 0x01 || pub32)[:4]
0x02   ECDSA P-256 SHA-256 (DER) over the text     SHA-256(DER SPKI)[:4] (name not hashed)
0x04   Ed25519 cosignature/v1 (timestamped)        SHA-256(name || LF || 0x04 || pub32)[:4]
0x05   RFC 6962 TreeHeadSignature (static-ct-api)  SHA-256(name || LF || 0x05 || SHA-256(SPKI))[:4]
=====  ==========================================  ===========================================
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import nacl.exceptions
import nacl.signing
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ledger.errors import MalformedError, SignatureError, TooLargeError

__all__ = [
    "MAX_NOTE_BYTES",
    "MAX_NOTE_SIGNATURES",
    "SIG_COSIGNATURE_V1",
    "SIG_ECDSA",
    "SIG_ED25519",
    "SIG_RFC6962",
    "CosignatureV1Verifier",
    "ECDSAVerifier",
    "Ed25519CosignatureSigner",
    "Ed25519NoteSigner",
    "Ed25519Verifier",
    "Note",
    "NoteSigner",
    "NoteVerification",
    "RFC6962Verifier",
    "Signature",
    "VerifiedSignature",
    "Verifier",
    "append_signatures",
    "cosignature_message",
    "format_note",
    "format_skey",
    "format_vkey",
    "generate_signer",
    "is_valid_key_name",
    "parse_note",
    "parse_skey",
    "parse_vkey",
    "sign_note",
    "verify_note",
    "verify_note_result",
]

#: Largest signed note accepted, in bytes (checkpoints are a few hundred bytes).
MAX_NOTE_BYTES = 1 << 20
#: Most signature lines accepted (golang.org/x/mod caps at 100; C2SP requires at least 16).
MAX_NOTE_SIGNATURES = 100

SIG_ED25519 = 0x01
SIG_ECDSA = 0x02
SIG_COSIGNATURE_V1 = 0x04
SIG_RFC6962 = 0x05

_SIG_PREFIX = "\u2014 "  # em dash, space
_ED25519_KEY_SIZE = 32
_ED25519_SIG_SIZE = 64
_TIMESTAMP_SIZE = 8
_MIN_SIGNATURE_BYTES = 5  # a 4-byte key id and at least one signature byte
_MAX_UINT64 = (1 << 64) - 1

# Every C0 control character except LF (golang.org/x/mod rejects the same set).
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")
_KEY_ID_HEX = re.compile(r"[0-9a-f]{8}")
_DECIMAL = re.compile(r"0|[1-9][0-9]*")


# --------------------------------------------------------------------------------------------
# Values


@dataclass(frozen=True)
class Signature:
    """One signature line: the key name, the 4-byte key id and the signature bytes after it."""

    name: str
    key_id: int
    signature: bytes

    @property
    def key_label(self) -> str:
        """``name+hexid``, how errors and UIs name the key."""
        return f"{self.name}+{self.key_id:08x}"


@dataclass
class Note:
    """A parsed signed note: its text (ending in LF) and its signature lines in order."""

    text: str
    signatures: list[Signature]


# --------------------------------------------------------------------------------------------
# Small strict codecs


def b64decode_canonical(value: str, what: str) -> bytes:
    """Standard base64 with padding, in its one canonical form (MalformedError otherwise).

    The one strict decoder for the text formats: notes, tlog-proof, witness requests.
    """
    try:
        decoded = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MalformedError(f"{what} is not valid standard base64") from exc
    if base64.b64encode(decoded).decode("ascii") != value:
        raise MalformedError(f"{what} is not canonical base64")
    return decoded


def _b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def is_valid_key_name(name: str) -> bool:
    """A key name is non-empty and contains no Unicode space, no ``+`` and no control character."""
    return (
        bool(name)
        and "+" not in name
        and not any(ch.isspace() for ch in name)
        and _CONTROL.search(name) is None
    )


def _check_key_name(name: str) -> None:
    if not is_valid_key_name(name):
        raise ValueError(f"invalid key name {name!r}: it must be non-empty with no space or '+'")


def _key_id(name: str, sig_type: int, key: bytes) -> int:
    """SHA-256(name || LF || type || key)[:4] as a big-endian uint32."""
    digest = hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([sig_type]) + key).digest()
    return int.from_bytes(digest[:4], "big")


def _to_bytes(text: str | bytes) -> bytes:
    return text.encode("utf-8") if isinstance(text, str) else bytes(text)


# --------------------------------------------------------------------------------------------
# Parse and format


def parse_note(data: bytes | str) -> Note:
    """Parse a signed note without verifying it.

    Args:
        data: the note as bytes (or str).

    Returns:
        The note's text and its signatures, in order (duplicates kept).

    Raises:
        TooLargeError: the note is over ``MAX_NOTE_BYTES``.
        MalformedError: anything else that is not a well-formed signed note.
    """
    if isinstance(data, str):
        try:
            raw = data.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise MalformedError("note is not valid UTF-8") from exc
    else:
        raw = bytes(data)
    if len(raw) > MAX_NOTE_BYTES:
        raise TooLargeError(f"note is {len(raw)} bytes, over the limit of {MAX_NOTE_BYTES}")
    try:
        message = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedError("note is not valid UTF-8") from exc
    if _CONTROL.search(message):
        raise MalformedError("note contains a control character other than newline")

    split = message.rfind("\n\n")
    if split < 0:
        raise MalformedError("note has no blank line before its signatures")
    text, block = message[: split + 1], message[split + 2 :]
    if not block:
        raise MalformedError("note has no signature lines")
    if not block.endswith("\n"):
        raise MalformedError("note's last signature line does not end in a newline")

    lines = block[:-1].split("\n")
    if len(lines) > MAX_NOTE_SIGNATURES:
        raise MalformedError(
            f"note has {len(lines)} signature lines, over the limit of {MAX_NOTE_SIGNATURES}"
        )
    return Note(text=text, signatures=[_parse_signature_line(line) for line in lines])


def _parse_signature_line(line: str) -> Signature:
    if not line.startswith(_SIG_PREFIX):
        raise MalformedError(f"note signature line does not start with an em dash: {line[:40]!r}")
    name, sep, encoded = line[len(_SIG_PREFIX) :].partition(" ")
    if not sep or not encoded:
        raise MalformedError("note signature line has no signature after the key name")
    if not is_valid_key_name(name):
        raise MalformedError(f"note signature line has an invalid key name {name!r}")
    raw = b64decode_canonical(encoded, f"signature of {name}")
    if len(raw) < _MIN_SIGNATURE_BYTES:
        raise MalformedError(f"signature of {name} is {len(raw)} bytes, shorter than 5")
    return Signature(name=name, key_id=int.from_bytes(raw[:4], "big"), signature=raw[4:])


def _check_text(text: str) -> None:
    if not text.endswith("\n"):
        raise ValueError("note text must end in a newline")
    if _CONTROL.search(text):
        raise ValueError("note text contains a control character other than newline")


def format_note(note: Note) -> bytes:
    """The signed-note bytes of ``note`` (the inverse of :func:`parse_note`).

    Raises:
        ValueError: the text does not end in a newline, a name is invalid, a key id is out of
            range, or there are no (or too many) signatures.
    """
    _check_text(note.text)
    if not note.signatures:
        raise ValueError("a signed note needs at least one signature")
    if len(note.signatures) > MAX_NOTE_SIGNATURES:
        raise ValueError(f"a signed note carries at most {MAX_NOTE_SIGNATURES} signatures")
    lines = [note.text, "\n"]
    for sig in note.signatures:
        _check_key_name(sig.name)
        if not 0 <= sig.key_id <= 0xFFFFFFFF:
            raise ValueError(f"key id {sig.key_id} of {sig.name} is not a uint32")
        if not sig.signature:
            raise ValueError(f"signature of {sig.name} is empty")
        encoded = _b64encode(sig.key_id.to_bytes(4, "big") + sig.signature)
        lines.append(f"{_SIG_PREFIX}{sig.name} {encoded}\n")
    return "".join(lines).encode("utf-8")


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


class Ed25519Verifier:
    """Type 0x01: an Ed25519 signature over the note text."""

    sig_type = SIG_ED25519

    def __init__(self, name: str, public_key: bytes) -> None:
        _check_key_name(name)
        self._key = _make_ed25519_key(public_key)
        self._name = name
        self.public_key = bytes(public_key)
        self._key_id = _key_id(name, SIG_ED25519, self.public_key)

    @property
    def name(self) -> str:
        return self._name

    @property
    def key_id(self) -> int:
        return self._key_id

    @property
    def vkey(self) -> str:
        key = bytes([SIG_ED25519]) + self.public_key
        return f"{self._name}+{self._key_id:08x}+{_b64encode(key)}"

    def verify(self, msg: bytes, sig: bytes) -> bool:
        return _ed25519_verify(self._key, msg, sig)

    def __repr__(self) -> str:
        return f"Ed25519Verifier({self.vkey!r})"


def cosignature_message(text: str | bytes, timestamp: int) -> bytes:
    """The bytes a cosignature/v1 signs: ``cosignature/v1\\ntime <ts>\\n`` then the note text."""
    if not 0 <= timestamp <= _MAX_UINT64:
        raise ValueError(f"cosignature timestamp {timestamp} is not a uint64")
    return f"cosignature/v1\ntime {timestamp}\n".encode("ascii") + _to_bytes(text)


class CosignatureV1Verifier:
    """Type 0x04: a witness cosignature, ``timestamp u64 BE || Ed25519 signature``."""

    sig_type = SIG_COSIGNATURE_V1

    def __init__(self, name: str, public_key: bytes) -> None:
        _check_key_name(name)
        self._key = _make_ed25519_key(public_key)
        self._name = name
        self.public_key = bytes(public_key)
        self._key_id = _key_id(name, SIG_COSIGNATURE_V1, self.public_key)

    @property
    def name(self) -> str:
        return self._name

    @property
    def key_id(self) -> int:
        return self._key_id

    @property
    def vkey(self) -> str:
        key = bytes([SIG_COSIGNATURE_V1]) + self.public_key
        return f"{self._name}+{self._key_id:08x}+{_b64encode(key)}"

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

    def __repr__(self) -> str:
        return f"CosignatureV1Verifier({self.vkey!r})"


class ECDSAVerifier:
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
    def name(self) -> str:
        return self._name

    @property
    def key_id(self) -> int:
        return self._key_id

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


class RFC6962Verifier:
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
    def name(self) -> str:
        return self._name

    @property
    def key_id(self) -> int:
        return self._key_id

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
# Signers


class NoteSigner(Protocol):
    """A key that signs note texts."""

    @property
    def name(self) -> str:
        """The key name in the signature line."""
        ...

    @property
    def key_id(self) -> int:
        """The 4-byte key id as a uint32."""
        ...

    def sign(self, text: str | bytes) -> Signature:
        """A signature over the note text."""
        ...


def _check_seed(seed: bytes) -> bytes:
    if len(seed) != _ED25519_KEY_SIZE:
        raise ValueError(f"Ed25519 seed is {len(seed)} bytes, not 32")
    return bytes(seed)


class Ed25519NoteSigner:
    """A type 0x01 Ed25519 note signer (what a log signs its checkpoints with)."""

    def __init__(self, name: str, seed: bytes) -> None:
        _check_key_name(name)
        self._name = name
        self._seed = _check_seed(seed)
        self._key = nacl.signing.SigningKey(self._seed)
        self.public_key = bytes(self._key.verify_key)
        self._key_id = _key_id(name, SIG_ED25519, self.public_key)

    @property
    def name(self) -> str:
        return self._name

    @property
    def key_id(self) -> int:
        return self._key_id

    @property
    def vkey(self) -> str:
        return format_vkey(self._name, self.public_key)

    @property
    def skey(self) -> str:
        """The Go ``PRIVATE+KEY+…`` string. Secret: keep it out of logs."""
        return format_skey(self._name, self._seed)

    def verifier(self) -> Ed25519Verifier:
        return Ed25519Verifier(self._name, self.public_key)

    def sign(self, text: str | bytes) -> Signature:
        signature = self._key.sign(_to_bytes(text)).signature
        return Signature(name=self._name, key_id=self._key_id, signature=signature)

    def __repr__(self) -> str:
        return f"Ed25519NoteSigner({self.vkey!r})"  # never the seed


class Ed25519CosignatureSigner:
    """A type 0x04 cosignature/v1 signer (what a witness signs checkpoints with).

    The timestamp is an explicit parameter of :meth:`sign`. The signed message does not name
    the cosigner, so every cosigner needs its own key.
    """

    def __init__(self, name: str, seed: bytes) -> None:
        _check_key_name(name)
        self._name = name
        self._key = nacl.signing.SigningKey(_check_seed(seed))
        self.public_key = bytes(self._key.verify_key)
        self._key_id = _key_id(name, SIG_COSIGNATURE_V1, self.public_key)

    @property
    def name(self) -> str:
        return self._name

    @property
    def key_id(self) -> int:
        return self._key_id

    @property
    def vkey(self) -> str:
        return self.verifier().vkey

    def verifier(self) -> CosignatureV1Verifier:
        return CosignatureV1Verifier(self._name, self.public_key)

    def sign(self, text: str | bytes, *, timestamp: int) -> Signature:
        """A cosignature over the checkpoint ``text`` at ``timestamp`` (Unix seconds)."""
        signature = self._key.sign(cosignature_message(text, timestamp)).signature
        raw = timestamp.to_bytes(_TIMESTAMP_SIZE, "big") + signature
        return Signature(name=self._name, key_id=self._key_id, signature=raw)

    def __repr__(self) -> str:
        return f"Ed25519CosignatureSigner({self.vkey!r})"


_SKEY_PREFIX = "PRIVATE+KEY+"


def format_skey(name: str, seed: bytes) -> str:
    """The Go signer key ``PRIVATE+KEY+<name>+<hex id>+base64(0x01 || seed)``."""
    _check_key_name(name)
    public_key = bytes(nacl.signing.SigningKey(_check_seed(seed)).verify_key)
    key_id = _key_id(name, SIG_ED25519, public_key)
    return f"{_SKEY_PREFIX}{name}+{key_id:08x}+{_b64encode(bytes([SIG_ED25519]) + seed)}"


def parse_skey(skey: str) -> Ed25519NoteSigner:
    """An Ed25519 signer from a Go ``PRIVATE+KEY+…`` signer key.

    Raises:
        MalformedError: the string is not a signer key, the seed is the wrong length, the
            type is not Ed25519, or the key id does not match (messages never echo the secret).
    """
    if not skey.startswith(_SKEY_PREFIX):
        raise MalformedError("signer key does not start with PRIVATE+KEY+")
    name, sep1, rest = skey[len(_SKEY_PREFIX) :].partition("+")
    key_id_hex, sep2, encoded = rest.partition("+")
    if not sep1 or not sep2:
        raise MalformedError("signer key is not PRIVATE+KEY+<name>+<key id>+<key>")
    if not is_valid_key_name(name):
        raise MalformedError(f"signer key has an invalid name {name!r}")
    if not _KEY_ID_HEX.fullmatch(key_id_hex):
        raise MalformedError("signer key id is not 8 lowercase hex digits")
    key = b64decode_canonical(encoded, "signer key")
    if not key or key[0] != SIG_ED25519:
        raise MalformedError("signer key is not an Ed25519 (type 0x01) key")
    if len(key) != 1 + _ED25519_KEY_SIZE:
        raise MalformedError(f"signer key seed is {len(key) - 1} bytes, not 32")
    signer = Ed25519NoteSigner(name, key[1:])
    if signer.key_id != int(key_id_hex, 16):
        raise MalformedError(f"signer key id {key_id_hex} does not match its name and key")
    return signer


def generate_signer(name: str) -> Ed25519NoteSigner:
    """A new Ed25519 note signer with a random seed."""
    return Ed25519NoteSigner(name, secrets.token_bytes(_ED25519_KEY_SIZE))


# --------------------------------------------------------------------------------------------
# Sign and verify


def sign_note(text: str, signers: Iterable[NoteSigner]) -> bytes:
    """Sign ``text`` (which must end in a newline) with each signer, in order.

    Raises:
        ValueError: the text does not end in a newline or has control characters, or there
            is no signer.
    """
    _check_text(text)
    signatures = [signer.sign(text) for signer in signers]
    return format_note(Note(text=text, signatures=signatures))


def append_signatures(data: bytes | str, signatures: Iterable[Signature]) -> bytes:
    """``data`` with more signature lines after its own (for cosigning). Checks nothing else.

    A signature by a (name, key id) already present is not added twice.
    """
    note = parse_note(data)
    present = {(sig.name, sig.key_id) for sig in note.signatures}
    merged = list(note.signatures)
    for sig in signatures:
        if (sig.name, sig.key_id) not in present:
            present.add((sig.name, sig.key_id))
            merged.append(sig)
    return format_note(Note(text=note.text, signatures=merged))


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
            names = ", ".join(sig.key_label for sig in self.unknown) or "none"
            raise SignatureError(
                f"note has no verifiable signatures (signatures by unknown keys: {names})"
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
    return NoteVerification(note, tuple(verified), tuple(failed), tuple(unknown))


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
