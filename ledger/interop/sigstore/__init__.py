"""Sigstore bundles in: parse, verify offline against trusted roots, match signer identities.

``parse_bundle`` (bytes → Bundle, strict), ``load_trusted_roots`` (files or
``PROVLEDGER_SIGSTORE_TRUSTED_ROOTS``, default the public-good root shipped with ``sigstore``),
``verify_bundle`` (→ VerifiedBundle) and ``IdentityPolicy`` (SAN + issuer + source repository).
"""

from __future__ import annotations

from ledger.interop.sigstore._x509 import CertificateIdentity
from ledger.interop.sigstore.bundle import MAX_BUNDLE_BYTES, Bundle, parse_bundle
from ledger.interop.sigstore.identity import IdentityMatch, IdentityPolicy
from ledger.interop.sigstore.trust import TrustedRoot, TrustedRoots, load_trusted_roots, parse_trusted_root
from ledger.interop.sigstore.verify import VerifiedBundle, VerifiedEntry, VerifiedTime, verify_bundle

__all__ = [
    "MAX_BUNDLE_BYTES",
    "Bundle",
    "CertificateIdentity",
    "IdentityMatch",
    "IdentityPolicy",
    "TrustedRoot",
    "TrustedRoots",
    "VerifiedBundle",
    "VerifiedEntry",
    "VerifiedTime",
    "load_trusted_roots",
    "parse_bundle",
    "parse_trusted_root",
    "verify_bundle",
]
