"""Session-wide test PKIs (key generation is the slow part of these tests)."""

from __future__ import annotations

import pytest

from tests.unit.attestation.factories import NitroPki, SnpPki, TdxPki, TpmPki


@pytest.fixture(scope="session")
def snp() -> SnpPki:
    return SnpPki()


@pytest.fixture(scope="session")
def turin() -> SnpPki:
    return SnpPki(product="Turin")


@pytest.fixture(scope="session")
def tdx_pki() -> TdxPki:
    return TdxPki()


@pytest.fixture(scope="session")
def nitro_pki() -> NitroPki:
    return NitroPki()


@pytest.fixture(scope="session")
def tpm_pki() -> TpmPki:
    return TpmPki()
