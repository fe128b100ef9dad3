"""Identity policy for keyless signers: a GitHub Actions workflow, pinned by SAN, issuer and repo.

The real bundle is trailofbits/rfc8785.py's release workflow (public-good Fulcio). A reusable
workflow's SAN names the workflow's repository whatever repository calls it, so the reusable
case swaps in an identity with the same SAN and another source repository.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest

from ledger.interop.sigstore import IdentityPolicy, TrustedRoots, VerifiedBundle, parse_bundle, verify_bundle
from ledger.interop.sigstore._x509 import CertificateIdentity
from ledger.interop.sigstore.identity import san_matches
from ledger.records.keys import PublicKey
from tests.sigstore.sigstore_cases import EXTRA_CASES, NOW, bundle_cases

pytestmark = pytest.mark.vectors

GITHUB = "https://token.actions.githubusercontent.com"
REPO = "https://github.com/trailofbits/rfc8785.py"
SAN = f"{REPO}/.github/workflows/release.yml@refs/tags/v0.1.2"


def _verify(case_id: str, read: Callable[[str], bytes], roots_for: Callable[[str], TrustedRoots],
            key_for: Callable[[str | None], PublicKey | None]) -> VerifiedBundle:
    case = next(c for c in bundle_cases() + EXTRA_CASES if c.id == case_id)
    return verify_bundle(
        parse_bundle(read(case.bundle)),
        roots_for(case.trusted_root),
        artifact=read(case.artifact) if case.artifact else None,
        public_key=key_for(case.public_key),
        now=NOW,
    )


@pytest.fixture
def workflow(read: Callable[[str], bytes], roots_for: Callable[[str], TrustedRoots],
             key_for: Callable[[str | None], PublicKey | None]) -> VerifiedBundle:
    return _verify("bundle_v3_github.whl.sigstore", read, roots_for, key_for)


def test_github_certificate_claims(workflow: VerifiedBundle) -> None:
    identity = workflow.identity
    assert identity is not None
    assert identity.san == SAN
    assert identity.san_type == "uri"
    assert identity.issuer == GITHUB
    assert identity.source_repository_uri == REPO
    assert identity.source_repository_ref == "refs/tags/v0.1.2"
    assert identity.source_repository_digest == "d8b4a6445f38c48b9137a8099706d9b8073146e4"
    assert identity.build_signer_uri == SAN
    assert identity.runner_environment == "github-hosted"
    assert identity.build_trigger == "release"
    assert identity.run_invocation_uri == f"{REPO}/actions/runs/8351058501/attempts/1"
    assert identity.extensions["source_repository_visibility_at_signing"] == "public"


def test_workflow_policy_matches(workflow: VerifiedBundle) -> None:
    policy = IdentityPolicy(f"{REPO}/.github/workflows/release.yml@refs/tags/*", GITHUB, source_repository=REPO)
    result = policy.result(workflow)
    assert result
    assert policy.matches(workflow)
    assert REPO in result.reason


@pytest.mark.parametrize(
    ("policy", "reason"),
    [
        # the right SAN, but another repository
        (IdentityPolicy(SAN, GITHUB, source_repository="https://github.com/evil/rfc8785.py"), "source repository"),
        # another workflow of the same repository
        (IdentityPolicy(f"{REPO}/.github/workflows/ci.yml@*", GITHUB, source_repository=REPO), "does not match"),
        # a branch instead of a tag
        (IdentityPolicy(f"{REPO}/.github/workflows/release.yml@refs/heads/*", GITHUB), "does not match"),
        # the right SAN from another issuer
        (IdentityPolicy(SAN, "https://accounts.google.com"), "OIDC issuer"),
        # '*' does not cross '/': one star cannot stand for owner/repo/path
        (IdentityPolicy("https://github.com/*", GITHUB), "does not match"),
        # a near miss of the repository
        (IdentityPolicy(SAN, GITHUB, source_repository=REPO + "-fork"), "source repository"),
    ],
)
def test_workflow_policy_refuses(workflow: VerifiedBundle, policy: IdentityPolicy, reason: str) -> None:
    result = policy.result(workflow)
    assert not result
    assert not policy.matches(workflow)
    assert reason in result.reason


def test_reusable_workflow_needs_the_source_repository_pinned(workflow: VerifiedBundle) -> None:
    shared = "https://github.com/acme/workflows/.github/workflows/build.yml@refs/tags/v1"

    def called_from(repository: str) -> VerifiedBundle:
        assert workflow.identity is not None
        extensions = dict(workflow.identity.extensions, source_repository_uri=repository)
        identity = CertificateIdentity(san=shared, san_type="uri", issuer=GITHUB, extensions=extensions)
        return dataclasses.replace(workflow, identity=identity)

    ours, theirs = called_from("https://github.com/acme/app"), called_from("https://github.com/mallory/app")
    san_only = IdentityPolicy("https://github.com/acme/workflows/.github/workflows/build.yml@refs/tags/*", GITHUB)
    pinned = dataclasses.replace(san_only, source_repository="https://github.com/acme/app")
    # Pinning only the SAN trusts every repository that calls the shared workflow...
    assert san_only.matches(ours)
    assert san_only.matches(theirs)
    # ...pinning both trusts only ours.
    assert pinned.matches(ours)
    assert not pinned.matches(theirs)


def test_pinned_repository_absent_from_certificate(
    read: Callable[[str], bytes], roots_for: Callable[[str], TrustedRoots],
    key_for: Callable[[str | None], PublicKey | None],
) -> None:
    person = _verify("bundle_v3.txt.sigstore", read, roots_for, key_for)  # an e-mail identity
    assert person.identity is not None
    assert person.identity.san_type == "email"
    assert IdentityPolicy("william@yossarian.net", "https://github.com/login/oauth").matches(person)
    policy = IdentityPolicy("william@yossarian.net", "https://github.com/login/oauth", source_repository=REPO)
    result = policy.result(person)
    assert not result
    assert "names no source repository" in result.reason


def test_managed_key_bundle_has_no_identity(
    read: Callable[[str], bytes], roots_for: Callable[[str], TrustedRoots],
    key_for: Callable[[str | None], PublicKey | None],
) -> None:
    verified = _verify("managed-key-happy-path", read, roots_for, key_for)
    result = IdentityPolicy("*", GITHUB).result(verified)
    assert not result
    assert "managed key" in result.reason


def test_empty_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="SAN pattern and an issuer"):
        IdentityPolicy("", GITHUB)
    with pytest.raises(ValueError, match="SAN pattern and an issuer"):
        IdentityPolicy("*", "")
    with pytest.raises(ValueError, match="source_repository"):
        IdentityPolicy("*", GITHUB, source_repository="")


@pytest.mark.parametrize(
    ("pattern", "san", "expected"),
    [
        ("https://github.com/o/r/.github/workflows/w.yml@refs/tags/*", "https://github.com/o/r/.github/workflows/w.yml@refs/tags/v1", True),
        ("https://github.com/o/*/.github/workflows/w.yml@*", "https://github.com/o/r/.github/workflows/w.yml@main", True),
        ("https://github.com/o/*", "https://github.com/o/r/.github/workflows/w.yml@main", False),
        ("https://github.com/o/r/.github/workflows/w.yml@refs/tags/*", "https://github.com/o/r/.github/workflows/w.yml@refs/tags/a/b", False),
        ("alice@example.com", "alice@example.com", True),
        ("alice@example.com", "Alice@example.com", False),
        ("*@example.com", "alice@example.com", True),
    ],
)
def test_san_glob_is_per_segment(pattern: str, san: str, expected: bool) -> None:
    assert san_matches(pattern, san) is expected
