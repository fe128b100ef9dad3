"""Every real TEE sample in ../shared/vectors/tee/ gives the result its manifest.json states, at its
``verify_at`` time; one-byte flips in report, signature and each certificate fail.

Vendor certificates are read from the vectors folder, never copied into the repository.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from ledger.attestation import Policy, appraise
from ledger.attestation._x509 import pem_certificates
from ledger.attestation.nitro import parse_document
from ledger.errors import MalformedError
from tests.conftest import load_vector, skip_or_fail, vectors_root
from tests.unit.attestation.factories import flip

pytestmark = pytest.mark.vectors

TEE = "tee"


def _path(relative: str) -> Path:
    path = vectors_root() / TEE / relative
    if not path.is_file():
        skip_or_fail(f"TEE vector {path} not found (set PROVLEDGER_VECTORS)")
    return path


def _read(relative: str) -> bytes:
    return _path(relative).read_bytes()


def _samples(fmt: str) -> list[dict[str, Any]]:
    try:
        manifest = load_vector(f"{TEE}/manifest.json")
    except pytest.skip.Exception:
        return []
    return [s for s in manifest["samples"] if s["format"] == fmt]


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _ids(samples: list[dict[str, Any]]) -> list[str]:
    return [Path(s["evidence"]).name for s in samples]


def _from_pem(ders: list[bytes]) -> bytes:
    return b"".join(
        x509.load_der_x509_certificate(d).public_bytes(Encoding.PEM) for d in ders
    )


def _check_fields(claims: dict[str, Any], fields: dict[str, Any]) -> None:
    assert claims["debug"] is fields["debug"]
    assert claims["report_data"] == fields["report_data"]


CRYPTO = {
    "sev-snp": ["vcek_chain", "report_signature", "vcek_tcb_matches_report", "vcek_hwid_matches_report"],
    "tdx": ["quote_signature", "qe_report_binding", "qe_report_signature", "pck_chain", "qe_identity"],
    "nitro": ["cose_signature", "cert_chain", "document_time"],
}


def _crypto_ok(appraisal, kind: str) -> bool:
    return all(appraisal.check(name).ok for name in CRYPTO[kind])


# ---- SEV-SNP ----------------------------------------------------------------------------------

SNP = _samples("sev-snp")


def _snp(sample: dict[str, Any], **kw: Any):
    evidence = kw.pop("evidence", None) or _read(sample["evidence"])
    endorsements = kw.pop("endorsements", None) or [_read(sample["endorsement"]), _read(sample["chain"])]
    return appraise(
        "sev-snp", evidence, endorsements=endorsements, now=_at(sample["verify_at"]),
        policy=kw.pop("policy", Policy()),
    )


@pytest.mark.parametrize("sample", SNP, ids=_ids(SNP))
def test_snp_sample(sample: dict[str, Any]) -> None:
    appraisal = _snp(sample)
    assert sample["crypto"] == "valid"
    assert _crypto_ok(appraisal, "sev-snp"), appraisal.failed
    fields = sample["fields"]
    _check_fields(appraisal.claims, fields)
    assert appraisal.claims["measurement"] == fields["measurement"]
    assert appraisal.claims["chip_id"] == fields["chip_id"]
    assert appraisal.claims["reported_tcb"] == fields["reported_tcb"]
    assert appraisal.claims["policy"] == fields["policy"]
    assert appraisal.claims["guest_svn"] == fields["guest_svn"]
    if sample["policy"].startswith("accept"):
        assert appraisal.verdict == "accept", appraisal.failed
    else:
        assert "DEBUG" in sample["policy"]
        assert [c.name for c in appraisal.failed] == ["debug_disabled"]
        assert _snp(sample, policy=Policy(allow_debug=True)).verdict == "accept"


@pytest.mark.parametrize("sample", SNP, ids=_ids(SNP))
def test_snp_flips(sample: dict[str, Any]) -> None:
    report = _read(sample["evidence"])
    assert not _snp(sample, evidence=flip(report, 21)).check("report_signature").ok
    assert not _snp(sample, evidence=flip(report, 0x2A0 + 3)).check("report_signature").ok
    assert not _snp(sample, evidence=flip(report, 0x2A0 + 72 + 3)).check("report_signature").ok
    vcek = _read(sample["endorsement"])
    chain = pem_certificates(_read(sample["chain"]))
    bad_vcek = _snp(sample, endorsements=[flip(vcek, -3), _from_pem(chain)])
    assert not bad_vcek.check("vcek_chain").ok
    for index in range(len(chain)):  # ASK, then ARK
        certs = list(chain)
        certs[index] = flip(certs[index], -3)
        appraisal = _snp(sample, endorsements=[vcek, _from_pem(certs)])
        assert appraisal.verdict == "reject"
        assert not appraisal.check("vcek_chain").ok


def test_snp_wrong_product_chain() -> None:
    if not SNP:
        skip_or_fail("TEE manifest not found")
    sample = SNP[1]
    appraisal = _snp(
        sample, endorsements=[_read(sample["endorsement"]), _read("roots/amd/ask_ark_genoa.pem")]
    )
    assert not appraisal.check("vcek_chain").ok


@pytest.mark.parametrize("name", ["test-vcek-invalid-legacy.der", "test-vcek-invalid-new.der"])
def test_snp_invalid_vceks(name: str) -> None:
    base = "samples/sev-snp/trustee/"
    appraisal = appraise(
        "sev-snp", _read(base + "test-report.bin"),
        endorsements=[_read(base + name), _read("roots/amd/ask_ark_milan.pem")],
        now=_at("2024-01-01T00:00:00Z"), policy=Policy(),
    )
    assert appraisal.verdict == "reject"
    assert not appraisal.check("vcek_chain").ok


def test_turin_vcek_chains_to_turin_ark() -> None:
    from ledger.attestation import _x509
    from ledger.attestation.sev_snp import AMD_ARK_FINGERPRINTS

    base = "samples/sev-snp/virtee-sev/"
    vcek = _read(base + "vcek_turin.der")
    pool = pem_certificates(_read(base + "cert_chain_turin"))
    result = _x509.verify_chain(vcek, pool, AMD_ARK_FINGERPRINTS, _at("2025-01-01T00:00:00Z"))
    assert result.ok, result.reason
    assert result.root_name == "Turin"


# ---- TDX --------------------------------------------------------------------------------------

TDX = _samples("tdx")


def _tdx(sample: dict[str, Any], evidence: bytes | None = None, **kw: Any):
    return appraise(
        "tdx", evidence or _read(sample["evidence"]), endorsements=kw.pop("endorsements", []),
        now=_at(sample["verify_at"]), policy=kw.pop("policy", Policy()),
    )


@pytest.mark.parametrize("sample", TDX, ids=_ids(TDX))
def test_tdx_sample(sample: dict[str, Any]) -> None:
    appraisal = _tdx(sample)
    assert appraisal.verdict == "accept", appraisal.failed
    fields = sample["fields"]
    _check_fields(appraisal.claims, fields)
    claims = appraisal.claims
    assert claims["version"] == fields["version"]
    assert claims["measurement"] == claims["mrtd"] == fields["mrtd"]
    for name in ("rtmr0", "rtmr1", "rtmr2", "rtmr3", "mrseam", "tee_tcb_svn"):
        assert claims[name] == fields[name]
    assert int(claims["td_attributes"], 16) == int(fields["td_attributes"], 16)


def test_tdx_cos_nonce() -> None:
    sample = next(s for s in TDX if "cos-113" in s["evidence"]) if TDX else skip_or_fail("no TDX")
    nonce = _read("samples/tdx/go-tdx-guest/cos-113-nonce.dat")
    assert _tdx(sample, policy=Policy(expected_report_data=nonce)).verdict == "accept"
    replay = _tdx(sample, policy=Policy(expected_report_data=b"\x01" * 64))
    assert [c.name for c in replay.failed] == ["report_data_binding"]


def test_tdx_crls() -> None:
    sample = next(s for s in TDX if "SPR_E4" in s["evidence"]) if TDX else skip_or_fail("no TDX")
    base = "samples/tdx/go-tdx-guest/"
    appraisal = _tdx(sample, endorsements=[_read(base + "pckcrl"), _read(base + "rootcrl.der")])
    assert appraisal.verdict == "accept", appraisal.failed
    assert appraisal.check("crl_not_revoked").ok


@pytest.mark.parametrize("sample", TDX, ids=_ids(TDX))
def test_tdx_flips(sample: dict[str, Any]) -> None:
    quote = _read(sample["evidence"])
    body_end = 0x278 if sample["fields"]["version"] == 4 else 0x36 + 648
    assert not _tdx(sample, flip(quote, 0xC0)).check("quote_signature").ok
    assert not _tdx(sample, flip(quote, body_end + 4 + 5)).check("quote_signature").ok
    assert not _tdx(sample, flip(quote, body_end + 4 + 128 + 6 + 0x20)).check("qe_report_signature").ok
    # Each certificate of the embedded PEM chain, flipped inside its signature.
    start = quote.index(b"-----BEGIN CERTIFICATE-----")
    end = quote.rindex(b"-----END CERTIFICATE-----") + len(b"-----END CERTIFICATE-----\n")
    chain = pem_certificates(quote[start:end])
    for index in range(len(chain)):
        certs = list(chain)
        certs[index] = flip(certs[index], -3)
        new_pem = _from_pem(certs)
        assert len(new_pem) == end - start
        appraisal = _tdx(sample, quote[:start] + new_pem + quote[end:])
        assert appraisal.verdict == "reject"
        assert not appraisal.check("pck_chain").ok


def test_tdx_sgx_quote_is_refused_as_malformed() -> None:
    with pytest.raises(MalformedError, match="version 3"):
        appraise("tdx", _read("samples/sgx/trustee/occlum_quote.dat"), now=datetime.now(UTC))


# ---- Nitro ------------------------------------------------------------------------------------

NITRO = _samples("aws-nitro")


def _nitro(sample: dict[str, Any], evidence: bytes | None = None, **kw: Any):
    evidence = evidence or _read(sample["evidence"])
    at = datetime.fromtimestamp(sample["fields"]["timestamp_ms"] / 1000, tz=UTC)
    return appraise("nitro", evidence, now=at, policy=kw.pop("policy", Policy()))


@pytest.mark.parametrize("sample", NITRO, ids=_ids(NITRO))
def test_nitro_sample(sample: dict[str, Any]) -> None:
    appraisal = _nitro(sample)
    assert _crypto_ok(appraisal, "nitro"), appraisal.failed
    fields = sample["fields"]
    claims = appraisal.claims
    assert claims["debug"] is fields["debug_mode"]
    assert claims["module_id"] == fields["module_id"]
    assert claims["timestamp_ms"] == fields["timestamp_ms"]
    for name in ("pcr0", "pcr1", "pcr2", "pcr8"):
        assert claims[name] == fields[name]
    assert claims["measurement"] == fields["pcr0"]
    assert claims["user_data"] == fields["user_data"]
    if fields["nonce_len"] is not None:
        assert len(claims["nonce"]) == 2 * fields["nonce_len"]
    if sample["policy"].startswith("reject"):
        assert [c.name for c in appraisal.failed] == ["debug_disabled"]
    else:
        assert appraisal.verdict == "accept"
        pcr0 = bytes.fromhex(fields["pcr0"])
        assert _nitro(sample, policy=Policy(expected_measurements=frozenset({pcr0}))).verdict == "accept"
        wrong = _nitro(sample, policy=Policy(expected_measurements=frozenset({bytes(48)})))
        assert [c.name for c in wrong.failed] == ["measurement_matches"]


@pytest.mark.parametrize("sample", NITRO, ids=_ids(NITRO))
def test_nitro_flips(sample: dict[str, Any]) -> None:
    raw = _read(sample["evidence"])
    doc = parse_document(raw)
    binary = raw if raw[:1] in (b"\x84", b"\xd2") else __import__("base64").b64decode(raw)
    module = binary.index(doc.module_id.encode())
    renamed = bytearray(binary)
    renamed[module + 2] ^= 0x01  # still valid UTF-8
    assert not _nitro(sample, bytes(renamed)).check("cose_signature").ok
    assert not _nitro(sample, flip(binary, len(binary) - 10)).check("cose_signature").ok
    for cert in [doc.certificate, *doc.cabundle]:
        at = binary.index(cert) + len(cert) - 3
        appraisal = _nitro(sample, flip(binary, at))
        assert appraisal.verdict == "reject"
        assert not appraisal.check("cert_chain").ok


def test_nitro_expired_after_three_hours() -> None:
    sample = NITRO[1] if NITRO else skip_or_fail("no Nitro samples")
    appraisal = appraise("nitro", _read(sample["evidence"]), now=_at("2024-01-01T00:00:00Z"))
    assert not appraisal.check("cert_chain").ok


# ---- TPM --------------------------------------------------------------------------------------

TPM = _samples("tpm2-quote")
GCE = "samples/tpm/go-tpm-tools/gce-ca-certs/"


@pytest.mark.parametrize("sample", TPM, ids=_ids(TPM))
def test_tpm_sample(sample: dict[str, Any]) -> None:
    evidence = _read("samples/tpm/go-tpm-tools/gce-cos-85-nonce9009.pb")
    endorsements = [_read(GCE + "tpm_ek_intermediate_2.crt"), _read(GCE + "tpm_ek_root_1.cer")]
    now = _at(sample["verify_at"])
    nonce = bytes.fromhex(sample["fields"]["extraData"])
    appraisal = appraise("tpm", evidence, endorsements=endorsements, now=now,
                         policy=Policy(expected_report_data=nonce))
    assert appraisal.verdict == "accept", appraisal.failed
    assert appraisal.claims["ak_name"] == sample["fields"]["ak_name"]
    assert len(appraisal.claims["quotes"]) == 3
    pcrs = dict(
        line.split() for line in _read(
            "samples/tpm/go-tpm-tools/extracted-nonce9009/quote1_sha256.pcrs.txt"
        ).decode().splitlines() if line.strip()
    )
    assert appraisal.claims["sha256.pcr0"] == pcrs["0"]
    replay = appraise("tpm", evidence, endorsements=endorsements, now=now,
                      policy=Policy(expected_report_data=b"\x90\x0a"))
    assert [c.name for c in replay.failed] == ["report_data_binding"]
    # Without the intermediate the AK does not chain.
    alone = appraise("tpm", evidence, endorsements=endorsements[1:], now=now, policy=Policy())
    assert [c.name for c in alone.failed] == ["ak_chain"]


def test_tpm_flips() -> None:
    evidence = _read("samples/tpm/go-tpm-tools/gce-cos-85-nonce9009.pb")
    endorsements = [_read(GCE + "tpm_ek_intermediate_2.crt"), _read(GCE + "tpm_ek_root_1.cer")]
    now = _at("2022-01-01T00:00:00Z")
    base = "samples/tpm/go-tpm-tools/extracted-nonce9009/"
    attest = _read(base + "quote1_sha256.tpms_attest.bin")
    sig = _read(base + "quote1_sha256.tpmt_signature.bin")
    ak_cert = _read(base + "ak_cert.der")
    cases = {
        "quote_signature": [evidence.replace(attest, flip(attest, -3)),
                            evidence.replace(sig, flip(sig, 50))],
        "ak_chain": [evidence.replace(ak_cert, flip(ak_cert, -3))],
    }
    for check, variants in cases.items():
        for variant in variants:
            assert variant != evidence
            appraisal = appraise("tpm", variant, endorsements=endorsements, now=now, policy=Policy())
            assert not appraisal.check(check).ok
    for index in range(2):
        certs = list(endorsements)
        certs[index] = flip(certs[index], -3)
        appraisal = appraise("tpm", evidence, endorsements=certs, now=now, policy=Policy())
        assert not appraisal.check("ak_chain").ok
