"""Nitro appraisal on COSE_Sign1 documents built here, signed by a test root → zonal → leaf."""

from __future__ import annotations

import base64
from datetime import timedelta

import cbor2
import pytest

from ledger.attestation import Policy
from ledger.attestation.nitro import appraise_nitro
from ledger.errors import MalformedError
from tests.unit.attestation.factories import NOW, NitroPki, der, flip


def run(pki: NitroPki, doc: bytes, *, policy: Policy = Policy(), now=NOW, roots=None):
    return appraise_nitro(doc, endorsements=[], now=now, policy=policy, roots=roots or pki.roots)


def test_valid_document(nitro_pki: NitroPki) -> None:
    appraisal = run(nitro_pki, nitro_pki.document())
    assert appraisal.verdict == "accept", appraisal.failed
    assert [c.name for c in appraisal.checks] == ["cose_signature", "cert_chain", "document_time", "debug_disabled"]
    claims = appraisal.claims
    assert claims["measurement"] == claims["pcr0"] == "50" * 48
    assert claims["pcr2"] == "52" * 48
    assert claims["nonce"] == claims["report_data"] == ("9009" * 8)
    assert claims["user_data"] == b"user".hex()
    assert claims["public_key"] is None


def test_tagged_and_base64_forms(nitro_pki: NitroPki) -> None:
    tagged = nitro_pki.document(tag=True)
    assert run(nitro_pki, tagged).verdict == "accept"
    assert run(nitro_pki, base64.b64encode(tagged) + b"\n").verdict == "accept"


def test_payload_flip(nitro_pki: NitroPki) -> None:
    doc = nitro_pki.document()
    index = doc.index(b"\x50" * 48) + 10  # inside PCR0
    appraisal = run(nitro_pki, flip(doc, index))
    assert [c.name for c in appraisal.failed] == ["cose_signature"]


def test_signature_flip(nitro_pki: NitroPki) -> None:
    appraisal = run(nitro_pki, flip(nitro_pki.document(), -5))
    assert [c.name for c in appraisal.failed] == ["cose_signature"]


@pytest.mark.parametrize("which", ["leaf", "mid", "root"])
def test_certificate_flip(nitro_pki: NitroPki, which: str) -> None:
    # Re-sign the document so only the flipped certificate is wrong.
    leaf, root, mid = der(nitro_pki.leaf), der(nitro_pki.root), der(nitro_pki.mid)
    if which == "leaf":
        leaf = flip(leaf, -3)
    elif which == "mid":
        mid = flip(mid, -3)
    else:
        root = flip(root, -3)
    appraisal = run(nitro_pki, nitro_pki.document(certificate=leaf, cabundle=[root, mid]))
    assert appraisal.verdict == "reject"
    assert not appraisal.check("cert_chain").ok


def test_unpinned_root(nitro_pki: NitroPki) -> None:
    appraisal = run(nitro_pki, nitro_pki.document(), roots={"00" * 32: "x"})
    assert [c.name for c in appraisal.failed] == ["cert_chain"]
    assert "not pinned" in appraisal.check("cert_chain").reason


def test_expired_leaf(nitro_pki: NitroPki) -> None:
    appraisal = run(nitro_pki, nitro_pki.document(), now=NOW + timedelta(hours=3))
    assert [c.name for c in appraisal.failed] == ["cert_chain"]


def test_document_time(nitro_pki: NitroPki) -> None:
    future = nitro_pki.document(timestamp=int((NOW + timedelta(hours=1)).timestamp() * 1000))
    assert [c.name for c in run(nitro_pki, future).failed] == ["document_time"]
    old = nitro_pki.document(timestamp=int((NOW - timedelta(minutes=30)).timestamp() * 1000))
    assert run(nitro_pki, old).verdict == "accept"
    strict = Policy(max_evidence_age=timedelta(minutes=10))
    assert [c.name for c in run(nitro_pki, old, policy=strict).failed] == ["document_time"]


def test_debug(nitro_pki: NitroPki) -> None:
    doc = nitro_pki.document(pcrs={i: bytes(48) for i in range(16)})
    refused = run(nitro_pki, doc)
    assert [c.name for c in refused.failed] == ["debug_disabled"]
    assert refused.claims["debug"] is True
    assert run(nitro_pki, doc, policy=Policy(allow_debug=True)).verdict == "accept"


def test_measurement(nitro_pki: NitroPki) -> None:
    doc = nitro_pki.document()
    assert run(nitro_pki, doc, policy=Policy(expected_measurements=frozenset({b"\x50" * 48}))).verdict == "accept"
    wrong = run(nitro_pki, doc, policy=Policy(expected_measurements=frozenset({b"\x51" * 48})))
    assert [c.name for c in wrong.failed] == ["measurement_matches"]


def test_registers(nitro_pki: NitroPki) -> None:
    doc = nitro_pki.document()
    assert run(nitro_pki, doc, policy=Policy(expected_registers={"pcr1": b"\x51" * 48})).verdict == "accept"
    wrong = run(nitro_pki, doc, policy=Policy(expected_registers={"pcr1": b"\x52" * 48, "pcr20": b""}))
    assert [c.name for c in wrong.failed] == ["registers_match"]


def test_nonce(nitro_pki: NitroPki) -> None:
    doc = nitro_pki.document()
    assert run(nitro_pki, doc, policy=Policy(expected_report_data=b"\x90\x09" * 8)).verdict == "accept"
    replay = run(nitro_pki, doc, policy=Policy(expected_report_data=b"\x90\x09"))
    assert [c.name for c in replay.failed] == ["report_data_binding"]
    absent = run(nitro_pki, nitro_pki.document(nonce=None), policy=Policy(expected_report_data=b"x"))
    assert "no nonce" in absent.check("report_data_binding").reason


# ---- malformed --------------------------------------------------------------------------------


def _sign1(protected: bytes, payload: bytes, sig: bytes = bytes(96)) -> bytes:
    return cbor2.dumps([protected, {}, payload, sig])


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda p: b"\x84\x43\xa1\x01", "not valid CBOR"),
        (lambda p: p.document()[:-10], "not valid CBOR"),
        (lambda p: b"bm90IGNib3I=", "4-element|not valid CBOR"),
        (lambda p: b"abc", "neither COSE_Sign1 CBOR nor base64"),
        (lambda p: p.document() + b"\x00", "trailing bytes"),
        (lambda p: cbor2.dumps([1, 2, 3]), "neither COSE_Sign1 CBOR nor base64|4-element"),
        (lambda p: cbor2.dumps(cbor2.CBORTag(98, [1, 2, 3, 4])), "tag 98"),
        (lambda p: p.document(protected=cbor2.dumps({1: -7})), "ES384"),
        (lambda p: _sign1(cbor2.dumps({1: -35}), cbor2.dumps({"digest": "SHA384"})), "no 'pcrs'"),
        (lambda p: _sign1(cbor2.dumps({1: -35}), cbor2.dumps([1])), "not a CBOR map"),
        (lambda p: _sign1(cbor2.dumps({1: -35}), b"\xff"), "not valid CBOR"),
        (lambda p: _sign1(cbor2.dumps({1: -35}), cbor2.dumps({}), b"\x00" * 95), "96 bytes"),
        (lambda p: p.document(pcrs={0: b"\x00" * 32}), "48-byte"),
        (lambda p: p.document(digest="SHA256"), "not SHA384"),
        (lambda p: p.document(cabundle=[]), "non-empty"),
        (lambda p: p.document(timestamp="now"), "wrong type"),
        (lambda p: p.document(nonce="text"), "bytes or null"),
        (lambda p: p.document(certificate=b"\x30\x03\x02\x01\x01"), "DER X.509"),
    ],
)
def test_malformed(nitro_pki: NitroPki, build, match: str) -> None:
    with pytest.raises(MalformedError, match=match):
        run(nitro_pki, build(nitro_pki))
