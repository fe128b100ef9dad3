"""Fulcio certificates: the chain to a trusted CA, the embedded SCT and the signer identity."""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import Any
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
)
from cryptography.x509.verification import VerificationError as X509VerificationError

from ledger.errors import VerificationError
from ledger.interop.sigstore.trust import TrustedRoot, verify_with_key

__all__ = [
    "FULCIO_EXTENSIONS",
    "CertificateIdentity",
    "certificate_identity",
    "check_bundle_chain",
    "verify_chain",
    "verify_sct",
]

_FULCIO = "1.3.6.1.4.1.57264.1."
_OTHERNAME_SAN = x509.ObjectIdentifier(_FULCIO + "7")

#: Fulcio's certificate extensions (fulcio docs/oid-info.md) by OID arc under 1.3.6.1.4.1.57264.1.
#: Arcs 1-6 are the deprecated raw-string forms; 8 and later are DER UTF8Strings.
FULCIO_EXTENSIONS: Mapping[int, str] = {
    1: "issuer_v1",
    2: "github_workflow_trigger",
    3: "github_workflow_sha",
    4: "github_workflow_name",
    5: "github_workflow_repository",
    6: "github_workflow_ref",
    8: "issuer",
    9: "build_signer_uri",
    10: "build_signer_digest",
    11: "runner_environment",
    12: "source_repository_uri",
    13: "source_repository_digest",
    14: "source_repository_ref",
    15: "source_repository_identifier",
    16: "source_repository_owner_uri",
    17: "source_repository_owner_identifier",
    18: "build_config_uri",
    19: "build_config_digest",
    20: "build_trigger",
    21: "run_invocation_uri",
    22: "source_repository_visibility_at_signing",
}
_RAW_STRING_ARCS = range(1, 7)


@dataclass(frozen=True)
class CertificateIdentity:
    """Who a Fulcio certificate says signed: the SAN, the OIDC issuer and the CI claims."""

    #: the one subject alternative name (a URI for workflows, an e-mail address for people)
    san: str
    #: ``uri``, ``email`` or ``othername``
    san_type: str
    #: the OIDC issuer: extension .1.8, else the deprecated .1.1
    issuer: str | None
    #: every Fulcio extension present, by name (see ``FULCIO_EXTENSIONS``)
    extensions: Mapping[str, str] = field(default_factory=dict)

    def to_record(self) -> dict[str, Any]:
        """The identity as a keyless entry's leaf records it (``signer.identity``)."""
        return {"san": self.san, "san_type": self.san_type, "issuer": self.issuer, "extensions": dict(self.extensions)}

    @classmethod
    def from_record(cls, record: object) -> CertificateIdentity | None:
        """The identity a leaf records, or None when the record is not of ``to_record``'s shape."""
        if not isinstance(record, dict) or set(record) != {"san", "san_type", "issuer", "extensions"}:
            return None
        san, san_type, issuer, extensions = record["san"], record["san_type"], record["issuer"], record["extensions"]
        if not (isinstance(san, str) and isinstance(san_type, str) and (issuer is None or isinstance(issuer, str))):
            return None
        if not isinstance(extensions, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in extensions.items()):
            return None
        return cls(san, san_type, issuer, dict(extensions))

    @property
    def source_repository_uri(self) -> str | None:
        return self.extensions.get("source_repository_uri")

    @property
    def source_repository_digest(self) -> str | None:
        return self.extensions.get("source_repository_digest")

    @property
    def source_repository_ref(self) -> str | None:
        return self.extensions.get("source_repository_ref")

    @property
    def build_signer_uri(self) -> str | None:
        return self.extensions.get("build_signer_uri")

    @property
    def build_signer_digest(self) -> str | None:
        return self.extensions.get("build_signer_digest")

    @property
    def runner_environment(self) -> str | None:
        return self.extensions.get("runner_environment")

    @property
    def build_trigger(self) -> str | None:
        return self.extensions.get("build_trigger")

    @property
    def run_invocation_uri(self) -> str | None:
        return self.extensions.get("run_invocation_uri")


def _der_utf8_string(data: bytes) -> str | None:
    """The text of a DER UTF8String (tag 0x0C), or None if ``data`` is not exactly one."""
    if len(data) < 2 or data[0] != 0x0C:  # noqa: PLR2004
        return None
    length, offset = data[1], 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or len(data) < 2 + count:  # noqa: PLR2004
            return None
        length = int.from_bytes(data[2 : 2 + count], "big")
        offset = 2 + count
        if length < 0x80 or data[2] == 0:  # not minimal: not DER
            return None
    if len(data) != offset + length:
        return None
    try:
        return data[offset:].decode("utf-8")
    except UnicodeDecodeError:
        return None


def certificate_identity(cert: x509.Certificate) -> CertificateIdentity:
    """Read the signer identity out of a Fulcio certificate.

    Raises:
        VerificationError: the certificate has no single SAN or a Fulcio extension is garbled.
    """
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound as exc:
        raise VerificationError("signing certificate has no subject alternative name") from exc
    names = list(sans)
    if len(names) != 1:
        raise VerificationError(f"signing certificate has {len(names)} subject alternative names, not one")
    name = names[0]
    if isinstance(name, x509.UniformResourceIdentifier):
        san, san_type = name.value, "uri"
    elif isinstance(name, x509.RFC822Name):
        san, san_type = name.value, "email"
    elif isinstance(name, x509.OtherName) and name.type_id == _OTHERNAME_SAN:
        text = _der_utf8_string(name.value)
        if text is None:
            raise VerificationError("signing certificate's otherName SAN is not a DER UTF8String")
        san, san_type = text, "othername"
    else:
        raise VerificationError(f"signing certificate's SAN type {type(name).__name__} is not supported")

    extensions: dict[str, str] = {}
    for ext in cert.extensions:
        oid = ext.oid.dotted_string
        if not oid.startswith(_FULCIO) or not oid[len(_FULCIO) :].isdigit():
            continue
        arc = int(oid[len(_FULCIO) :])
        label = FULCIO_EXTENSIONS.get(arc)
        if label is None or not isinstance(ext.value, x509.UnrecognizedExtension):
            continue
        raw = ext.value.value
        if arc in _RAW_STRING_ARCS:
            try:
                value: str | None = raw.decode("utf-8")
            except UnicodeDecodeError:
                value = None
        else:
            value = _der_utf8_string(raw)
        if value is None:
            raise VerificationError(f"signing certificate extension {oid} ({label}) is not a UTF-8 string")
        extensions[label] = value
    issuer = extensions.get("issuer") or extensions.get("issuer_v1")
    return CertificateIdentity(san=san, san_type=san_type, issuer=issuer, extensions=extensions)


def verify_chain(cert: x509.Certificate, root: TrustedRoot, when: datetime) -> list[x509.Certificate]:
    """The chain (issuer first, root last) from ``cert`` to a Fulcio CA of ``root`` valid at ``when``.

    The CA's ``validFor`` window must contain ``when`` and every certificate of the chain must
    be valid at ``when``. Fulcio certificates carry the code-signing EKU (checked by the caller),
    not client-auth, so the EKU is left out of the path-building policy.

    Raises:
        VerificationError: no CA of the root issues a chain to ``cert`` valid at ``when``.
    """
    ca_policy = ExtensionPolicy.webpki_defaults_ca().may_be_present(
        x509.ExtendedKeyUsage, Criticality.NON_CRITICAL, None
    )
    ee_policy = ExtensionPolicy.webpki_defaults_ee().may_be_present(
        x509.ExtendedKeyUsage, Criticality.NON_CRITICAL, None
    )
    reasons = []
    for ca in root.certificate_authorities:
        if not ca.valid_for.contains(when):
            reasons.append(f"{ca.uri or 'CA'} is not valid at {when.isoformat()}")
            continue
        # The CA's chain: its root is the trust anchor, the rest are intermediates.
        anchor, intermediates = ca.certificates[-1], list(ca.certificates[:-1])
        verifier = (
            PolicyBuilder()
            .store(Store([anchor]))
            .time(when)
            .extension_policies(ca_policy=ca_policy, ee_policy=ee_policy)
            .build_client_verifier()
        )
        try:
            return list(verifier.verify(cert, intermediates).chain[1:])
        except (X509VerificationError, x509.UnsupportedGeneralNameType) as exc:
            reasons.append(f"{ca.uri or 'CA'}: {exc}")
    detail = "; ".join(reasons) or "the trusted root has no certificate authority"
    raise VerificationError(
        f"signing certificate does not chain to a trusted Fulcio CA at {when.isoformat()} ({detail})"
    )


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _is_root_ca(cert: x509.Certificate) -> bool:
    """A CA certificate that is its own issuer and signer (a trust anchor)."""
    if not _is_ca(cert) or cert.issuer != cert.subject:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def check_bundle_chain(certificates: Sequence[x509.Certificate]) -> None:
    """The client policy of Sigstore's protobuf-specs for a bundle's certificates: the first is
    the signing (leaf) certificate, not a CA, and none of the rest is a root CA. Trust anchors
    come only from the trusted root; a bundle that carries one is refused (sigstore-conformance
    ``test_verify_rejects_root``), although the chain is never trusted from the bundle anyway.
    (Every part of each certificate was decoded when the bundle was parsed, so reading the
    extensions here cannot fail.)

    Raises:
        VerificationError: the first certificate is a CA, or another is a root CA.
    """
    if not certificates:
        return
    if _is_ca(certificates[0]):
        raise VerificationError("the bundle's signing certificate is a CA certificate, not a leaf")
    for i, cert in enumerate(certificates[1:], start=1):
        if _is_root_ca(cert):
            raise VerificationError(
                f"the bundle's certificate chain holds a root CA certificate (certificate {i}, "
                f"{cert.subject.rfc4514_string()[:200]}): a trust anchor comes only from the trusted root"
            )


def check_code_signing(cert: x509.Certificate) -> None:
    """The Sigstore X.509 profile: digitalSignature key usage and the code-signing EKU."""
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        extended = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound as exc:
        raise VerificationError("signing certificate lacks key usage or extended key usage") from exc
    if not usage.digital_signature:
        raise VerificationError("signing certificate's key usage is not digitalSignature")
    if ExtendedKeyUsageOID.CODE_SIGNING not in extended:
        raise VerificationError("signing certificate's extended key usage is not code signing")


def _sct_millis(when: datetime) -> int:
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return (when - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


def verify_sct(cert: x509.Certificate, issuer: x509.Certificate, root: TrustedRoot) -> None:
    """At least one embedded SCT is signed by a CT log of ``root`` (RFC 6962 §3.2, precert entry).

    Raises:
        VerificationError: the certificate carries no SCT, or none verifies.
    """
    try:
        scts = cert.extensions.get_extension_for_class(x509.PrecertificateSignedCertificateTimestamps).value
    except x509.ExtensionNotFound as exc:
        raise VerificationError("signing certificate carries no signed certificate timestamp") from exc
    issuer_spki = issuer.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    issuer_key_hash = hashes.Hash(hashes.SHA256())
    issuer_key_hash.update(issuer_spki)
    key_hash = issuer_key_hash.finalize()
    tbs = cert.tbs_precertificate_bytes
    for sct in scts:
        log = root.ctlog(sct.log_id)
        if log is None:
            continue
        extensions = sct.extension_bytes
        # digitally-signed struct: version v1 (0), signature_type certificate_timestamp (0),
        # timestamp, entry_type precert_entry (1), issuer_key_hash, tbs<1..2^24-1>, extensions<0..2^16-1>
        signed = (
            struct.pack(">BBQH", 0, 0, _sct_millis(sct.timestamp), 1)
            + key_hash
            + len(tbs).to_bytes(3, "big")
            + tbs
            + len(extensions).to_bytes(2, "big")
            + extensions
        )
        if verify_with_key(log.public_key, log.key_details, sct.signature, signed):
            return
    raise VerificationError("no signed certificate timestamp verifies with a CT log of the trusted root")
