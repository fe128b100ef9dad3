"""SEV-SNP appraisal on reports built here in the AMD byte layout, signed by a test ARK/ASK/VCEK."""

from __future__ import annotations

import struct
from datetime import datetime, timedelta

import pytest

from ledger.attestation import Policy
from ledger.attestation.sev_snp import appraise_sev_snp, parse_report
from ledger.errors import MalformedError
from tests.unit.attestation.factories import (
    CHIP_ID,
    MILAN_TCB,
    NOW,
    SnpPki,
    der,
    flip,
    make_cert,
    pem,
    tcb_bytes,
)

POLICY = Policy()


def run(pki: SnpPki, report: bytes, *, policy: Policy = POLICY, vlek: bool = False, now: datetime = NOW, **kw):
    return appraise_sev_snp(
        report, endorsements=kw.get("endorsements") or pki.endorsements(vlek=vlek), now=now,
        policy=policy, roots=kw.get("roots", pki.roots),
    )


def test_valid_report_is_accepted_with_every_check(snp: SnpPki) -> None:
    appraisal = run(snp, snp.report(report_data=b"nonce"))
    assert appraisal.verdict == "accept", appraisal.failed
    assert [c.name for c in appraisal.checks] == [
        "vcek_chain", "report_signature", "vcek_tcb_matches_report", "vcek_hwid_matches_report",
        "debug_disabled", "migration_agent_disabled", "vmpl_allowed",
    ]
    claims = appraisal.claims
    assert claims["measurement"] == "11" * 48
    assert claims["report_data"] == (b"nonce".ljust(64, b"\0")).hex()
    assert claims["debug"] is False
    assert claims["product"] == "Milan"
    assert claims["reported_tcb_spl"] == MILAN_TCB


@pytest.mark.parametrize("version", [2, 3, 4, 5])
def test_report_versions(snp: SnpPki, version: int) -> None:
    assert run(snp, snp.report(version=version)).verdict == "accept"


def test_vlek_report(snp: SnpPki) -> None:
    appraisal = run(snp, snp.report(signing_key=1), vlek=True)
    assert appraisal.verdict == "accept", appraisal.failed
    assert appraisal.claims["signing_key"] == "vlek"
    assert "VLEK" in appraisal.check("vcek_chain").reason


def test_vcek_given_for_a_vlek_report_is_refused(snp: SnpPki) -> None:
    appraisal = run(snp, snp.report(signing_key=1), endorsements=snp.endorsements())
    assert not appraisal.check("vcek_chain").ok
    assert "names a VLEK" in appraisal.check("vcek_chain").reason


def test_vlek_under_an_ask_is_refused(snp: SnpPki) -> None:
    from tests.unit.attestation.factories import amd_extensions

    vlek = make_cert(
        "SEV-VLEK", snp.vcek_key.public_key(), "SEV-Milan", snp.ask_key, ca=False, pss=True,
        extensions=amd_extensions(MILAN_TCB, None),
    )
    appraisal = run(snp, snp.report(signing_key=1), endorsements=[der(vlek), pem(snp.ask, snp.ark)])
    assert not appraisal.check("vcek_chain").ok


def test_turin_layout(turin: SnpPki) -> None:
    appraisal = run(turin, turin.report(version=3, cpuid=b"\x1a\x02\x00"))
    assert appraisal.verdict == "accept", appraisal.failed
    assert appraisal.claims["reported_tcb_spl"] == {**MILAN_TCB, "fmc": 1}


# ---- crypto checks fail -----------------------------------------------------------------------


def test_body_flip_fails_signature(snp: SnpPki) -> None:
    appraisal = run(snp, flip(snp.report(), 0x95))
    assert appraisal.verdict == "reject"
    assert not appraisal.check("report_signature").ok


@pytest.mark.parametrize("offset", [0x2A0, 0x2A0 + 71, 0x2A0 + 72, 0x2A0 + 143])
def test_signature_flip_fails(snp: SnpPki, offset: int) -> None:
    assert not run(snp, flip(snp.report(), offset)).check("report_signature").ok


def test_unpinned_ark_fails_chain(snp: SnpPki) -> None:
    other = SnpPki()
    appraisal = run(snp, snp.report(), roots=other.roots)
    assert not appraisal.check("vcek_chain").ok
    assert "not a pinned root" in appraisal.check("vcek_chain").reason


def test_vcek_from_another_ask_fails_chain(snp: SnpPki) -> None:
    other = SnpPki()
    appraisal = run(snp, snp.report(), endorsements=[der(snp.vcek), pem(other.ask, snp.ark)])
    assert not appraisal.check("vcek_chain").ok


def test_expired_vcek_fails_chain(snp: SnpPki) -> None:
    appraisal = run(snp, snp.report(), now=NOW + timedelta(days=400))
    assert not appraisal.check("vcek_chain").ok
    assert "expired" in appraisal.check("vcek_chain").reason


def test_missing_vcek(snp: SnpPki) -> None:
    appraisal = run(snp, snp.report(), endorsements=[pem(snp.ask, snp.ark)])
    assert appraisal.verdict == "reject"
    assert "no VCEK" in appraisal.check("vcek_chain").reason
    assert not appraisal.check("report_signature").ok


def test_unsigned_report_is_refused(snp: SnpPki) -> None:
    appraisal = run(snp, snp.report(signing_key=7))
    assert appraisal.verdict == "reject"
    assert "unsigned" in appraisal.check("vcek_chain").reason


def test_vcek_for_another_tcb(snp: SnpPki) -> None:
    vcek = snp.make_vcek({**MILAN_TCB, "snp": 7}, CHIP_ID)
    appraisal = run(snp, snp.report(), endorsements=snp.endorsements(leaf=vcek))
    assert appraisal.check("vcek_chain").ok
    check = appraisal.check("vcek_tcb_matches_report")
    assert not check.ok
    assert "snpSPL is 7" in check.reason


def test_vcek_for_another_chip(snp: SnpPki) -> None:
    vcek = snp.make_vcek(MILAN_TCB, bytes(reversed(CHIP_ID)))
    appraisal = run(snp, snp.report(), endorsements=snp.endorsements(leaf=vcek))
    assert not appraisal.check("vcek_hwid_matches_report").ok


def test_hwid_wrapped_in_octet_string_is_accepted(snp: SnpPki) -> None:
    vcek = snp.make_vcek(MILAN_TCB, CHIP_ID, wrap_hwid=True)
    assert run(snp, snp.report(), endorsements=snp.endorsements(leaf=vcek)).verdict == "accept"


def test_vcek_without_tcb_extensions(snp: SnpPki) -> None:
    vcek = snp.make_vcek({}, CHIP_ID)
    check = run(snp, snp.report(), endorsements=snp.endorsements(leaf=vcek)).check(
        "vcek_tcb_matches_report"
    )
    assert not check.ok
    assert "missing" in check.reason


# ---- policy rules: a passing and a failing case each ------------------------------------------


def test_debug(snp: SnpPki) -> None:
    report = snp.report(policy=0x30000 | 1 << 19)
    refused = run(snp, report)
    assert refused.verdict == "reject"
    assert [c.name for c in refused.failed] == ["debug_disabled"]
    assert refused.claims["debug"] is True
    assert run(snp, report, policy=Policy(allow_debug=True)).verdict == "accept"


def test_migration_agent(snp: SnpPki) -> None:
    report = snp.report(policy=0x30000 | 1 << 18)
    assert [c.name for c in run(snp, report).failed] == ["migration_agent_disabled"]
    assert run(snp, report, policy=Policy(allow_migration_agent=True)).verdict == "accept"


def test_vmpl(snp: SnpPki) -> None:
    report = snp.report(vmpl=2)
    assert [c.name for c in run(snp, report).failed] == ["vmpl_allowed"]
    assert run(snp, report, policy=Policy(allowed_vmpl=frozenset({0, 2}))).verdict == "accept"


def test_min_tcb(snp: SnpPki) -> None:
    ok = run(snp, snp.report(), policy=Policy(min_snp_tcb={"snp": 8, "ucode": 100}, min_guest_svn=1))
    assert ok.check("min_tcb").ok
    low = run(snp, snp.report(), policy=Policy(min_snp_tcb={"snp": 9}))
    assert not low.check("min_tcb").ok
    assert "snpSPL 8 < 9" in low.check("min_tcb").reason
    svn = run(snp, snp.report(guest_svn=1), policy=Policy(min_guest_svn=2))
    assert not svn.check("min_tcb").ok


def test_measurement(snp: SnpPki) -> None:
    good = Policy(expected_measurements=frozenset({b"\x11" * 48, b"\x99" * 48}))
    assert run(snp, snp.report(), policy=good).check("measurement_matches").ok
    bad = Policy(expected_measurements=frozenset({b"\x99" * 48}))
    appraisal = run(snp, snp.report(), policy=bad)
    assert appraisal.verdict == "reject"
    assert not appraisal.check("measurement_matches").ok


def test_report_data_binding(snp: SnpPki) -> None:
    nonce = bytes(range(32))
    report = snp.report(report_data=nonce)
    assert run(snp, report, policy=Policy(expected_report_data=nonce)).verdict == "accept"
    replayed = run(snp, report, policy=Policy(expected_report_data=bytes(32)))
    assert [c.name for c in replayed.failed] == ["report_data_binding"]


def test_registers(snp: SnpPki) -> None:
    assert run(snp, snp.report(), policy=Policy(expected_registers={"host_data": b"\x22" * 32})).verdict == "accept"
    bad = run(snp, snp.report(), policy=Policy(expected_registers={"host_data": bytes(32)}))
    assert not bad.check("registers_match").ok


def test_empty_policy_values_add_no_checks(snp: SnpPki) -> None:
    names = {c.name for c in run(snp, snp.report()).checks}
    assert not names & {"measurement_matches", "report_data_binding", "min_tcb", "registers_match"}


# ---- malformed evidence -----------------------------------------------------------------------


def _patch(report: bytes, offset: int, fmt: str, value: int) -> bytes:
    out = bytearray(report)
    struct.pack_into(fmt, out, offset, value)
    return bytes(out)


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda r: r[:-1], "must be 1184 bytes"),
        (lambda r: r + b"\0", "must be 1184 bytes"),
        (lambda r: b"", "must be 1184 bytes"),
        (lambda r: _patch(r, 0, "<I", 1), "unsupported SEV-SNP report version 1"),
        (lambda r: _patch(r, 0, "<I", 6), "unsupported SEV-SNP report version 6"),
        (lambda r: _patch(r, 0x34, "<I", 2), "signature algorithm"),
        (lambda r: _patch(r, 0x48, "<I", 3 << 2), "unknown signing key"),
        (lambda r: _patch(r, 0x4C, "<I", 1), "reserved"),
        (lambda r: flip(r, 0x2A0 + 200), "after R and S"),
    ],
)
def test_malformed_reports(snp: SnpPki, mutate, match: str) -> None:
    with pytest.raises(MalformedError, match=match):
        run(snp, mutate(snp.report()))


def test_garbage_endorsement_is_malformed(snp: SnpPki) -> None:
    with pytest.raises(MalformedError, match="neither a certificate nor a CRL"):
        run(snp, snp.report(), endorsements=[b"not a certificate"])


def test_naive_time_is_a_caller_error(snp: SnpPki) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        run(snp, snp.report(), now=NOW.replace(tzinfo=None))


def test_parse_reads_fields(snp: SnpPki) -> None:
    report = parse_report(snp.report(version=3, guest_svn=7, vmpl=1, cpuid=b"\x19\x11\x01"))
    assert (report.version, report.guest_svn, report.vmpl, report.cpuid) == (3, 7, 1, (0x19, 0x11, 1))
    assert report.reported_tcb == tcb_bytes(MILAN_TCB)


def test_not_a_ca_cannot_issue(snp: SnpPki) -> None:
    # A VCEK-shaped certificate issued by another *leaf* (no CA bit) does not chain.
    fake_vcek = make_cert(
        "SEV-VCEK", snp.vcek_key.public_key(), "SEV-VLEK", snp.vcek_key, ca=False
    )
    appraisal = run(snp, snp.report(), endorsements=[der(fake_vcek), der(snp.vlek), pem(snp.asvk, snp.ark)])
    assert not appraisal.check("vcek_chain").ok
