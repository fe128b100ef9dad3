"""Signer keys: Ed25519 (PyNaCl), ECDSA P-256 and P-384 (cryptography), identified by key id.

A key id is the lowercase hex SHA-256 of the key's DER SubjectPublicKeyInfo. Private keys are
PKCS#8 PEM files, public keys SPKI PEM. ECDSA signs with the hash of its curve's size (SHA-256
for P-256, SHA-384 for P-384), as Sigstore's key details (``PKIX_ECDSA_P384_SHA_384``) and
DSSE signers do; P-384 keys are verified, not generated here (older Sigstore clients certified
P-384 keys, sigstore-conformance's 2023 ``a.txt`` bundle has one, and such bundles are recorded
with them).
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

#: the algorithms ``generate_private_key`` makes (every one of these, and ECDSA P-384, verifies)
ALGORITHMS = ("ed25519", "ecdsa-p256")
#: the ECDSA curves a signer key may use, by name: (algorithm name, hash, raw r||s length)
_ECDSA = {"secp256r1": ("ecdsa-p256", hashes.SHA256(), 64), "secp384r1": ("ecdsa-p384", hashes.SHA384(), 96)}
MAX_KEY_PEM_BYTES = 16 * 1024
UNSUPPORTED = "unsupported key type: signer keys are Ed25519, ECDSA P-256 or ECDSA P-384"


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
        _, digest, raw_length = _ECDSA[self._ecdsa.curve.name]
        # DSSE leaves the encoding to agreement: accept DER and raw r||s (64 bytes for P-256,
        # 96 for P-384).
        if len(signature) == raw_length:
            half = raw_length // 2
            signature = encode_dss_signature(int.from_bytes(signature[:half], "big"), int.from_bytes(signature[half:], "big"))
        try:
            self._ecdsa.verify(signature, message, ec.ECDSA(digest))
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
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name in _ECDSA:
        return key
    raise MalformedError(UNSUPPORTED)


def _algorithm_of(key: object) -> str:
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "ed25519"
    assert isinstance(key, ec.EllipticCurvePublicKey)
    return _ECDSA[key.curve.name][0]


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
    """A signing key. Ed25519 signs through PyNaCl, ECDSA (DER signatures, the curve's hash) through cryptography."""

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
        return self._key.sign(message, ec.ECDSA(_ECDSA[self._key.curve.name][1]))

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
        raise MalformedError(UNSUPPORTED)
    return PrivateKey(key)
