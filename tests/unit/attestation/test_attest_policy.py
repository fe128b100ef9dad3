"""The appraisal policy document: strict parsing, its JSON Schema, and SEV-SNP reports at VMPL
0-3 (and other fields) judged under different documents; ``attest verify --policy``."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from ledger.attestation.policy_document import (
    DEFAULT_ENVIRONMENT,
    MAX_POLICY_BYTES,
    default_document,
    parse_policy_document,
    policy_schema,
)
from ledger.attestation.sev_snp import appraise_sev_snp
from ledger.cli.main import main
from ledger.errors import MalformedError
from tests.unit.attestation.factories import NOW, MILAN_TCB, SnpPki


def appraise(snp: SnpPki, report: bytes, document: dict, *, nonce: bytes | None = None):
    policy = parse_policy_document(json.dumps(document).encode()).policy_for("sev-snp", expected_report_data=nonce)
    return appraise_sev_snp(report, endorsements=snp.endorsements(), now=NOW, policy=policy, roots=snp.roots)


VMPL_POLICIES = {
    "default": {"version": 1},
    "vmpl0": {"version": 1, "sev-snp": {"allowed_vmpls": [0]}},
    "svsm": {"version": 1, "sev-snp": {"allowed_vmpls": [1, 2, 3]}},
    "any": {"version": 1, "sev-snp": {"allowed_vmpls": [0, 1, 2, 3]}},
    "vmpl2": {"version": 1, "sev-snp": {"allowed_vmpls": [2]}},
}
EXPECTED = {"default": {0}, "vmpl0": {0}, "svsm": {1, 2, 3}, "any": {0, 1, 2, 3}, "vmpl2": {2}}


@pytest.mark.parametrize("vmpl", [0, 1, 2, 3])
@pytest.mark.parametrize("name", sorted(VMPL_POLICIES))
def test_vmpl_under_policies(snp: SnpPki, vmpl: int, name: str) -> None:
    appraisal = appraise(snp, snp.report(vmpl=vmpl), VMPL_POLICIES[name])
    ok = vmpl in EXPECTED[name]
    assert appraisal.check("vmpl_allowed").ok is ok
    assert appraisal.verdict == ("accept" if ok else "reject"), appraisal.failed
    assert f"VMPL {vmpl}" in appraisal.check("vmpl_allowed").reason
    assert appraisal.claims["vmpl"] == vmpl


def test_min_tcb_per_component(snp: SnpPki) -> None:
    report = snp.report()
    ok = appraise(snp, report, {"version": 1, "sev-snp": {"min_tcb": {"bootloader": 3, "tee": 0, "snp": 8, "microcode": 115}}})
    assert ok.check("min_tcb").ok
    for component, short in (("bootloader", "bl"), ("snp", "snp"), ("microcode", "ucode"), ("tee", "tee")):
        low = appraise(snp, report, {"version": 1, "sev-snp": {"min_tcb": {component: MILAN_TCB[short] + 1}}})
        assert not low.check("min_tcb").ok
        assert f"{short}SPL {MILAN_TCB[short]} < {MILAN_TCB[short] + 1}" in low.check("min_tcb").reason


def test_fmc_minimum_applies_where_present(snp: SnpPki, turin: SnpPki) -> None:
    assert appraise(snp, snp.report(), {"version": 1, "sev-snp": {"min_tcb": {"fmc": 9}}}).check("min_tcb").ok
    turin_report = turin.report(version=3, cpuid=b"\x1a\x00\x00")
    high = appraise(turin, turin_report, {"version": 1, "sev-snp": {"min_tcb": {"fmc": 9}}})
    assert "fmcSPL 1 < 9" in high.check("min_tcb").reason
    assert appraise(turin, turin_report, {"version": 1, "sev-snp": {"min_tcb": {"fmc": 1}}}).check("min_tcb").ok


def test_debug_migration_guest_svn(snp: SnpPki) -> None:
    debug = snp.report(policy=0x30000 | (1 << 19))
    assert not appraise(snp, debug, {"version": 1}).check("debug_disabled").ok
    assert appraise(snp, debug, {"version": 1, "sev-snp": {"allow_debug": True}}).verdict == "accept"
    ma = snp.report(policy=0x30000 | (1 << 18))
    assert not appraise(snp, ma, {"version": 1}).check("migration_agent_disabled").ok
    assert appraise(snp, ma, {"version": 1, "sev-snp": {"allow_migration_agent": True}}).verdict == "accept"
    svn = appraise(snp, snp.report(guest_svn=1), {"version": 1, "sev-snp": {"min_guest_svn": 2}})
    assert "GUEST_SVN 1 < 2" in svn.check("min_tcb").reason


def test_required_report_data(snp: SnpPki) -> None:
    doc = {"version": 1, "sev-snp": {"require_report_data": True}}
    missing = appraise(snp, snp.report(report_data=b"n"), doc)
    assert not missing.check("report_data_binding").ok
    assert appraise(snp, snp.report(report_data=b"n"), doc, nonce=b"n").verdict == "accept"
    assert not appraise(snp, snp.report(report_data=b"n"), doc, nonce=b"m").check("report_data_binding").ok


def test_defaults_equal_todays_behaviour() -> None:
    from ledger.attestation import Policy

    document = default_document()
    assert document.environment == DEFAULT_ENVIRONMENT
    for kind in ("sev-snp", "tdx", "tpm", "nitro"):
        assert document.policy_for(kind) == Policy()
        assert parse_policy_document(b'{"version": 1}').policy_for(kind) == Policy()


@pytest.mark.parametrize(("raw", "needle"), [
    (b'{"version": 2}', "version"),
    (b'{"version": 1.0}', "integers"),
    (b'{}', "version"),
    (b'{"version": 1, "sev-snp": {"allowed_vmpls": [4]}}', "sev-snp.allowed_vmpls[0]"),
    (b'{"version": 1, "sev-snp": {"allowed_vmpls": []}}', "allowed_vmpls"),
    (b'{"version": 1, "sev-snp": {"allowed_vmpls": [0, 0]}}', "allowed_vmpls"),
    (b'{"version": 1, "sev-snp": {"allowed_vmpl": [0]}}', "allowed_vmpl"),
    (b'{"version": 1, "sev-snp": {"min_tcb": {"ucode": 1}}}', "ucode"),
    (b'{"version": 1, "sev-snp": {"min_tcb": {"microcode": 256}}}', "microcode"),
    (b'{"version": 1, "sev-snp": {"allow_debug": "yes"}}', "allow_debug"),
    (b'{"version": 1, "sev-snp": {"allow_debug": 1}}', "allow_debug"),
    (b'{"version": 1, "tdx": {"allowed_tcb_statuses": ["Fine"]}}', "allowed_tcb_statuses[0]"),
    (b'{"version": 1, "tdx": {"min_tee_tcb_svn": "xyz"}}', "min_tee_tcb_svn"),
    (b'{"version": 1, "sgx": {}}', "sgx"),
    (b'{"version": 1, "environment": ""}', "environment"),
    (b'{"version": 1, "environment": "a b"}', "environment"),
    (b'{"version": 1, "version": 1}', "twice"),
    (b'[{"version": 1}]', "object"),
    (b'{"version": 1', "JSON"),
    (b'\xff', "UTF-8"),
    (b'{"version": 1, "description": "' + b"x" * MAX_POLICY_BYTES + b'"}', "larger"),
])
def test_malformed_documents_named(raw: bytes, needle: str) -> None:
    with pytest.raises(MalformedError) as info:
        parse_policy_document(raw)
    assert needle in str(info.value)


def test_a_huge_bad_value_is_shown_by_its_start_and_length() -> None:
    raw = b'{"version": 1, "tdx": {"min_tee_tcb_svn": "' + b"z" * 50_000 + b'"}}'
    with pytest.raises(MalformedError) as info:
        parse_policy_document(raw)
    message = str(info.value)
    assert "min_tee_tcb_svn" in message and "characters)" in message and len(message) < 1_000, message[:300]


def test_schema_file_is_the_parser_schema() -> None:
    schema = json.loads((Path(__file__).parents[3] / "ledger" / "attestation" / "schemas" / "appraisal-policy.v1.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema == policy_schema()
    full = {
        "version": 1, "environment": "production", "description": "prod",
        "sev-snp": {"allowed_vmpls": [0, 2], "min_tcb": {"bootloader": 3, "tee": 0, "snp": 8, "microcode": 115, "fmc": 1},
                    "allow_debug": False, "allow_migration_agent": False, "min_guest_svn": 1, "require_report_data": True,
                    "measurements": ["11" * 48]},
        "tdx": {"allowed_tcb_statuses": ["UpToDate", "SWHardeningNeeded"], "require_tcb_status": True, "allow_debug": False,
                "min_tee_tcb_svn": "030004", "require_report_data": True},
        "tpm": {"require_report_data": True},
        "nitro": {"allow_debug": False, "max_evidence_age_seconds": 600},
    }
    jsonschema.validate(full, schema)
    parsed = parse_policy_document(json.dumps(full))
    assert parsed.environment == "production"
    assert parsed.policy_for("sev-snp").allowed_vmpl == frozenset({0, 2})
    assert parsed.policy_for("tdx").tdx_allowed_tcb_statuses == frozenset({"UpToDate", "SWHardeningNeeded"})


# ------------------------------------------------------------------------------ the command line


def _files(tmp_path: Path, snp: SnpPki, report: bytes) -> list[str]:
    (tmp_path / "r.bin").write_bytes(report)
    vcek, chain = snp.endorsements()
    (tmp_path / "vcek.der").write_bytes(vcek)
    (tmp_path / "chain.pem").write_bytes(chain)
    return [str(tmp_path / "r.bin"), "--endorsement", str(tmp_path / "vcek.der"), str(tmp_path / "chain.pem"),
            "--at", NOW.isoformat()]


@pytest.fixture
def pinned(snp: SnpPki, monkeypatch: pytest.MonkeyPatch) -> SnpPki:
    from ledger.attestation import sev_snp

    # the CLI appraises against the module's pinned roots: pin the test ARK for this test only
    monkeypatch.setattr(sev_snp.appraise_sev_snp, "__kwdefaults__", {"roots": snp.roots})
    return snp


@pytest.mark.parametrize(("vmpl", "policy", "code"), [(2, None, 1), (2, "svsm", 0), (0, "svsm", 1), (0, None, 0)])
def test_cli_policy(tmp_path: Path, pinned: SnpPki, capsys: pytest.CaptureFixture[str], vmpl: int, policy: str | None, code: int) -> None:
    argv = ["attest", "verify", "--type", "sev-snp", *_files(tmp_path, pinned, pinned.report(vmpl=vmpl)), "--json"]
    if policy:
        (tmp_path / "p.json").write_text(json.dumps({**VMPL_POLICIES[policy], "environment": "cloud"}))
        argv += ["--policy", str(tmp_path / "p.json")]
    assert main(argv) == code
    out = json.loads(capsys.readouterr().out)
    assert out["verdict"] == ("accept" if code == 0 else "reject")
    assert "vmpl_allowed" in [c["name"] for c in out["checks"]]
    if policy:
        assert out["policy"]["environment"] == "cloud"


def test_cli_bad_policy_is_usage_error(tmp_path: Path, pinned: SnpPki, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "p.json").write_text('{"version": 1, "sev-snp": {"allowed_vmpls": [7]}}')
    argv = ["attest", "verify", "--type", "sev-snp", *_files(tmp_path, pinned, pinned.report()), "--policy", str(tmp_path / "p.json")]
    assert main(argv) == 2
    assert "allowed_vmpls[0]" in capsys.readouterr().err


@pytest.mark.parametrize(
    "raw,rule",
    [
        (b'{"version": 1, "environment": "\\ud800"}', "lone surrogate"),
        (b'{"version": 1, "x": ' + b"[" * 100 + b"]" * 100 + b"}", "deeper than 64"),
        (b'{"version": 1' + b", \"n\": 1" + b"0" * 60 + b"}", "number of 61 characters"),
    ],
    ids=["lone-surrogate", "too-deep", "huge-number"],
)
def test_policy_documents_go_through_the_strict_loader(raw: bytes, rule: str) -> None:
    from ledger.attestation.policy_document import parse_policy_document  # noqa: PLC0415

    with pytest.raises(MalformedError) as refused:
        parse_policy_document(raw)
    assert rule in str(refused.value)
