"""The deployment tests' fixtures (test CAs for TEE evidence, pinned roots, a TPM trust folder),
for the verdict-bundle tests that build deployments too."""

from tests.deployment.conftest import (  # noqa: F401 - fixtures, taken by name
    nitro_pki,
    pinned,
    snp_now,
    snp_pki,
    tdx_pki,
    tee_trust,
    tpm_now,
    tpm_pki,
)
