"""Sigstore trusted roots (``application/vnd.dev.sigstore.trustedroot+json;version=0.1``).

A trusted root names the transparency logs, Fulcio certificate authorities, certificate
transparency logs and timestamp authorities a verifier trusts, each with a ``validFor`` window
(inclusive; an open end means current). It is configuration, read once at start-up: a file that
does not load is a :class:`~ledger.errors.ConfigurationError` naming the file.

Several roots can be configured (``PROVLEDGER_SIGSTORE_TRUSTED_ROOTS``, ``:``-separated). They
stay separate trust domains: a bundle is verified against one root at a time, never against
a CA of one root and a log of another.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from ledger.errors import ConfigurationError, MalformedError
from ledger.untrusted.json import parse_json
from ledger.untrusted.x509 import load_der_certificate

__all__ = [
    "ENV_TRUSTED_ROOTS",
    "MAX_TRUSTED_ROOT_BYTES",
    "TRUSTED_ROOT_MEDIA_TYPE",
    "CertificateAuthority",
    "TransparencyLog",
    "TrustedRoot",
    "TrustedRoots",
    "ValidFor",
    "default_trusted_root_path",
    "load_trusted_roots",
    "parse_trusted_root",
]

ENV_TRUSTED_ROOTS = "PROVLEDGER_SIGSTORE_TRUSTED_ROOTS"
TRUSTED_ROOT_MEDIA_TYPE = "application/vnd.dev.sigstore.trustedroot+json;version=0.1"
MAX_TRUSTED_ROOT_BYTES = 1024 * 1024

PublicKeyType = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | rsa.RSAPublicKey

_EC_HASHES: Mapping[str, hashes.HashAlgorithm] = {
    "PKIX_ECDSA_P256_SHA_256": hashes.SHA256(),
    "PKIX_ECDSA_P384_SHA_384": hashes.SHA384(),
    "PKIX_ECDSA_P521_SHA_512": hashes.SHA512(),
}
_RSA_DETAILS = frozenset(
    {
        "PKCS1_RSA_PKCS1V5",
        "PKIX_RSA_PKCS1V5",
        "PKIX_RSA_PKCS1V15_2048_SHA256",
        "PKIX_RSA_PKCS1V15_3072_SHA256",
        "PKIX_RSA_PKCS1V15_4096_SHA256",
    }
)


@dataclass(frozen=True)
class ValidFor:
    """A validity window; both ends inclusive, ``end`` None means still valid."""

    start: datetime
    end: datetime | None = None

    def contains(self, when: datetime) -> bool:
        return self.start <= when and (self.end is None or when <= self.end)


@dataclass(frozen=True)
class TransparencyLog:
    """A transparency log (Rekor) or certificate-transparency log and its key."""

    base_url: str
    #: SHA-256 of the DER key (Rekor v1, CT) or of ``origin || LF || 0x01 || key`` (Rekor v2)
    log_id: bytes
    key_details: str
    public_key_der: bytes
    #: None when the key's type is not supported here; such a log verifies nothing
    public_key: PublicKeyType | None = field(compare=False, repr=False)
    valid_for: ValidFor

    @property
    def host(self) -> str:
        """The base URL's host (and port): the key name of the log's checkpoints."""
        return urlparse(self.base_url).netloc or self.base_url

    @property
    def is_ed25519(self) -> bool:
        return isinstance(self.public_key, ed25519.Ed25519PublicKey)

    def verify(self, signature: bytes, data: bytes) -> bool:
        """Whether ``signature`` by this log's key is valid over ``data``; never raises."""
        return verify_with_key(self.public_key, self.key_details, signature, data)


@dataclass(frozen=True)
class CertificateAuthority:
    """A Fulcio CA or a timestamp authority: its chain (leaf or intermediates first, root last)."""

    uri: str
    certificates: tuple[x509.Certificate, ...]
    valid_for: ValidFor


@dataclass(frozen=True)
class TrustedRoot:
    """One trust domain (public-good, staging, a private deployment)."""

    source: str
    tlogs: tuple[TransparencyLog, ...]
    certificate_authorities: tuple[CertificateAuthority, ...]
    ctlogs: tuple[TransparencyLog, ...]
    timestamp_authorities: tuple[CertificateAuthority, ...]
    #: the document as read, for sigstore-python's own verifier
    document: bytes = field(repr=False, compare=False)

    def tlog(self, log_id: bytes) -> TransparencyLog | None:
        return next((log for log in self.tlogs if log.log_id == log_id), None)

    def ctlog(self, log_id: bytes) -> TransparencyLog | None:
        return next((log for log in self.ctlogs if log.log_id == log_id), None)


@dataclass(frozen=True)
class TrustedRoots:
    """The configured trusted roots, in order."""

    roots: tuple[TrustedRoot, ...]

    def __post_init__(self) -> None:
        if not self.roots:
            raise ConfigurationError("no Sigstore trusted root is configured")

    def __iter__(self) -> Iterator[TrustedRoot]:
        return iter(self.roots)

    def __len__(self) -> int:
        return len(self.roots)


def verify_with_key(key: PublicKeyType | None, key_details: str, signature: bytes, data: bytes) -> bool:
    """Check a signature by an ECDSA, Ed25519 or RSA PKCS#1 v1.5 key; False on any failure."""
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            algorithm = _EC_HASHES.get(key_details) or _ec_default_hash(key)
            key.verify(signature, data, ec.ECDSA(algorithm))
        elif isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, data)
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
        else:
            return False
    except (InvalidSignature, ValueError, UnsupportedAlgorithm):
        return False
    return True


def _ec_default_hash(key: ec.EllipticCurvePublicKey) -> hashes.HashAlgorithm:
    return {256: hashes.SHA256(), 384: hashes.SHA384(), 521: hashes.SHA512()}.get(
        key.curve.key_size, hashes.SHA256()
    )


# --------------------------------------------------------------------------------------------
# Parsing


def _fail(source: str, message: str) -> ConfigurationError:
    return ConfigurationError(f"Sigstore trusted root {source}: {message}")


def _b64(value: object, source: str, where: str) -> bytes:
    if not isinstance(value, str):
        raise _fail(source, f"{where} must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _fail(source, f"{where} is not valid base64") from exc


def _time(value: object, source: str, where: str) -> datetime:
    if not isinstance(value, str):
        raise _fail(source, f"{where} must be an RFC 3339 time")
    try:
        when = datetime.fromisoformat(value)
    except ValueError as exc:
        raise _fail(source, f"{where} {value!r} is not an RFC 3339 time") from exc
    if when.tzinfo is None:
        raise _fail(source, f"{where} {value!r} has no time zone")
    return when


def _valid_for(value: object, source: str, where: str) -> ValidFor:
    if not isinstance(value, dict) or "start" not in value:
        raise _fail(source, f"{where}.validFor must be an object with a start")
    end = value.get("end")
    return ValidFor(
        start=_time(value["start"], source, f"{where}.validFor.start"),
        end=None if end is None else _time(end, source, f"{where}.validFor.end"),
    )


def _load_key(der: bytes) -> PublicKeyType | None:
    try:
        key = serialization.load_der_public_key(der)
    except (ValueError, UnsupportedAlgorithm):
        # PKCS1_RSA_PKCS1V5 keys may be a bare PKCS#1 RSAPublicKey.
        try:
            pem = b"-----BEGIN RSA PUBLIC KEY-----\n" + base64.encodebytes(der) + b"-----END RSA PUBLIC KEY-----\n"
            key = serialization.load_pem_public_key(pem)
        except (ValueError, UnsupportedAlgorithm):
            return None
    if isinstance(key, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | rsa.RSAPublicKey):
        return key
    return None


def _logs(items: object, source: str, where: str) -> tuple[TransparencyLog, ...]:
    if not isinstance(items, list):
        raise _fail(source, f"{where} must be a list")
    logs = []
    for i, item in enumerate(items):
        here = f"{where}[{i}]"
        if not isinstance(item, dict):
            raise _fail(source, f"{here} must be an object")
        key = item.get("publicKey")
        log_id = item.get("logId")
        if not isinstance(key, dict) or not isinstance(log_id, dict):
            raise _fail(source, f"{here} needs publicKey and logId")
        der = _b64(key.get("rawBytes"), source, f"{here}.publicKey.rawBytes")
        base_url = item.get("baseUrl", "")
        if not isinstance(base_url, str):
            raise _fail(source, f"{here}.baseUrl must be a string")
        logs.append(
            TransparencyLog(
                base_url=base_url,
                log_id=_b64(log_id.get("keyId"), source, f"{here}.logId.keyId"),
                key_details=str(key.get("keyDetails", "")),
                public_key_der=der,
                public_key=_load_key(der),
                valid_for=_valid_for(key.get("validFor"), source, f"{here}.publicKey"),
            )
        )
    return tuple(logs)


def _authorities(items: object, source: str, where: str) -> tuple[CertificateAuthority, ...]:
    if not isinstance(items, list):
        raise _fail(source, f"{where} must be a list")
    authorities = []
    for i, item in enumerate(items):
        here = f"{where}[{i}]"
        chain = item.get("certChain") if isinstance(item, dict) else None
        certs = chain.get("certificates") if isinstance(chain, dict) else None
        if not isinstance(certs, list) or not certs:
            raise _fail(source, f"{here}.certChain.certificates must be a non-empty list")
        loaded = []
        for j, cert in enumerate(certs):
            raw = cert.get("rawBytes") if isinstance(cert, dict) else None
            der = _b64(raw, source, f"{here}.certChain.certificates[{j}].rawBytes")
            try:
                loaded.append(load_der_certificate(der))
            except MalformedError as exc:
                raise _fail(source, f"{here}.certChain.certificates[{j}] is not a DER certificate") from exc
        authorities.append(
            CertificateAuthority(
                uri=str(item.get("uri", "")),
                certificates=tuple(loaded),
                valid_for=_valid_for(item.get("validFor"), source, here),
            )
        )
    return tuple(authorities)


def parse_trusted_root(data: bytes, *, source: str = "<bytes>") -> TrustedRoot:
    """Parse a trusted_root.json document.

    Raises:
        ConfigurationError: the document is not a trusted root (the message names ``source``).
    """
    if len(data) > MAX_TRUSTED_ROOT_BYTES:
        raise _fail(source, f"is over {MAX_TRUSTED_ROOT_BYTES} bytes")
    try:
        doc: Any = parse_json(data, what="the document")
    except MalformedError as exc:
        raise _fail(source, str(exc).removeprefix("the document ")) from exc
    if not isinstance(doc, dict):
        raise _fail(source, "must be a JSON object")
    if doc.get("mediaType") != TRUSTED_ROOT_MEDIA_TYPE:
        raise _fail(source, f"mediaType {doc.get('mediaType')!r} is not {TRUSTED_ROOT_MEDIA_TYPE}")
    return TrustedRoot(
        source=source,
        tlogs=_logs(doc.get("tlogs", []), source, "tlogs"),
        certificate_authorities=_authorities(doc.get("certificateAuthorities", []), source, "certificateAuthorities"),
        ctlogs=_logs(doc.get("ctlogs", []), source, "ctlogs"),
        timestamp_authorities=_authorities(doc.get("timestampAuthorities", []), source, "timestampAuthorities"),
        document=bytes(data),
    )


def default_trusted_root_path() -> Path:
    """The public-good trusted root that the ``sigstore`` package ships (its TUF bootstrap)."""
    store = resources.files("sigstore") / "_store" / "https%3A%2F%2Ftuf-repo-cdn.sigstore.dev"
    path = Path(str(store / "trusted_root.json"))
    if not path.is_file():
        raise ConfigurationError(
            f"the sigstore package's public-good trusted root is missing at {path}; "
            f"set {ENV_TRUSTED_ROOTS}"
        )
    return path


def load_trusted_roots(
    paths: Sequence[str | os.PathLike[str]] | str | None = None,
    *,
    environ: Mapping[str, str] | None = None,
) -> TrustedRoots:
    """Load the configured trusted roots.

    Args:
        paths: trusted_root.json files, or one ``:``-separated string of them. When None, the
            ``PROVLEDGER_SIGSTORE_TRUSTED_ROOTS`` variable of ``environ`` (default
            ``os.environ``); when that is unset or empty, the public-good root shipped with
            the ``sigstore`` package.

    Raises:
        ConfigurationError: a file is missing, unreadable or not a trusted root.
    """
    if paths is None:
        env = os.environ if environ is None else environ
        paths = env.get(ENV_TRUSTED_ROOTS, "")
    if isinstance(paths, str):
        paths = [part for part in paths.split(":") if part]
    resolved = [Path(p) for p in paths] or [default_trusted_root_path()]
    roots = []
    for path in resolved:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ConfigurationError(f"cannot read Sigstore trusted root {path}: {exc.strerror}") from exc
        roots.append(parse_trusted_root(data, source=str(path)))
    return TrustedRoots(tuple(roots))
