"""Identity policy for keyless (Fulcio certificate) signers.

A verified bundle says *who* signed: the certificate's SAN, the OIDC issuer, and for CI signers
the claims in Fulcio's extensions. A policy says who is *trusted*. For GitHub Actions the SAN is
the workflow that ran (``https://github.com/o/r/.github/workflows/w.yml@refs/...``); a
**reusable** workflow's SAN names the workflow's own repository and is the same for every
repository that calls it, so a policy that pins only the SAN trusts every caller. The calling
repository is in extension 1.3.6.1.4.1.57264.1.12 (source repository URI), which a policy can pin
as well, and should whenever the SAN is a shared workflow.

SAN globs match per ``/``-separated segment (python-tuf's rule): ``*`` never crosses a ``/``,
so ``https://github.com/acme/*`` cannot match a workflow in another path depth.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from ledger.interop.sigstore._x509 import CertificateIdentity
from ledger.interop.sigstore.verify import VerifiedBundle

__all__ = ["IdentityMatch", "IdentityPolicy", "san_matches"]


def san_matches(pattern: str, san: str) -> bool:
    """Whether ``san`` matches ``pattern`` segment by segment (``*`` does not cross ``/``)."""
    pattern_parts = pattern.split("/")
    san_parts = san.split("/")
    if len(pattern_parts) != len(san_parts):
        return False
    return all(fnmatch.fnmatchcase(part, glob) for glob, part in zip(pattern_parts, san_parts, strict=True))


@dataclass(frozen=True)
class IdentityMatch:
    """Whether a policy matched, and why (or why not), in one sentence."""

    ok: bool
    reason: str

    def __bool__(self) -> bool:
        return self.ok


@dataclass(frozen=True)
class IdentityPolicy:
    """Trust a certificate identity: a SAN glob, an exact OIDC issuer, optionally the source repo.

    Args:
        san_glob: the certificate's SAN must match it (per-segment glob).
        issuer: the OIDC issuer must equal it (e.g. ``https://token.actions.githubusercontent.com``).
        source_repository: when set, extension .1.12 (source repository URI) must equal it
            (e.g. ``https://github.com/acme/widget``); a certificate without it does not match.
    """

    san_glob: str
    issuer: str
    source_repository: str | None = None

    def __post_init__(self) -> None:
        # Fail closed: an empty pattern or issuer would be a policy that means nothing.
        if not self.san_glob or not self.issuer:
            raise ValueError("an identity policy needs a SAN pattern and an issuer")
        if self.source_repository == "":
            raise ValueError("source_repository must be a URI or None")

    def result(self, verified: VerifiedBundle) -> IdentityMatch:
        """Match ``verified``'s signer, with the reason."""
        return self.result_for(verified.identity)

    def result_for(self, identity: CertificateIdentity | None) -> IdentityMatch:
        """Match a certificate identity (None: a managed key), with the reason. The audit calls
        this with the identity a keyless entry's leaf records (the certificate's, checked)."""
        if identity is None:
            return IdentityMatch(False, "the bundle is signed with a managed key, not a certificate identity")
        if identity.issuer != self.issuer:
            return IdentityMatch(
                False, f"OIDC issuer {identity.issuer!r} is not the policy's issuer {self.issuer!r}"
            )
        if not san_matches(self.san_glob, identity.san):
            return IdentityMatch(False, f"certificate SAN {identity.san!r} does not match {self.san_glob!r}")
        if self.source_repository is not None:
            actual = identity.source_repository_uri
            if actual is None:
                return IdentityMatch(False, "the certificate names no source repository (extension 1.3.6.1.4.1.57264.1.12)")
            if actual != self.source_repository:
                return IdentityMatch(
                    False, f"source repository {actual!r} is not the policy's {self.source_repository!r}"
                )
        pinned = f" from {self.source_repository}" if self.source_repository else ""
        return IdentityMatch(True, f"signed by {identity.san} ({identity.issuer}){pinned}")

    def matches(self, verified: VerifiedBundle) -> bool:
        return self.result(verified).ok
