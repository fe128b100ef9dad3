"""The appraisal result and the appraisal policy shared by every evidence format.

An :class:`Appraisal` is shaped like an EAR (Entity Attestation Result): a verdict, every check
that was made with its outcome and reason, and the claims read from the evidence. The verdict is
``"accept"`` only when there is at least one check and every check passed (fail closed).

A policy rule whose :class:`Policy` value is ``None`` is not evaluated and its check does not
appear; the rules with a default (debug, migration agent, VMPL) are always evaluated.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

__all__ = [
    "ACCEPT",
    "REJECT",
    "Appraisal",
    "Check",
    "Policy",
    "check_debug",
    "check_measurement",
    "check_registers",
    "check_report_data",
    "require_aware",
]

ACCEPT = "accept"
REJECT = "reject"
Verdict = Literal["accept", "reject"]


@dataclass(frozen=True)
class Check:
    """One named rule and its outcome; ``reason`` says why, in one sentence."""

    name: str
    ok: bool
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "reason": self.reason}


@dataclass
class Appraisal:
    """The result of appraising one piece of evidence.

    ``claims`` always holds ``measurement`` (hex), ``report_data`` (hex) and ``debug`` (bool),
    plus format-specific fields. Claims are read from the evidence whether or not it verified:
    trust them only when ``verdict == "accept"``.
    """

    kind: str
    checks: list[Check] = field(default_factory=list)
    claims: dict[str, Any] = field(default_factory=dict)

    @property
    def verdict(self) -> Verdict:
        return ACCEPT if self.checks and all(c.ok for c in self.checks) else REJECT

    def __bool__(self) -> bool:
        return self.verdict == ACCEPT

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def check(self, name: str) -> Check:
        """The check called ``name`` (KeyError when it was not made)."""
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(name)

    def add(self, name: str, ok: bool, reason: str) -> None:
        self.checks.append(Check(name, ok, reason))

    def to_json(self) -> dict[str, Any]:
        """The contract shape: ``{"verdict", "checks": [{"name","ok","reason"}], "claims"}``."""
        return {
            "verdict": self.verdict,
            "checks": [c.to_json() for c in self.checks],
            "claims": self.claims,
        }


@dataclass(frozen=True)
class Policy:
    """What an appraisal demands beyond a valid signature chain.

    Attributes:
        allow_debug: accept debug guests (SNP POLICY bit 19, TDX TD_ATTRIBUTES bit 0, Nitro
            all-zero PCR0-2).
        allow_migration_agent: accept SNP guests with a migration agent (POLICY bit 18).
        allowed_vmpl: SNP VMPLs the report may come from.
        min_snp_tcb: minimum SNP REPORTED_TCB components, keys among ``bl``, ``tee``, ``snp``,
            ``ucode`` and (Turin) ``fmc``.
        min_guest_svn: minimum SNP GUEST_SVN.
        min_tdx_tee_tcb_svn: minimum TDX TEE_TCB_SVN (16 bytes), compared byte by byte.
        expected_measurements: the launch measurement (SNP MEASUREMENT, TDX MRTD, Nitro PCR0,
            TPM pcrDigest of the SHA-256 quote) must be one of these.
        expected_registers: named registers that must hold these values (``rtmr0``..``rtmr3``,
            ``mrconfigid`` for TDX; ``pcr0``..``pcr15`` for Nitro; ``sha256.pcr7`` style for
            TPM; ``host_data``, ``id_key_digest``, ``family_id``, ``image_id`` for SNP).
        expected_report_data: the nonce/binding value. SNP and TDX REPORT_DATA (64 bytes) must
            equal it zero-padded to 64 bytes; a TPM quote's extraData and a Nitro ``nonce`` must
            equal it exactly.
        tpm_roots: SHA-256 (hex, of the DER) of the CA certificates a TPM AK chain may end at.
        max_evidence_age: for evidence that carries its own time (Nitro), how old it may be at
            ``now``.
        tdx_allowed_tcb_statuses: the TDX TCB statuses (Intel's names) that pass, when the
            status is evaluated (collateral given).
        tdx_require_tcb_status: refuse TDX quotes whose TCB status could not be evaluated
            because no collateral was given.
        require_report_data: refuse evidence when no expected report data was given (the
            binding is then demanded, not optional).
    """

    allow_debug: bool = False
    allow_migration_agent: bool = False
    allowed_vmpl: frozenset[int] = frozenset({0})
    min_snp_tcb: Mapping[str, int] | None = None
    min_guest_svn: int | None = None
    min_tdx_tee_tcb_svn: bytes | None = None
    expected_measurements: frozenset[bytes] | None = None
    expected_registers: Mapping[str, bytes] | None = None
    expected_report_data: bytes | None = None
    tpm_roots: frozenset[str] | None = None
    max_evidence_age: timedelta | None = None
    tdx_allowed_tcb_statuses: frozenset[str] = frozenset({"UpToDate"})
    tdx_require_tcb_status: bool = False
    require_report_data: bool = False


def require_aware(now: datetime) -> datetime:
    """Reject naive times: a verification time without a zone is a caller bug."""
    if now.tzinfo is None or now.utcoffset() is None:
        msg = "now must be a timezone-aware datetime"
        raise ValueError(msg)
    return now


def check_debug(appraisal: Appraisal, policy: Policy, *, debug: bool, what: str) -> None:
    if not debug:
        appraisal.add("debug_disabled", True, f"{what}: not a debug guest")
    elif policy.allow_debug:
        appraisal.add("debug_disabled", True, f"{what}: debug guest, allowed by policy")
    else:
        appraisal.add("debug_disabled", False, f"{what}: debug guest, refused by policy")


def check_measurement(appraisal: Appraisal, policy: Policy, measurement: bytes) -> None:
    if policy.expected_measurements is None:
        return
    ok = any(hmac.compare_digest(measurement, m) for m in policy.expected_measurements)
    reason = (
        f"measurement {measurement.hex()} is expected"
        if ok
        else f"measurement {measurement.hex()} is not one of the "
        f"{len(policy.expected_measurements)} expected measurement(s)"
    )
    appraisal.add("measurement_matches", ok, reason)


def check_registers(appraisal: Appraisal, policy: Policy, registers: Mapping[str, bytes]) -> None:
    if policy.expected_registers is None:
        return
    bad = []
    for name, want in sorted(policy.expected_registers.items()):
        got = registers.get(name)
        if got is None:
            bad.append(f"{name} is absent")
        elif not hmac.compare_digest(got, want):
            bad.append(f"{name} is {got.hex()}, expected {want.hex()}")
    if bad:
        appraisal.add("registers_match", False, "; ".join(bad))
    else:
        names = ", ".join(sorted(policy.expected_registers))
        appraisal.add("registers_match", True, f"registers match ({names or 'none required'})")


def check_report_data(
    appraisal: Appraisal, policy: Policy, report_data: bytes | None, *, pad_to: int | None, what: str
) -> None:
    """Compare the evidence's binding field with ``policy.expected_report_data``."""
    expected = policy.expected_report_data
    if expected is None:
        if policy.require_report_data:
            appraisal.add(
                "report_data_binding", False,
                f"the policy requires a {what} binding, and no expected value was given",
            )
        return
    if report_data is None:
        appraisal.add("report_data_binding", False, f"the evidence carries no {what}")
        return
    if pad_to is not None:
        if len(expected) > pad_to:
            appraisal.add(
                "report_data_binding", False, f"expected {what} is longer than {pad_to} bytes"
            )
            return
        expected = expected.ljust(pad_to, b"\x00")
    ok = hmac.compare_digest(report_data, expected)
    reason = (
        f"{what} equals the expected value"
        if ok
        else f"{what} {report_data.hex()} differs from the expected {expected.hex()}"
    )
    appraisal.add("report_data_binding", ok, reason)
