"""Signed-note signers: Ed25519 note and cosignature/v1 signers, skeys, signing and cosigning."""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from typing import Protocol

import nacl.exceptions
import nacl.signing

from ledger.errors import MalformedError
from ledger.tlog.note.encoding import (
    Note,
    SIG_COSIGNATURE_V1,
    SIG_ED25519,
    Signature,
    _ED25519_KEY_SIZE,
    _KEY_ID_HEX,
    _TIMESTAMP_SIZE,
    _b64encode,
    _check_key_name,
    _check_text,
    _key_id,
    _to_bytes,
    b64decode_canonical,
    format_note,
    is_valid_key_name,
    parse_note,
)
from ledger.tlog.note.verifiers import (
    CosignatureV1Verifier,
    Ed25519Verifier,
    NamedKey,
    cosignature_message,
    format_vkey,
)

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


class Ed25519NoteSigner(NamedKey):
    """A type 0x01 Ed25519 note signer (what a log signs its checkpoints with)."""

    def __init__(self, name: str, seed: bytes) -> None:
        _check_key_name(name)
        self._name = name
        self._seed = _check_seed(seed)
        self._key = nacl.signing.SigningKey(self._seed)
        self.public_key = bytes(self._key.verify_key)
        self._key_id = _key_id(name, SIG_ED25519, self.public_key)

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


class Ed25519CosignatureSigner(NamedKey):
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
# Sign and cosign


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
