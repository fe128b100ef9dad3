"""The pure half: binding, predicate decoding and schema errors, measurement matching per TEE
type, and appraisals of generated TDX and Nitro evidence (roots pinned for the test)."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime

import pytest

from ledger.errors import MalformedError
from ledger.trust.deployment import (
    FIRMWARE_CHECK,
    Deployment,
    FirmwareCandidate,
    appraisal_document,
    appraise_deployment,
    binding,
    expected_report_data,
    match_firmware,
    parse_deployment,
    refusal_message,
)
from ledger.trust.predicates import DEPLOYMENT, validate_predicate
from tests.unit.attestation.factories import NOW, NitroPki, TdxPki

ARTIFACT = "ab" * 32


def _predicate(**overrides: object) -> dict:
    predicate = {
        "artifact": {"sha256": ARTIFACT},
        "host_id": "host-1",
        "environment": "prod",
        "evidence": {"type": "sev-snp", "encoding": "base64", "data": base64.b64encode(b"x" * 8).decode(), "endorsements": []},
        "nonce": "00" * 16,
    }
    predicate.update(overrides)
    return predicate


def test_binding_is_sha512_of_the_documented_string() -> None:
    text = b"provenance-ledger/deployment/v1\n" + ARTIFACT.encode() + b"\nhost-1\n" + b"0a" * 16
    assert binding(ARTIFACT, "host-1", "0a" * 16) == hashlib.sha512(text).digest()
    # hex is lowercased first, so upper-case submissions bind the same way
    assert binding(ARTIFACT.upper(), "host-1", "0A" * 16) == binding(ARTIFACT, "host-1", "0a" * 16)
    # every part is bound
    base = binding(ARTIFACT, "host-1", "0a" * 16)
    assert base != binding("cd" * 32, "host-1", "0a" * 16)
    assert base != binding(ARTIFACT, "host-2", "0a" * 16)
    assert base != binding(ARTIFACT, "host-1", "0b" * 16)
    assert len(expected_report_data("sev-snp", base)) == len(expected_report_data("tdx", base)) == 64
    assert expected_report_data("tpm", base) == expected_report_data("nitro", base) == base[:32]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"host_id": None}, "predicate.host_id is required"),
        ({"host_id": "a\nb"}, "predicate.host_id"),
        ({"nonce": "00"}, "predicate.nonce"),
        ({"nonce": "zz" * 16}, "predicate.nonce"),
        ({"artifact": {"sha256": "12"}}, "predicate.artifact.sha256"),
        ({"evidence": {"type": "sgx", "encoding": "base64", "data": "AAAA"}}, "predicate.evidence.type"),
        ({"evidence": {"type": "tpm", "encoding": "hex", "data": "AAAA"}}, "predicate.evidence.encoding"),
        ({"evidence": {"type": "tpm", "encoding": "base64"}}, "predicate.evidence.data is required"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_schema_errors_name_the_field(change: dict, field: str) -> None:
    predicate = _predicate(**change)
    predicate = {k: v for k, v in predicate.items() if v is not None}
    with pytest.raises(MalformedError, match=field.replace(".", r"\.").replace("[", r"\[")):
        validate_predicate(DEPLOYMENT, predicate)


def test_parse_refuses_a_subject_that_is_not_the_artifact_and_bad_base64() -> None:
    validate_predicate(DEPLOYMENT, _predicate())
    deployment = parse_deployment(_predicate(), [("sha256", ARTIFACT, "app")])
    assert deployment.evidence == b"x" * 8 and deployment.evidence_type == "sev-snp"
    with pytest.raises(MalformedError, match=r"predicate\.artifact\.sha256 .* must be the statement's subject"):
        parse_deployment(_predicate(), [("sha256", "cd" * 32, "app")])
    with pytest.raises(MalformedError, match="must be the statement's subject"):
        parse_deployment(_predicate(), [("sha256", ARTIFACT, "app"), ("sha256", "cd" * 32, "other")])
    bad = _predicate(evidence={"type": "tpm", "encoding": "base64", "data": "not base64!"})
    with pytest.raises(MalformedError, match=r"predicate\.evidence\.data is not valid base64"):
        parse_deployment(bad, [("sha256", ARTIFACT, "app")])
    bad = _predicate(evidence={"type": "tpm", "encoding": "base64", "data": "AAAA", "endorsements": ["AAAA", "%%%%"]})
    with pytest.raises(MalformedError, match=r"predicate\.evidence\.endorsements\[1\]"):
        parse_deployment(bad, [("sha256", ARTIFACT, "app")])


def _candidate(index: int, kind: str, value: object, because: str | None = None) -> FirmwareCandidate:
    return FirmwareCandidate(index, f"fw-{index}", {kind: value}, because)


def test_measurement_matching_per_tee_type() -> None:
    tdx_claims = {"measurement": "33" * 48, "mrtd": "33" * 48, "rtmr0": "40" * 48, "rtmr1": "41" * 48}
    ok, reason, fw = match_firmware("tdx", tdx_claims, [_candidate(3, "tdx", {"mrtd": "33" * 48, "rtmr0": "40" * 48})])
    assert ok and fw is not None and fw.index == 3 and "entry 3" in reason
    # an RTMR the record names must match too
    ok, reason, _ = match_firmware("tdx", tdx_claims, [_candidate(3, "tdx", {"mrtd": "33" * 48, "rtmr1": "00" * 48})])
    assert not ok and "no firmware-image record" in reason and "MRTD 3333" in reason

    nitro_claims = {f"pcr{i}": bytes([0x50 + i]).hex() * 48 for i in range(3)}
    nitro_fw = {f"pcr{i}": bytes([0x50 + i]).hex() * 48 for i in range(3)}
    assert match_firmware("nitro", nitro_claims, [_candidate(1, "nitro", nitro_fw)])[0]
    assert not match_firmware("nitro", nitro_claims, [_candidate(1, "nitro", {**nitro_fw, "pcr2": "00" * 48})])[0]

    tpm_claims = {"sha256.pcr0": "11" * 32, "sha256.pcr7": "22" * 32, "sha256.pcr1": "33" * 32}
    tpm_fw = {"bank": "sha256", "pcrs": {"0": "11" * 32, "7": "22" * 32}}
    assert match_firmware("tpm", tpm_claims, [_candidate(2, "tpm", tpm_fw)])[0]  # a subset of the quoted PCRs
    assert not match_firmware("tpm", tpm_claims, [_candidate(2, "tpm", {"bank": "sha1", "pcrs": {"0": "11" * 20}})])[0]
    assert not match_firmware("tpm", tpm_claims, [_candidate(2, "tpm", {"bank": "sha256", "pcrs": {"8": "11" * 32}})])[0]

    snp = {"measurement": "ab" * 48}
    # the latest trusted match wins; an untrusted match alone is refused with its reason
    ok, _, fw = match_firmware("sev-snp", snp, [_candidate(1, "sev-snp", "AB" * 48), _candidate(4, "sev-snp", "ab" * 48)])
    assert ok and fw is not None and fw.index == 4
    ok, reason, fw = match_firmware("sev-snp", snp, [_candidate(5, "sev-snp", "ab" * 48, "untrusted: key revoked")])
    assert not ok and fw is None and "entry 5" in reason and "not trusted: untrusted: key revoked" in reason
    assert not match_firmware("sev-snp", snp, [_candidate(6, "tdx", {"mrtd": "ab" * 48})])[0]


def _deployment(kind: str, evidence: bytes, endorsements: tuple[bytes, ...] = ()) -> Deployment:
    return Deployment(ARTIFACT, "host-1", "prod", kind, evidence, endorsements, "00" * 16)


@pytest.mark.usefixtures("pinned")
def test_tdx_and_nitro_evidence_appraise_to_their_pinned_roots(tdx_pki: TdxPki, nitro_pki: NitroPki) -> None:
    value = binding(ARTIFACT, "host-1", "00" * 16)
    tdx_dep = _deployment("tdx", tdx_pki.quote(report_data=value))
    appraisal, root = appraise_deployment(tdx_dep, now=NOW)
    assert appraisal, appraisal.failed
    assert root is not None and root.name == "Test SGX Root CA"
    assert appraisal.check("report_data_binding").ok

    # a debug TD and a quote bound to something else fail their named checks
    appraisal, _ = appraise_deployment(_deployment("tdx", tdx_pki.quote(report_data=value, td_attributes=0x10000001)), now=NOW)
    assert [c.name for c in appraisal.failed] == ["debug_disabled"]
    appraisal, _ = appraise_deployment(_deployment("tdx", tdx_pki.quote(report_data=value[::-1])), now=NOW)
    assert [c.name for c in appraisal.failed] == ["report_data_binding"]

    doc = nitro_pki.document(nonce=value[:32])
    appraisal, root = appraise_deployment(_deployment("nitro", doc), now=NOW)
    assert appraisal, appraisal.failed
    assert root is not None and root.name == "Test Nitro Root"
    appraisal, _ = appraise_deployment(_deployment("nitro", nitro_pki.document(nonce=value)), now=NOW)
    assert [c.name for c in appraisal.failed] == ["report_data_binding"]  # 64 bytes is not the documented 32


def test_unpinned_roots_and_malformed_evidence(tdx_pki: TdxPki) -> None:
    value = binding(ARTIFACT, "host-1", "00" * 16)
    appraisal, root = appraise_deployment(_deployment("tdx", tdx_pki.quote(report_data=value)), now=NOW)
    assert root is None and "pck_chain" in [c.name for c in appraisal.failed]
    with pytest.raises(MalformedError):
        appraise_deployment(_deployment("tdx", tdx_pki.quote(report_data=value)[:100]), now=NOW)
    with pytest.raises(MalformedError):
        appraise_deployment(_deployment("sev-snp", b"\x02" * 1000), now=NOW)
    with pytest.raises(MalformedError):
        appraise_deployment(_deployment("tpm", b"{not json"), now=NOW)
    with pytest.raises(MalformedError):
        appraise_deployment(_deployment("nitro", b"\xff\x00garbage"), now=NOW)


@pytest.mark.usefixtures("pinned")
def test_the_document_lists_every_check_and_the_refusal_names_the_failed_ones(tdx_pki: TdxPki) -> None:
    value = binding(ARTIFACT, "host-1", "00" * 16)
    dep = _deployment("tdx", tdx_pki.quote(report_data=value, td_attributes=0x10000001))
    appraisal, root = appraise_deployment(dep, now=datetime(2025, 6, 1, tzinfo=UTC))
    ok, reason, fw = match_firmware("tdx", appraisal.claims, [])
    appraisal.add(FIRMWARE_CHECK, ok, reason)
    doc = appraisal_document(dep, appraisal, root, appraised_at=1, firmware=fw)
    assert doc["verdict"] == "reject" and doc["firmware_entry"] is None
    assert [c["name"] for c in doc["checks"]] == [c.name for c in appraisal.checks]
    assert {"quote_signature", "pck_chain", "debug_disabled", "report_data_binding", FIRMWARE_CHECK} <= {c["name"] for c in doc["checks"]}
    message = refusal_message(doc)
    assert message.startswith("deployment refused: debug_disabled: ")
    assert "firmware_measurement_matches: no firmware-image record" in message
