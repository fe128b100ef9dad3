"""Appraisal by evidence type: ``appraise(kind, evidence, …)`` dispatches to the format's appraiser."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from ledger.attestation.appraisal import Appraisal, Policy
from ledger.attestation.nitro import appraise_nitro
from ledger.attestation.sev_snp import appraise_sev_snp
from ledger.attestation.tdx import appraise_tdx
from ledger.attestation.tdx_tcb import TdxCollateral
from ledger.attestation.tpm import appraise_tpm
from ledger.errors import MalformedError

__all__ = ["DEFAULT_POLICY", "KINDS", "appraise"]

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
        collateral: Intel TCB Info / QE Identity collateral (TDX only; the others take none).

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
