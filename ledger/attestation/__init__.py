"""TEE attestation appraisal: the pure verification core (no database, no network).

``appraise(kind, evidence, endorsements=..., now=..., policy=...)`` verifies evidence from a
trusted execution environment down to the silicon vendor's pinned root and applies a
:class:`Policy`; it returns an :class:`Appraisal` listing every check. A signature or chain that
fails is a failed check (verdict ``"reject"``); evidence that does not parse raises
:class:`~ledger.errors.MalformedError`.

Formats (``kind``): ``sev-snp`` (:mod:`.sev_snp`), ``tdx`` (:mod:`.tdx`), ``nitro``
(:mod:`.nitro`), ``tpm`` (:mod:`.tpm`). Vendor roots are pinned by the SHA-256 of their DER
certificate in each module; the certificates themselves come with the evidence or as endorsements.
"""

from __future__ import annotations

from ledger.attestation._x509 import clear_caches
from ledger.attestation.appraisal import ACCEPT, REJECT, Appraisal, Check, Policy
from ledger.attestation.kinds import DEFAULT_POLICY, KINDS, appraise
from ledger.attestation.nitro import AWS_NITRO_ROOT_FINGERPRINTS
from ledger.attestation.sev_snp import AMD_ARK_FINGERPRINTS
from ledger.attestation.tdx import INTEL_ROOT_FINGERPRINTS
from ledger.attestation.tdx_tcb import TdxCollateral
from ledger.attestation.tpm import KNOWN_TPM_ROOTS

__all__ = [
    "ACCEPT",
    "AMD_ARK_FINGERPRINTS",
    "AWS_NITRO_ROOT_FINGERPRINTS",
    "DEFAULT_POLICY",
    "INTEL_ROOT_FINGERPRINTS",
    "KINDS",
    "KNOWN_TPM_ROOTS",
    "REJECT",
    "Appraisal",
    "Check",
    "Policy",
    "TdxCollateral",
    "appraise",
    "clear_caches",
]
