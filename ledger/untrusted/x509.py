"""The one X.509 loader for untrusted bytes: certificates and CRLs parsed completely on load.

``cryptography`` parses a certificate lazily: loading checks the outer structure, and the
subject, the extensions or the public key are decoded when first read, each raising its own
exception type (``ValueError``, ``TypeError``, ``UnsupportedAlgorithm``, ``InvalidVersion``,
``DuplicateExtension`` …) wherever that happens to be. Evidence, bundles and key events carry
certificates from anyone, so every one of them goes through here: each part a verifier reads is
decoded now, and anything that does not decode is a ``MalformedError`` naming what it was.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.utils import CryptographyDeprecationWarning

from ledger.errors import MalformedError

__all__ = ["load_crl", "load_der_certificate", "load_pem_certificates", "quiet"]

#: what ``cryptography`` raises for a part of a certificate or CRL that does not decode
_DECODE_ERRORS = (
    ValueError,
    TypeError,
    UnsupportedAlgorithm,
    x509.InvalidVersion,
    x509.DuplicateExtension,
    x509.UnsupportedGeneralNameType,
)


@contextmanager
def quiet() -> Iterator[None]:
    """Silence two warnings real vendor certificates trigger in ``cryptography``.

    AMD's VCEKs carry a non-positive serial number (RFC 5280 forbids it; cryptography warns on
    load) and Google's vTPM CA names have attributes over 64 characters (warned when the name is
    read). Both certificates are what the vendors issue, so we accept them.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=CryptographyDeprecationWarning)
        warnings.filterwarnings("ignore", message="Attribute's length", category=UserWarning)
        yield


def _decoded(cert: x509.Certificate) -> x509.Certificate:
    """Read every part a verifier reads, so that none fails later."""
    cert.version  # noqa: B018 - each read decodes that part
    cert.subject.rfc4514_string()
    cert.issuer.rfc4514_string()
    for extension in cert.extensions:
        extension.value  # noqa: B018
    cert.public_key()
    cert.not_valid_before_utc  # noqa: B018
    cert.not_valid_after_utc  # noqa: B018
    cert.signature_algorithm_oid  # noqa: B018
    return cert


def load_der_certificate(der: bytes, what: str = "certificate") -> x509.Certificate:
    """One DER certificate, every part decoded (MalformedError naming ``what`` otherwise)."""
    try:
        with quiet():
            return _decoded(x509.load_der_x509_certificate(bytes(der)))
    except _DECODE_ERRORS as exc:
        raise MalformedError(f"{what} is not a DER X.509 certificate this verifier can read: {exc}") from exc


def load_pem_certificates(pem: bytes, what: str = "certificates") -> list[x509.Certificate]:
    """Every certificate of a PEM text, each decoded completely (MalformedError otherwise)."""
    try:
        with quiet():
            return [_decoded(cert) for cert in x509.load_pem_x509_certificates(bytes(pem))]
    except _DECODE_ERRORS as exc:
        raise MalformedError(f"{what} are not PEM X.509 certificates this verifier can read: {exc}") from exc


def load_crl(data: bytes, what: str = "CRL") -> x509.CertificateRevocationList:
    """One CRL (PEM when it holds a PEM header, else DER), every part decoded."""
    try:
        with quiet():
            raw = bytes(data)
            crl = x509.load_pem_x509_crl(raw) if b"-----BEGIN" in raw else x509.load_der_x509_crl(raw)
            crl.issuer.rfc4514_string()
            for extension in crl.extensions:
                extension.value  # noqa: B018
            for revoked in crl:
                revoked.serial_number  # noqa: B018
                revoked.revocation_date_utc  # noqa: B018
                for extension in revoked.extensions:
                    extension.value  # noqa: B018
            crl.next_update_utc  # noqa: B018
            crl.last_update_utc  # noqa: B018
            crl.signature_algorithm_oid  # noqa: B018
            return crl
    except _DECODE_ERRORS as exc:
        raise MalformedError(f"{what} is not an X.509 CRL this verifier can read: {exc}") from exc
