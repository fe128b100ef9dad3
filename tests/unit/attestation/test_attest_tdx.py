"""TDX appraisal on quotes built here in the DCAP byte layout, signed by a test PCK hierarchy."""

from __future__ import annotations

import struct
from datetime import timedelta

import pytest

from ledger.attestation import Policy
from ledger.attestation.tdx import appraise_tdx, parse_quote
from ledger.errors import MalformedError
from tests.unit.attestation.factories import NOW, TdxPki, der, flip, pem

CRYPTO_CHECKS = ["quote_signature", "qe_report_binding", "qe_report_signature", "pck_chain", "qe_identity"]


def run(pki: TdxPki, quote: bytes, *, policy: Policy = Policy(), endorsements=(), now=NOW, roots=None):
    return appraise_tdx(
        quote, endorsements=list(endorsements), now=now, policy=policy, roots=roots or pki.roots
    )


@pytest.mark.parametrize(("version", "body_type"), [(4, 2), (5, 2), (5, 3)])
def test_valid_quote(tdx_pki: TdxPki, version: int, body_type: int) -> None:
    appraisal = run(tdx_pki, tdx_pki.quote(version=version, body_type=body_type, report_data=b"n"))
    assert appraisal.verdict == "accept", appraisal.failed
    assert [c.name for c in appraisal.checks] == [*CRYPTO_CHECKS, "debug_disabled"]
    assert appraisal.claims["measurement"] == "33" * 48
    assert appraisal.claims["report_data"] == b"n".ljust(64, b"\0").hex()
    assert appraisal.claims["rtmr1"] == "41" * 48


def test_body_flip(tdx_pki: TdxPki) -> None:
    appraisal = run(tdx_pki, flip(tdx_pki.quote(), 0xB8))  # inside MRTD
    assert [c.name for c in appraisal.failed] == ["quote_signature"]


def test_signature_flip(tdx_pki: TdxPki) -> None:
    appraisal = run(tdx_pki, flip(tdx_pki.quote(), 0x278 + 4 + 10))
    assert [c.name for c in appraisal.failed] == ["quote_signature"]


def test_attestation_key_flip_breaks_signature_and_binding(tdx_pki: TdxPki) -> None:
    appraisal = run(tdx_pki, flip(tdx_pki.quote(), 0x278 + 4 + 64 + 63))
    assert {"quote_signature", "qe_report_binding"} <= {c.name for c in appraisal.failed}


def test_qe_report_flip(tdx_pki: TdxPki) -> None:
    qe_report = 0x278 + 4 + 128 + 6
    appraisal = run(tdx_pki, flip(tdx_pki.quote(), qe_report + 0x10))
    assert [c.name for c in appraisal.failed] == ["qe_report_signature"]


def test_qe_report_signature_flip(tdx_pki: TdxPki) -> None:
    appraisal = run(tdx_pki, flip(tdx_pki.quote(), 0x278 + 4 + 128 + 6 + 384 + 5))
    assert [c.name for c in appraisal.failed] == ["qe_report_signature"]


def test_broken_binding(tdx_pki: TdxPki) -> None:
    appraisal = run(tdx_pki, tdx_pki.quote(break_binding=True))
    assert [c.name for c in appraisal.failed] == ["qe_report_binding"]


def test_other_quoting_enclave(tdx_pki: TdxPki) -> None:
    appraisal = run(tdx_pki, tdx_pki.quote(qe_mrsigner=b"\x01" * 32))
    assert [c.name for c in appraisal.failed] == ["qe_identity"]


def test_unpinned_root(tdx_pki: TdxPki) -> None:
    appraisal = run(tdx_pki, tdx_pki.quote(), roots={"00" * 32: "other"})
    assert [c.name for c in appraisal.failed] == ["pck_chain"]


@pytest.mark.parametrize("which", ["pck", "platform", "root"])
def test_certificate_flip(tdx_pki: TdxPki, which: str) -> None:
    certs = [tdx_pki.pck, tdx_pki.platform, tdx_pki.root]
    ders = [der(c) for c in certs]
    index = ["pck", "platform", "root"].index(which)
    ders[index] = flip(ders[index], -3)  # inside the signature value: still parses
    from cryptography import x509

    chain = pem(*(x509.load_der_x509_certificate(d) for d in ders))
    appraisal = run(tdx_pki, tdx_pki.quote(chain_pem=chain))
    assert appraisal.verdict == "reject"
    assert not appraisal.check("pck_chain").ok


def test_expired_pck(tdx_pki: TdxPki) -> None:
    appraisal = run(tdx_pki, tdx_pki.quote(), now=NOW + timedelta(days=400))
    assert [c.name for c in appraisal.failed] == ["pck_chain"]


def test_crl(tdx_pki: TdxPki) -> None:
    clean = run(tdx_pki, tdx_pki.quote(), endorsements=[tdx_pki.crl(revoked=(1, 2))])
    assert clean.check("crl_not_revoked").ok
    assert clean.claims["crl_checked"] is True
    revoked = run(tdx_pki, tdx_pki.quote(), endorsements=[tdx_pki.crl(revoked=(4242,))])
    assert [c.name for c in revoked.failed] == ["crl_not_revoked"]
    assert "revoked" in revoked.check("crl_not_revoked").reason


def test_crl_with_bad_signature(tdx_pki: TdxPki) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    forged = tdx_pki.crl(key=ec.generate_private_key(ec.SECP256R1()))
    appraisal = run(tdx_pki, tdx_pki.quote(), endorsements=[forged])
    assert [c.name for c in appraisal.failed] == ["crl_not_revoked"]


def test_stale_crl(tdx_pki: TdxPki) -> None:
    appraisal = run(tdx_pki, tdx_pki.quote(), endorsements=[tdx_pki.crl(now=NOW - timedelta(days=90))])
    assert not appraisal.check("crl_not_revoked").ok


# ---- policy -----------------------------------------------------------------------------------


def test_debug(tdx_pki: TdxPki) -> None:
    quote = tdx_pki.quote(td_attributes=0x10000001)
    refused = run(tdx_pki, quote)
    assert [c.name for c in refused.failed] == ["debug_disabled"]
    assert refused.claims["debug"] is True
    assert run(tdx_pki, quote, policy=Policy(allow_debug=True)).verdict == "accept"


def test_min_tcb(tdx_pki: TdxPki) -> None:
    quote = tdx_pki.quote(tee_tcb_svn=b"\x03\x00\x04" + bytes(13))
    assert run(tdx_pki, quote, policy=Policy(min_tdx_tee_tcb_svn=b"\x03\x00\x04")).check("min_tcb").ok
    low = run(tdx_pki, quote, policy=Policy(min_tdx_tee_tcb_svn=b"\x04"))
    assert [c.name for c in low.failed] == ["min_tcb"]


def test_measurement(tdx_pki: TdxPki) -> None:
    quote = tdx_pki.quote()
    assert run(tdx_pki, quote, policy=Policy(expected_measurements=frozenset({b"\x33" * 48}))).verdict == "accept"
    wrong = run(tdx_pki, quote, policy=Policy(expected_measurements=frozenset({b"\x34" * 48})))
    assert [c.name for c in wrong.failed] == ["measurement_matches"]


def test_registers(tdx_pki: TdxPki) -> None:
    quote = tdx_pki.quote()
    good = Policy(expected_registers={"rtmr0": b"\x40" * 48, "rtmr2": b"\x42" * 48})
    assert run(tdx_pki, quote, policy=good).verdict == "accept"
    bad = run(tdx_pki, quote, policy=Policy(expected_registers={"rtmr1": b"\x40" * 48}))
    assert [c.name for c in bad.failed] == ["registers_match"]


def test_report_data(tdx_pki: TdxPki) -> None:
    quote = tdx_pki.quote(report_data=b"\x07" * 64)
    assert run(tdx_pki, quote, policy=Policy(expected_report_data=b"\x07" * 64)).verdict == "accept"
    replay = run(tdx_pki, quote, policy=Policy(expected_report_data=b"\x08" * 64))
    assert [c.name for c in replay.failed] == ["report_data_binding"]


# ---- malformed --------------------------------------------------------------------------------


def _patch(data: bytes, offset: int, fmt: str, value: int) -> bytes:
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, value)
    return bytes(out)


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda p: p.quote()[:100], "truncated"),
        (lambda p: p.quote()[:0x278 + 200], "truncated"),
        (lambda p: b"", "truncated"),
        (lambda p: _patch(p.quote(), 0, "<H", 3), "unsupported TDX quote version 3"),
        (lambda p: p.quote(key_type=3), "attestation key type"),
        (lambda p: p.quote(tee_type=0), "not TDX"),
        (lambda p: p.quote(cert_type=5), "not 6"),
        (lambda p: p.quote(inner_type=3), "not 5"),
        (lambda p: _patch(p.quote(version=5), 0x32, "<I", 600), "body type 2 with size 600"),
        (lambda p: _patch(p.quote(), 0x278, "<I", 10**6), "truncated"),
        (lambda p: p.quote(chain_pem=b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), "certificate"),
        (lambda p: p.quote(chain_pem=b""), "empty or not PEM"),
    ],
)
def test_malformed(tdx_pki: TdxPki, build, match: str) -> None:
    with pytest.raises(MalformedError, match=match):
        run(tdx_pki, build(tdx_pki))


def test_trailing_padding_is_ignored(tdx_pki: TdxPki) -> None:
    # Real quotes arrive zero-padded to a buffer size (go-tdx-guest's cos-113 sample).
    assert run(tdx_pki, tdx_pki.quote() + bytes(1000)).verdict == "accept"


def test_parse_v5_td15_fields(tdx_pki: TdxPki) -> None:
    quote = parse_quote(tdx_pki.quote(version=5, body_type=3))
    assert quote.body_type == 3
    assert len(quote.body["mrservicetd"]) == 48
