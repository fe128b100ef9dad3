"""Test CAs for deployment evidence, pinned for the test only, and a TPM trust folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger.attestation import nitro, sev_snp, tdx
from tests.deployment.helpers import CurrentSnpPki, CurrentTpmPki
from tests.unit.attestation.factories import NitroPki, SnpPki, TdxPki, TpmPki, fingerprint, pem


@pytest.fixture(scope="session")
def snp_pki() -> SnpPki:
    return SnpPki()


@pytest.fixture(scope="session")
def tpm_pki() -> TpmPki:
    return TpmPki()


@pytest.fixture(scope="session")
def snp_now() -> SnpPki:
    """Valid at the wall-clock time (for the HTTP API and the command line)."""
    return CurrentSnpPki()


@pytest.fixture(scope="session")
def tpm_now() -> TpmPki:
    return CurrentTpmPki()


@pytest.fixture(scope="session")
def tdx_pki() -> TdxPki:
    return TdxPki()


@pytest.fixture(scope="session")
def nitro_pki() -> NitroPki:
    return NitroPki()


@pytest.fixture
def pinned(
    snp_pki: SnpPki, snp_now: SnpPki, tdx_pki: TdxPki, nitro_pki: NitroPki, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The test ARKs, SGX root and Nitro root pinned beside the vendors' (for this test only)."""
    monkeypatch.setitem(sev_snp.AMD_ARK_FINGERPRINTS, fingerprint(snp_pki.ark), "Milan")  # type: ignore[index]
    monkeypatch.setitem(sev_snp.AMD_ARK_FINGERPRINTS, fingerprint(snp_now.ark), "Milan")  # type: ignore[index]
    monkeypatch.setitem(tdx.INTEL_ROOT_FINGERPRINTS, fingerprint(tdx_pki.root), "Test SGX Root CA")  # type: ignore[index]
    monkeypatch.setitem(nitro.AWS_NITRO_ROOT_FINGERPRINTS, fingerprint(nitro_pki.root), "Test Nitro Root")  # type: ignore[index]


@pytest.fixture
def tee_trust(tpm_pki: TpmPki, tpm_now: TpmPki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A trust folder holding the test TPM roots, configured through PROVLEDGER_TEE_TRUST_DIR."""
    folder = tmp_path / "tee-trust"
    folder.mkdir()
    (folder / "test-tpm-root.pem").write_bytes(pem(tpm_pki.root))
    (folder / "current-tpm-root.pem").write_bytes(pem(tpm_now.root))
    monkeypatch.setenv("PROVLEDGER_TEE_TRUST_DIR", str(folder))
    yield folder
