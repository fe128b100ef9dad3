"""Fixtures for the Sigstore bundle tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from ledger.records.keys import PublicKey, load_public_key
from ledger.interop.sigstore import TrustedRoots, load_trusted_roots
from tests.conftest import skip_or_fail
from tests.sigstore.factory import World
from tests.sigstore.sigstore_cases import PROVENANCE


@pytest.fixture(scope="session")
def provenance(vectors_dir: Path) -> Path:
    path = vectors_dir / PROVENANCE
    if not (path / "expected.json").is_file():
        skip_or_fail(f"provenance vectors not found at {path}")
    return path


@pytest.fixture(scope="session")
def read(provenance: Path) -> Callable[[str], bytes]:
    def _read(relative: str) -> bytes:
        return (provenance / relative).read_bytes()

    return _read


@pytest.fixture(scope="session")
def roots_for(provenance: Path) -> Callable[[str], TrustedRoots]:
    cache: dict[str, TrustedRoots] = {}

    def _roots(relative: str) -> TrustedRoots:
        if relative not in cache:
            cache[relative] = load_trusted_roots([provenance / relative])
        return cache[relative]

    return _roots


@pytest.fixture(scope="session")
def key_for(provenance: Path) -> Callable[[str | None], PublicKey | None]:
    def _key(relative: str | None) -> PublicKey | None:
        return None if relative is None else load_public_key((provenance / relative).read_bytes())

    return _key


@pytest.fixture
def own_checks_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Switch off the sigstore-python cross-check, so our own checks alone must catch a fault."""
    from ledger.interop.sigstore import _sigstore_python  # noqa: PLC0415

    monkeypatch.setattr(_sigstore_python, "covers", lambda bundle: False)


@pytest.fixture(scope="module")
def world() -> World:
    """A generated trust domain (tests/sigstore/factory.py), one per test module."""
    return World()
