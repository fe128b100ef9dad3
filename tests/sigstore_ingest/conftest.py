"""Fixtures for Sigstore bundles going into the ledger: trusted roots, identities, a web client."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ledger.errors import ConflictError
from ledger.records.keys import load_public_key
from ledger.trust.policy import Grant, Identity
from ledger.services import registry, setup
from ledger.services.append import Appended
from ledger.services.bundles import ARTIFACT_SIGNATURE
from ledger.interop.sigstore.trust import ENV_TRUSTED_ROOTS
from tests.conftest import skip_or_fail
from tests.sigstore.sigstore_cases import EXTRA_CASES, PROVENANCE, Case, bundle_cases

GITHUB = "https://token.actions.githubusercontent.com"
#: the conformance suite's workflow identity (every keyless conformance bundle is signed by it)
BEACON_REPO = "https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon"
BEACON_SAN = BEACON_REPO + "/.github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main"
HAPPY_DSSE = "sigstore-bundles/conformance/happy-path-intoto-in-dsse-v3/bundle.sigstore.json"

#: every trusted root a vector needs (the custom roots of the conformance cases included)
ROOTS = (
    "sigstore-trust/public-good.trusted_root.json",
    "sigstore-trust/staging.trusted_root.json",
    "sigstore-bundles/conformance/managed-key-and-trusted-root/trusted_root.json",
    "sigstore-bundles/conformance/intoto-with-custom-trust-root/trusted_root.json",
    "sigstore-bundles/conformance/intoto-expired-certificate_fail/trusted_root.json",
)


def all_cases() -> list[Case]:
    """expected.json's bundle cases, plus the two valid bundles it does not list."""
    return bundle_cases() + EXTRA_CASES


@pytest.fixture
def generated(store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Any]:
    """``store`` trusting a generated Sigstore world (tests/sigstore/factory.py): its trusted root
    configured, its workflow identity registered; returns (store, world)."""
    from tests.sigstore.factory import ISSUER, REPO, SAN, World  # noqa: PLC0415

    world = World()
    path = tmp_path / "trusted_root.json"
    path.write_bytes(world.trusted_root_json())
    monkeypatch.setenv(ENV_TRUSTED_ROOTS, str(path))
    store.clock = int(time.time())
    Policy(store).identity("widget-release", SAN, ISSUER, REPO)
    return store, world


@pytest.fixture
def provenance(vectors_dir: Path) -> Path:
    path = vectors_dir / PROVENANCE
    if not (path / "expected.json").is_file():
        skip_or_fail(f"provenance vectors not found at {path}")
    return path


@pytest.fixture
def sigstore_roots(provenance: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """PROVLEDGER_SIGSTORE_TRUSTED_ROOTS naming every root the vectors need."""
    value = ":".join(str(provenance / r) for r in ROOTS)
    monkeypatch.setenv(ENV_TRUSTED_ROOTS, value)
    return value


@dataclass
class Policy:
    """Registers identities and keys on a test store through admin-signed key events."""

    store: Any

    @property
    def admin(self) -> Any:
        return setup.load_admin_key(self.store.settings)

    def identity(self, name: str, san: str, issuer: str, repo: str | None = None, *grants: Grant) -> str:
        ident = Identity(san=san, issuer=issuer, source_repository=repo)
        registry.add_identity(
            self.store.sessions, self.store.log, self.admin, name, ident, list(grants) or [Grant(("*",))], now=self.store.tick()
        )
        return ident.id

    def key(self, name: str, pem: bytes, *grants: Grant) -> str:
        key = load_public_key(pem)
        registry.add_key(
            self.store.sessions, self.store.log, self.admin, name, key, list(grants) or [Grant((ARTIFACT_SIGNATURE,))],
            now=self.store.tick(),
        )
        return key.key_id

    def revoke(self, principal_id: str) -> None:
        registry.revoke_key(self.store.sessions, self.store.log, self.admin, principal_id, now=self.store.tick())


def register_for(policy: Policy, case: Case, provenance: Path) -> None:
    """The grant a passing vector needs: its identity (pinned to its repository when the
    certificate names one), or its managed key."""
    sample = case.sample or {}
    if case.public_key is not None:
        try:
            policy.key(f"key-{case.id}", (provenance / case.public_key).read_bytes())
        except ConflictError:  # the two managed-key vectors share their key
            pass
        return
    from ledger.interop.sigstore import parse_bundle  # noqa: PLC0415
    from ledger.interop.sigstore._x509 import certificate_identity  # noqa: PLC0415

    cert = parse_bundle((provenance / case.bundle).read_bytes()).signing_certificate
    assert cert is not None
    ident = certificate_identity(cert)
    if "san" in sample:  # expected.json states it: hold our reading of the certificate to it
        assert (ident.san, ident.issuer) == (sample["san"], sample["issuer"])
    assert ident.issuer is not None
    try:
        policy.identity(f"id-{case.id}", ident.san, ident.issuer, ident.source_repository_uri)
    except ConflictError:  # the same workflow identity signs several vectors
        pass


@pytest.fixture
def bundle_store(sqlite_store: Any, sigstore_roots: str) -> Any:
    """A SQLite store whose clock is the real time: the ledger judges at integration time, and
    the vectors were signed (and logged) before it."""
    sqlite_store.clock = int(time.time())
    return sqlite_store


@pytest.fixture
def any_bundle_store(store: Any, sigstore_roots: str) -> Any:
    """The same on SQLite and PostgreSQL."""
    store.clock = int(time.time())
    return store


def ok(result: Any) -> dict[str, Any]:
    assert isinstance(result, Appended), f"refused: {result!r}"
    return result.receipt
