"""Signer keys: Ed25519 (PyNaCl) and ECDSA P-256 (cryptography), identified by key id.

A key id is the lowercase hex SHA-256 of the key's DER SubjectPublicKeyInfo. Private keys are
PKCS#8 PEM files, public keys SPKI PEM.
"""

from __future__ import annotations

import functools

import hashlib
from dataclasses import dataclass, field

import nacl.exceptions
import nacl.signing
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from ledger.errors import MalformedError

__all__ = [
    "ALGORITHMS",
    "PrivateKey",
    "PublicKey",
    "generate_private_key",
    "key_id_of",
    "load_private_key",
    "load_public_key",
    "public_key_from_der",
]

ALGORITHMS = ("ed25519", "ecdsa-p256")
MAX_KEY_PEM_BYTES = 16 * 1024


def key_id_of(spki_der: bytes) -> str:
    """Lowercase hex SHA-256 of a DER SubjectPublicKeyInfo."""
    return hashlib.sha256(spki_der).hexdigest()


@dataclass(frozen=True)
class PublicKey:
    """A signer's public key. ``verify`` returns a bool and never raises on a bad signature."""

    algorithm: str
    spki_der: bytes
    key_id: str = field(init=False)
    _nacl: nacl.signing.VerifyKey | None = field(init=False, repr=False, compare=False)
    _ecdsa: ec.EllipticCurvePublicKey | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key_id", key_id_of(self.spki_der))
        loaded = _load_spki(self.spki_der)
        if self.algorithm == "ed25519":
            assert isinstance(loaded, ed25519.Ed25519PublicKey)
            raw = loaded.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            object.__setattr__(self, "_nacl", nacl.signing.VerifyKey(raw))
            object.__setattr__(self, "_ecdsa", None)
        else:
            assert isinstance(loaded, ec.EllipticCurvePublicKey)
            object.__setattr__(self, "_nacl", None)
            object.__setattr__(self, "_ecdsa", loaded)

    def verify(self, signature: bytes, message: bytes) -> bool:
        if self._nacl is not None:
            if len(signature) != 64:
                return False
            try:
                self._nacl.verify(message, signature)
            except nacl.exceptions.BadSignatureError:
                return False
            return True
        assert self._ecdsa is not None
        # DSSE leaves the encoding to agreement: accept DER and raw r||s (64 bytes).
        if len(signature) == 64:
            r = int.from_bytes(signature[:32], "big")
            s = int.from_bytes(signature[32:], "big")
            signature = encode_dss_signature(r, s)
        try:
            self._ecdsa.verify(signature, message, ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, ValueError):
            return False
        return True

    def to_pem(self) -> bytes:
        return _load_spki(self.spki_der).public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


def _load_spki(der: bytes) -> ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey:
    try:
        key = serialization.load_der_public_key(der)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:  # an unknown algorithm or curve: cryptography's own error
        raise MalformedError("public key is not a DER SubjectPublicKeyInfo of a supported algorithm") from exc
    return _check_supported(key)


def _check_supported(key: object) -> ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey:
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return key
    raise MalformedError("unsupported key type: signer keys are Ed25519 or ECDSA P-256")


def _algorithm_of(key: object) -> str:
    return "ed25519" if isinstance(key, ed25519.Ed25519PublicKey) else "ecdsa-p256"


def public_key_from_der(spki_der: bytes) -> PublicKey:
    """A public key from its DER SubjectPublicKeyInfo (immutable: the few keys of a ledger are
    decoded once per process, not once per leaf that names them)."""
    return _public_key_from_der(bytes(spki_der))


@functools.lru_cache(maxsize=4096)
def _public_key_from_der(spki_der: bytes) -> PublicKey:
    return PublicKey(_algorithm_of(_load_spki(spki_der)), spki_der)


def load_public_key(data: bytes) -> PublicKey:
    """A public key from SPKI PEM (or DER) bytes."""
    if len(data) > MAX_KEY_PEM_BYTES:
        raise MalformedError(f"public key file is larger than {MAX_KEY_PEM_BYTES} bytes")
    try:
        if data.lstrip().startswith(b"-----"):
            key = serialization.load_pem_public_key(data)
        else:
            key = serialization.load_der_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise MalformedError("not a PEM or DER SubjectPublicKeyInfo public key of a supported algorithm") from exc
    key = _check_supported(key)
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return PublicKey(_algorithm_of(key), der)


class PrivateKey:
    """A signing key. Ed25519 signs through PyNaCl, ECDSA P-256 (DER signatures) through cryptography."""

    def __init__(self, key: ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey) -> None:
        self._key = key
        pub = key.public_key()
        _check_supported(pub)
        der = pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        self.public_key = PublicKey(_algorithm_of(pub), der)
        self._nacl: nacl.signing.SigningKey | None = None
        if isinstance(key, ed25519.Ed25519PrivateKey):
            seed = key.private_bytes(
                serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
            )
            self._nacl = nacl.signing.SigningKey(seed)

    @property
    def key_id(self) -> str:
        return self.public_key.key_id

    def sign(self, message: bytes) -> bytes:
        if self._nacl is not None:
            return self._nacl.sign(message).signature
        assert isinstance(self._key, ec.EllipticCurvePrivateKey)
        return self._key.sign(message, ec.ECDSA(hashes.SHA256()))

    def to_pem(self) -> bytes:
        return self._key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )


def generate_private_key(algorithm: str = "ed25519") -> PrivateKey:
    if algorithm == "ed25519":
        return PrivateKey(ed25519.Ed25519PrivateKey.generate())
    if algorithm == "ecdsa-p256":
        return PrivateKey(ec.generate_private_key(ec.SECP256R1()))
    raise MalformedError(f"unknown key algorithm {algorithm!r}: use one of {', '.join(ALGORITHMS)}")


def load_private_key(data: bytes) -> PrivateKey:
    """A signing key from PKCS#8 PEM bytes (unencrypted)."""
    if len(data) > MAX_KEY_PEM_BYTES:
        raise MalformedError(f"private key file is larger than {MAX_KEY_PEM_BYTES} bytes")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise MalformedError("not an unencrypted PKCS#8 PEM private key of a supported algorithm") from exc
    if not isinstance(key, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey):
        raise MalformedError("unsupported key type: signer keys are Ed25519 or ECDSA P-256")
    return PrivateKey(key)
