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

from collections.abc import Sequence
from datetime import datetime

from ledger.attestation._x509 import clear_caches
from ledger.attestation.appraisal import ACCEPT, REJECT, Appraisal, Check, Policy
from ledger.attestation.nitro import AWS_NITRO_ROOT_FINGERPRINTS, appraise_nitro
from ledger.attestation.sev_snp import AMD_ARK_FINGERPRINTS, appraise_sev_snp
from ledger.attestation.tdx import INTEL_ROOT_FINGERPRINTS, appraise_tdx
from ledger.attestation.tdx_tcb import TdxCollateral
from ledger.attestation.tpm import KNOWN_TPM_ROOTS, appraise_tpm
from ledger.errors import MalformedError

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
    "TdxCollateral",
    "Check",
    "Policy",
    "appraise",
    "clear_caches",
]

KINDS = ("sev-snp", "tdx", "tpm", "nitro")
DEFAULT_POLICY = Policy()

_APPRAISERS = {
    "sev-snp": appraise_sev_snp,
    "tdx": appraise_tdx,
    "tpm": appraise_tpm,
    "nitro": appraise_nitro,
}


def appraise(
    kind: str,
    evidence: bytes,
    *,
    endorsements: Sequence[bytes] = (),
    now: datetime,
    policy: Policy = DEFAULT_POLICY,
    collateral: TdxCollateral | None = None,
) -> Appraisal:
    """Appraise TEE evidence against the pinned vendor roots and ``policy``.

    Args:
        kind: one of :data:`KINDS`.
        evidence: the evidence bytes (format per ``kind``).
        endorsements: certificate/CRL files (PEM or DER) the evidence does not carry.
        now: the time certificates must be valid at (timezone-aware).
        policy: the appraisal policy.
        collateral: Intel TCB Info / QE Identity collateral (TDX only; others ignore it).

    Returns:
        The :class:`Appraisal`; ``verdict`` is ``"accept"`` only if every check passed.

    Raises:
        MalformedError: an unknown ``kind``, or evidence/endorsements that do not parse.
        ValueError: ``now`` is naive.
    """
    try:
        appraiser = _APPRAISERS[kind]
    except KeyError:
        msg = f"unknown evidence type {kind!r} (expected one of {', '.join(KINDS)})"
        raise MalformedError(msg) from None
    if kind == "tdx":
        return appraise_tdx(evidence, endorsements=endorsements, now=now, policy=policy, collateral=collateral)
    return appraiser(evidence, endorsements=endorsements, now=now, policy=policy)
