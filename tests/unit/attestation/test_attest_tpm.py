"""TPM 2.0 appraisal on quotes built here (TPMS_ATTEST/TPMT_SIGNATURE/TPMT_PUBLIC byte layouts)."""

from __future__ import annotations

import base64
import json

import pytest

from ledger.attestation import Policy
from ledger.attestation import tpm as tpm_mod
from ledger.attestation.tpm import appraise_tpm
from ledger.errors import MalformedError
from tests.unit.attestation.factories import (
    NOW,
    TPM_SHA1,
    TpmPki,
    der,
    encode_json,
    flip,
    to_protobuf,
)

CHECKS = ["ak_attributes", "ak_certificate_matches", "ak_chain", "quote_signature", "pcr_digest"]


def run(pki: TpmPki, evidence: bytes, *, policy: Policy | None = None, endorsements=None, now=NOW):
    policy = policy or Policy(tpm_roots=pki.roots)
    return appraise_tpm(
        evidence, endorsements=endorsements if endorsements is not None else [der(pki.root)],
        now=now, policy=policy,
    )


@pytest.mark.parametrize(("ak", "scheme"), [("rsa", "rsassa"), ("rsa", "rsapss"), ("ecc", "ecdsa")])
def test_valid_quote_json(tpm_pki: TpmPki, ak: str, scheme: str) -> None:
    doc = tpm_pki.evidence(ak=ak, quotes=[tpm_pki.quote(ak=ak, scheme=scheme)])
    appraisal = run(tpm_pki, encode_json(doc))
    assert appraisal.verdict == "accept", appraisal.failed
    assert [c.name for c in appraisal.checks] == CHECKS
    assert appraisal.claims["report_data"] == "9009"
    assert appraisal.claims["sha256.pcr3"] == "03" * 32
    assert appraisal.claims["debug"] is False


def test_protobuf_form(tpm_pki: TpmPki) -> None:
    doc = tpm_pki.evidence(quotes=[tpm_pki.quote(bank=TPM_SHA1), tpm_pki.quote()])
    appraisal = run(tpm_pki, to_protobuf(doc))
    assert appraisal.verdict == "accept", appraisal.failed
    assert appraisal.claims["sha1.pcr2"] == "02" * 20
    assert len(appraisal.claims["quotes"]) == 2
    # The SHA-256 quote's pcrDigest is the measurement.
    assert appraisal.claims["measurement"] == appraisal.claims["quotes"][1]["pcr_digest"]


def test_attest_flip(tpm_pki: TpmPki) -> None:
    doc = tpm_pki.evidence()
    attest = base64.b64decode(doc["quotes"][0]["attest"])
    doc["quotes"][0]["attest"] = base64.b64encode(flip(attest, -1)).decode()  # in pcrDigest
    appraisal = run(tpm_pki, encode_json(doc))
    assert {c.name for c in appraisal.failed} == {"quote_signature", "pcr_digest"}


def test_signature_flip(tpm_pki: TpmPki) -> None:
    doc = tpm_pki.evidence()
    sig = base64.b64decode(doc["quotes"][0]["signature"])
    doc["quotes"][0]["signature"] = base64.b64encode(flip(sig, 40)).decode()
    assert [c.name for c in run(tpm_pki, encode_json(doc)).failed] == ["quote_signature"]


@pytest.mark.parametrize("which", ["ak_certificate", "intermediate", "root"])
def test_certificate_flip(tpm_pki: TpmPki, which: str) -> None:
    doc = tpm_pki.evidence()
    endorsements = [der(tpm_pki.root)]
    if which == "ak_certificate":
        doc["ak_certificate"] = base64.b64encode(flip(der(tpm_pki.rsa_ak_cert), -3)).decode()
    elif which == "intermediate":
        doc["intermediates"] = [base64.b64encode(flip(der(tpm_pki.mid), -3)).decode()]
    else:
        endorsements = [flip(der(tpm_pki.root), -3)]
    appraisal = run(tpm_pki, encode_json(doc), endorsements=endorsements)
    assert appraisal.verdict == "reject"
    assert not appraisal.check("ak_chain").ok


def test_pcr_value_not_matching_digest(tpm_pki: TpmPki) -> None:
    real = {i: bytes([i]) * 32 for i in range(8)}
    lied = {**real, 7: b"\xee" * 32}
    doc = tpm_pki.evidence(quotes=[tpm_pki.quote(pcrs=lied, digest_pcrs=real)])
    appraisal = run(tpm_pki, encode_json(doc))
    assert [c.name for c in appraisal.failed] == ["pcr_digest"]


def test_missing_pcr_value(tpm_pki: TpmPki) -> None:
    real = {i: bytes([i]) * 32 for i in range(8)}
    partial = {i: v for i, v in real.items() if i != 4}
    doc = tpm_pki.evidence(quotes=[tpm_pki.quote(pcrs=partial, digest_pcrs=real)])
    check = run(tpm_pki, encode_json(doc)).check("pcr_digest")
    assert not check.ok
    assert "sha256:4" in check.reason


def test_ak_not_restricted(tpm_pki: TpmPki) -> None:
    doc = tpm_pki.evidence(attributes=0x00040072)  # sign, but not restricted
    assert [c.name for c in run(tpm_pki, encode_json(doc)).failed] == ["ak_attributes"]


def test_ak_certificate_for_another_key(tpm_pki: TpmPki) -> None:
    doc = tpm_pki.evidence(ak_cert=tpm_pki.ec_ak_cert)
    assert [c.name for c in run(tpm_pki, encode_json(doc)).failed] == ["ak_certificate_matches"]


def test_no_ak_certificate(tpm_pki: TpmPki) -> None:
    appraisal = run(tpm_pki, encode_json(tpm_pki.evidence(with_cert=False)))
    assert {c.name for c in appraisal.failed} == {"ak_certificate_matches", "ak_chain"}


def test_root_must_be_configured(tpm_pki: TpmPki) -> None:
    # The default roots are Google Cloud's: a test root is not trusted unless configured.
    appraisal = run(tpm_pki, encode_json(tpm_pki.evidence()), policy=Policy())
    assert [c.name for c in appraisal.failed] == ["ak_chain"]


def test_nonce(tpm_pki: TpmPki) -> None:
    evidence = encode_json(tpm_pki.evidence())
    good = Policy(tpm_roots=tpm_pki.roots, expected_report_data=b"\x90\x09")
    assert run(tpm_pki, evidence, policy=good).verdict == "accept"
    bad = Policy(tpm_roots=tpm_pki.roots, expected_report_data=b"\x90\x0a")
    assert [c.name for c in run(tpm_pki, evidence, policy=bad).failed] == ["report_data_binding"]
    mixed = encode_json(tpm_pki.evidence(quotes=[tpm_pki.quote(), tpm_pki.quote(nonce=b"x")]))
    assert "different extraData" in run(tpm_pki, mixed, policy=good).check("report_data_binding").reason


def test_measurement_and_registers(tpm_pki: TpmPki) -> None:
    evidence = encode_json(tpm_pki.evidence())
    measurement = bytes.fromhex(run(tpm_pki, evidence).claims["measurement"])
    good = Policy(
        tpm_roots=tpm_pki.roots,
        expected_measurements=frozenset({measurement}),
        expected_registers={"sha256.pcr7": b"\x07" * 32},
    )
    assert run(tpm_pki, evidence, policy=good).verdict == "accept"
    bad = Policy(
        tpm_roots=tpm_pki.roots,
        expected_measurements=frozenset({bytes(32)}),
        expected_registers={"sha256.pcr7": bytes(32)},
    )
    assert {c.name for c in run(tpm_pki, evidence, policy=bad).failed} == {
        "measurement_matches", "registers_match"
    }


# ---- malformed --------------------------------------------------------------------------------


def _with_attest(pki: TpmPki, **kwargs) -> bytes:
    return encode_json(pki.evidence(quotes=[pki.quote(**kwargs)]))


def _mutate_json(pki: TpmPki, change) -> bytes:
    doc = pki.evidence()
    change(doc)
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda p: _with_attest(p, magic=0x12345678), "magic"),
        (lambda p: _with_attest(p, st=0x8017), "not a quote"),
        (lambda p: b"{not json", "not valid JSON"),
        (lambda p: _mutate_json(p, lambda d: d.update(extra=1)), "unknown key"),
        (lambda p: _mutate_json(p, lambda d: d.update(format="v0")), "format must be"),
        (lambda p: _mutate_json(p, lambda d: d.update(quotes=[])), "no quote"),
        (lambda p: _mutate_json(p, lambda d: d.update(ak_public="!!")), "base64"),
        (
            lambda p: _mutate_json(
                p, lambda d: d["quotes"][0].update(attest=d["quotes"][0]["attest"][:40])
            ),
            "truncated|base64",
        ),
        (lambda p: _mutate_json(p, lambda d: d["quotes"][0].update(pcrs={"md5": {}})), "unknown key"),
        (lambda p: to_protobuf(p.evidence())[:-3], "runs past the end"),
        (lambda p: b"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", "varint"),
        (lambda p: b"\x0b", "wire type 3"),
        (lambda p: b"\x12\x00", "no ak_pub|lacks"),
    ],
)
def test_malformed(tpm_pki: TpmPki, build, match: str) -> None:
    with pytest.raises(MalformedError, match=match):
        run(tpm_pki, build(tpm_pki))


def test_parse_public_rejects_short_modulus(tpm_pki: TpmPki) -> None:
    from tests.unit.attestation.factories import tpmt_public_rsa

    public = tpmt_public_rsa(tpm_pki.rsa_ak.public_key())
    with pytest.raises(MalformedError, match="truncated|trailing|bits"):
        tpm_mod.parse_public(public[:-1])
