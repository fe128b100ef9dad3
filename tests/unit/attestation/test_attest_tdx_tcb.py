"""TDX TCB status: generated TCB Info / QE Identity at several levels, refused variants, and the
real sample collateral (shared vectors) through the same code with the pinned Intel root."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ledger.attestation import Policy, TdxCollateral, appraise
from ledger.attestation.tdx import INTEL_ROOT_FINGERPRINTS, appraise_tdx
from ledger.attestation.tdx_tcb import LEVEL_STATUSES, STATUSES, parse_signed_json
from ledger.errors import MalformedError
from tests.unit.attestation.factories import NOW
from tests.unit.attestation.tcb_factories import FMSPC, TcbPki, _tdx16, level, levels, SGX_OK, PCESVN


@pytest.fixture(scope="module")
def pki() -> TcbPki:
    return TcbPki()


def run(pki: TcbPki, *, tcb_info: bytes | None = None, qe: bytes | None = None, quote: bytes | None = None,
        policy: Policy = Policy(), now: datetime = NOW, chain: list[bytes] | None = None, endorsements=()):
    files = [tcb_info if tcb_info is not None else pki.tcb_info(levels()), qe if qe is not None else pki.qe_identity()]
    files += pki.chain_files() if chain is None else chain
    collateral = TdxCollateral.from_files(files)
    return appraise_tdx(quote or pki.quote(), endorsements=list(endorsements), now=now, policy=policy,
                        roots=pki.roots, collateral=collateral)


@pytest.mark.parametrize("status", LEVEL_STATUSES)
def test_each_status_reported_and_decided_by_policy(pki: TcbPki, status: str) -> None:
    appraisal = run(pki, tcb_info=pki.tcb_info(levels(status)))
    assert appraisal.claims["tcb_status"] == status
    assert appraisal.claims["fmspc"] == FMSPC.hex()
    assert appraisal.claims["advisory_ids"] == ([] if status == "UpToDate" else ["INTEL-SA-00001"])
    assert appraisal.check("tcb_status").ok is (status == "UpToDate")  # default policy: UpToDate only
    assert appraisal.verdict == ("accept" if status == "UpToDate" else "reject")
    allowing = run(pki, tcb_info=pki.tcb_info(levels(status)), policy=Policy(tdx_allowed_tcb_statuses=frozenset({status})))
    assert allowing.verdict == "accept", allowing.failed
    assert status in allowing.check("tcb_status").reason


def test_lower_tee_tcb_svn_falls_to_an_older_level(pki: TcbPki) -> None:
    appraisal = run(pki, quote=pki.quote(tee_tcb_svn=bytes([3, 0, 2]) + bytes(13)))
    assert appraisal.claims["tcb_status"] == "OutOfDate"
    assert appraisal.claims["advisory_ids"] == ["INTEL-SA-00002"]
    assert not appraisal.check("tcb_status").ok


def test_platform_below_every_level_is_refused_whatever_the_policy(pki: TcbPki) -> None:
    info = pki.tcb_info([level((9,) * 16, PCESVN, _tdx16(3, 0, 4), "UpToDate")])
    appraisal = run(pki, tcb_info=info, policy=Policy(tdx_allowed_tcb_statuses=frozenset(STATUSES)))
    assert not appraisal.check("tcb_level").ok
    assert "below every TCB level" in appraisal.check("tcb_level").reason
    assert appraisal.verdict == "reject"


def test_module_identity_rules(pki: TcbPki) -> None:
    """TEE_TCB_SVN[1] > 0: the module's SVN/version come from tdxModuleIdentities (TDX_01), and
    bytes 0-1 are skipped in the level match."""
    identities = [{
        "id": "TDX_01", "mrsigner": "00" * 48, "attributes": "0000000000000000", "attributesMask": "FFFFFFFFFFFFFFFF",
        "tcbLevels": [{"tcb": {"isvsvn": 6}, "tcbDate": "2024-01-01T00:00:00Z", "tcbStatus": "UpToDate"},
                      {"tcb": {"isvsvn": 2}, "tcbDate": "2023-01-01T00:00:00Z", "tcbStatus": "OutOfDate", "advisoryIDs": ["INTEL-SA-01036"]}],
    }]
    info = pki.tcb_info([level(SGX_OK, PCESVN, _tdx16(99, 99, 4), "UpToDate")], module_identities=identities)
    up = run(pki, tcb_info=info, quote=pki.quote(tee_tcb_svn=bytes([7, 1, 4]) + bytes(13)))
    assert up.claims["tcb_status"] == "UpToDate", up.failed
    old = run(pki, tcb_info=info, quote=pki.quote(tee_tcb_svn=bytes([3, 1, 4]) + bytes(13)))
    assert old.claims["tcb_status"] == "OutOfDate"
    assert old.claims["advisory_ids"] == ["INTEL-SA-01036"]
    missing = run(pki, tcb_info=info, quote=pki.quote(tee_tcb_svn=bytes([7, 2, 4]) + bytes(13)))
    assert "no TDX module identity TDX_02" in missing.check("tcb_level").reason


def test_qe_out_of_date_converges(pki: TcbPki) -> None:
    qe = pki.qe_identity(isvsvn_levels=((5, "UpToDate"), (0, "OutOfDate")))
    appraisal = run(pki, qe=qe, tcb_info=pki.tcb_info(levels("ConfigurationNeeded")))
    assert appraisal.claims["tcb_status"] == "OutOfDateConfigurationNeeded"


def test_bad_signature_refused(pki: TcbPki) -> None:
    raw = pki.tcb_info(levels())
    bad = raw[:-3] + (b"0" if raw[-3:-2] != b"0" else b"1") + raw[-2:]
    appraisal = run(pki, tcb_info=bad)
    assert not appraisal.check("tcb_info").ok
    assert "does not verify" in appraisal.check("tcb_info").reason
    assert appraisal.verdict == "reject"


def test_tampered_json_refused(pki: TcbPki) -> None:
    raw = pki.tcb_info(levels("OutOfDate"))
    tampered = raw.replace(b'"tcbStatus":"OutOfDate"', b'"tcbStatus":"UpToDate"')
    assert tampered != raw
    appraisal = run(pki, tcb_info=tampered, policy=Policy())
    assert not appraisal.check("tcb_info").ok
    assert appraisal.claims["tcb_status"] == "not evaluated"
    assert appraisal.verdict == "reject"


def test_whitespace_change_breaks_signature(pki: TcbPki) -> None:
    raw = pki.tcb_info(levels())
    spaced = raw.replace(b'"version":3', b'"version": 3')
    assert not run(pki, tcb_info=spaced).check("tcb_info").ok


def test_signed_by_another_key_refused(pki: TcbPki) -> None:
    other = TcbPki()
    appraisal = run(pki, tcb_info=other.tcb_info(levels()), chain=pki.chain_files() + other.chain_files())
    assert not appraisal.check("tcb_info").ok
    assert "not a pinned root" in appraisal.check("tcb_info").reason or "no issuer" in appraisal.check("tcb_info").reason


def test_expired_next_update_refused(pki: TcbPki) -> None:
    info = pki.tcb_info(levels(), issued=NOW - timedelta(days=40), next_update=NOW - timedelta(days=10))
    appraisal = run(pki, tcb_info=info)
    assert "expired: nextUpdate" in appraisal.check("tcb_info").reason
    assert appraisal.verdict == "reject"
    # the same collateral judged at a time inside its window passes
    assert run(pki, tcb_info=info, now=NOW - timedelta(days=20)).check("tcb_info").ok


def test_wrong_fmspc_refused(pki: TcbPki) -> None:
    appraisal = run(pki, tcb_info=pki.tcb_info(levels(), fmspc=bytes.fromhex("00906ed50000")))
    assert not appraisal.check("tcb_info").ok
    assert "no TDX TCB Info for the PCK's FMSPC 50806f000000" in appraisal.check("tcb_info").reason


def test_wrong_pce_id_refused(pki: TcbPki) -> None:
    assert "pceId" in run(pki, tcb_info=pki.tcb_info(levels(), pceId="0001")).check("tcb_info").reason


def test_missing_chain_refused(pki: TcbPki) -> None:
    assert not run(pki, chain=[]).check("tcb_info").ok


def test_qe_identity_mismatch(pki: TcbPki) -> None:
    appraisal = run(pki, quote=pki.quote(qe_isvprodid=3))
    assert not appraisal.check("qe_identity_collateral").ok


def test_revoked_signing_cert(pki: TcbPki) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.serialization import Encoding

    crl = (x509.CertificateRevocationListBuilder().issuer_name(pki.root.subject)
           .last_update(NOW - timedelta(days=1)).next_update(NOW + timedelta(days=30))
           .add_revoked_certificate(x509.RevokedCertificateBuilder().serial_number(pki.signing.serial_number)
                                    .revocation_date(NOW - timedelta(days=2)).build())
           .sign(pki.root_key, hashes.SHA256()).public_bytes(Encoding.DER))
    appraisal = run(pki, chain=[*pki.chain_files(), crl])
    assert "revoked" in appraisal.check("tcb_info").reason


def test_no_collateral_keeps_todays_behaviour(pki: TcbPki) -> None:
    appraisal = appraise_tdx(pki.quote(), endorsements=[], now=NOW, policy=Policy(), roots=pki.roots)
    assert appraisal.verdict == "accept"
    assert appraisal.claims["tcb_status"] == "not evaluated"
    required = appraise_tdx(pki.quote(), endorsements=[], now=NOW, policy=Policy(tdx_require_tcb_status=True), roots=pki.roots)
    assert not required.check("tcb_status").ok


@pytest.mark.parametrize("raw", [
    b"", b"{", b"[]", b'{"tcbInfo":{}}', b'{"tcbInfo":{},"signature":"zz"}', b'{"tcbInfo":{},"signature":"00"}',
    b'{"tcbInfo":{},"tcbInfo":{},"signature":"' + b"00" * 64 + b'"}', b'{"tcbInfo":[],"signature":"' + b"00" * 64 + b'"}',
    b'{"tcbInfo":{},"signature":"' + b"00" * 64 + b'"} trailing', b"\xff\xfe", b"{" + b" " * 300_000 + b"}",
])
def test_malformed_collateral(raw: bytes) -> None:
    with pytest.raises(MalformedError):
        parse_signed_json(raw)


def test_truncated_collateral_is_malformed(pki: TcbPki) -> None:
    raw = pki.tcb_info(levels())
    with pytest.raises(MalformedError):
        TdxCollateral.from_files([raw[: len(raw) // 2]])


# ------------------------------------------------------------------------------ real samples


def _samples(vectors: Path) -> Path:
    folder = vectors / "tee" / "samples" / "tdx" / "go-tdx-guest"
    if not folder.is_dir():
        pytest.skip("no TDX samples")
    return folder


@pytest.fixture
def sample_collateral(vectors_dir: Path) -> TdxCollateral:
    d = _samples(vectors_dir)
    return TdxCollateral.from_files([(d / n).read_bytes() for n in (
        "sample_tcbInfo_response", "sample_tcbinfo_response_v5", "sample_qeIdentity_response",
        "tcbInfoIssuerChain.pem", "pckcrl", "rootcrl.der")])


@pytest.mark.vectors
def test_sample_collateral_verifies_and_judges_spr_e4(vectors_dir: Path, sample_collateral: TdxCollateral) -> None:
    d = _samples(vectors_dir)
    at = datetime(2023, 6, 20, tzinfo=UTC)
    appraisal = appraise("tdx", (d / "tdx_prod_quote_SPR_E4.dat").read_bytes(), now=at, collateral=sample_collateral)
    assert appraisal.check("tcb_info").ok, appraisal.check("tcb_info").reason
    assert appraisal.check("qe_identity_collateral").ok
    assert appraisal.check("crl_not_revoked").ok
    # this quote's PCK (SGX components 3,3,2,2,2,1,0,2) is below both levels of the sample TCB Info
    assert not appraisal.check("tcb_level").ok
    assert appraisal.verdict == "reject"
    # without collateral the manifest's expectation holds
    assert appraise("tdx", (d / "tdx_prod_quote_SPR_E4.dat").read_bytes(), now=at).verdict == "accept"


@pytest.mark.vectors
def test_sample_collateral_expired_and_wrong_fmspc(vectors_dir: Path, sample_collateral: TdxCollateral) -> None:
    d = _samples(vectors_dir)
    late = appraise("tdx", (d / "tdx_prod_quote_SPR_E4.dat").read_bytes(), now=datetime(2023, 8, 1, tzinfo=UTC),
                    collateral=sample_collateral)
    assert "expired" in late.check("tcb_info").reason
    cos = appraise("tdx", (d / "cos-113-tdx-quote.dat").read_bytes(), now=datetime(2025, 1, 1, tzinfo=UTC),
                   collateral=sample_collateral)
    assert "no TDX TCB Info for the PCK's FMSPC 00806f050000" in cos.check("tcb_info").reason


@pytest.mark.vectors
def test_sample_v5_collateral_signature_is_intels(vectors_dir: Path, sample_collateral: TdxCollateral) -> None:
    """The v5 TCB Info is signed by the same TCB Signing key, whose certificate in the sample chain
    expired in 2025: at the collateral's own time the chain is refused, naming the expiry."""
    d = _samples(vectors_dir)
    appraisal = appraise("tdx", (d / "quote_v5_sample.dat").read_bytes(), now=datetime(2026, 2, 15, tzinfo=UTC),
                         collateral=sample_collateral)
    assert "expired at 2025-05-21" in appraisal.check("tcb_info").reason
    assert INTEL_ROOT_FINGERPRINTS  # the pinned root, not a test one, judged it


def test_revoked_sgx_level_is_revoked_whatever_the_tdx_components(pki: TcbPki) -> None:
    info = pki.tcb_info([level(SGX_OK, PCESVN, _tdx16(99, 0, 99), "Revoked", ("INTEL-SA-00003",))])
    appraisal = run(pki, tcb_info=info)
    assert appraisal.claims["tcb_status"] == "Revoked"
    assert appraisal.claims["advisory_ids"] == ["INTEL-SA-00003"]
    assert not appraisal.check("tcb_status").ok


# ------------------------------------------------------------------------------ TD 1.5: TEE_TCB_SVN2


def _td15(pki: TcbPki, launch: bytes, now_running: bytes) -> bytes:
    return pki.quote(version=5, body_type=3, tee_tcb_svn=launch, tee_tcb_svn2=now_running)


_OLD_MODULE = bytes([2, 0, 1]) + bytes(13)  # the default levels' OutOfDate level (INTEL-SA-00002)
_NEW_MODULE = bytes([3, 0, 4]) + bytes(13)  # their current level


@pytest.mark.parametrize(("current", "expected"), [
    ("UpToDate", "TDRelaunchAdvised"),
    ("SWHardeningNeeded", "TDRelaunchAdvised"),
    ("ConfigurationNeeded", "TDRelaunchAdvisedConfigurationNeeded"),
    ("ConfigurationAndSWHardeningNeeded", "TDRelaunchAdvisedConfigurationNeeded"),
    ("OutOfDate", "OutOfDate"),  # nothing to gain by relaunching
    ("Revoked", "Revoked"),  # a revoked SGX level is revoked at launch too (whatever the TDX components)
])
def test_a_td_launched_under_an_old_module_since_updated_is_advised_to_relaunch(pki: TcbPki, current: str, expected: str) -> None:
    appraisal = run(pki, tcb_info=pki.tcb_info(levels(current)), quote=_td15(pki, _OLD_MODULE, _NEW_MODULE))
    assert appraisal.claims["tcb_status"] == expected, appraisal.check("tcb_level").reason
    assert appraisal.claims["tee_tcb_svn2"] == _NEW_MODULE.hex()
    # the advisories of both evaluations (a revoked platform never reaches the old level's)
    assert ("INTEL-SA-00002" in appraisal.claims["advisory_ids"]) is (current != "Revoked")
    assert ("INTEL-SA-00001" in appraisal.claims["advisory_ids"]) is (current != "UpToDate")
    reason = appraisal.check("tcb_level").reason
    assert "TEE_TCB_SVN2" in reason and expected in reason
    assert appraisal.verdict == "reject"  # the default policy allows UpToDate only
    allowing = run(pki, tcb_info=pki.tcb_info(levels(current)), quote=_td15(pki, _OLD_MODULE, _NEW_MODULE),
                   policy=Policy(tdx_allowed_tcb_statuses=frozenset({expected})))
    assert allowing.verdict == "accept", allowing.failed


def test_td15_statuses_when_nothing_was_updated_are_the_launch_ones(pki: TcbPki) -> None:
    for launch, status in ((_NEW_MODULE, "UpToDate"), (_OLD_MODULE, "OutOfDate")):
        appraisal = run(pki, quote=_td15(pki, launch, launch))
        assert appraisal.claims["tcb_status"] == status
    # a TD launched up to date on a module since rolled back is judged by its launch: the
    # relaunch rule only ever helps a TD whose launch status is out of date
    rolled_back = run(pki, quote=_td15(pki, _NEW_MODULE, _OLD_MODULE))
    assert rolled_back.claims["tcb_status"] == "UpToDate"


def test_td15_current_module_below_every_level_is_not_supported(pki: TcbPki) -> None:
    appraisal = run(pki, quote=_td15(pki, _NEW_MODULE, bytes([1, 0, 0]) + bytes(13)),
                    policy=Policy(tdx_allowed_tcb_statuses=frozenset(STATUSES)))
    assert not appraisal.check("tcb_level").ok
    assert "TEE_TCB_SVN2" in appraisal.check("tcb_level").reason
    assert appraisal.verdict == "reject"


def test_a_td10_body_is_judged_by_tee_tcb_svn_alone(pki: TcbPki) -> None:
    appraisal = run(pki, quote=pki.quote(version=5, body_type=2, tee_tcb_svn=_OLD_MODULE))
    assert appraisal.claims["tcb_status"] == "OutOfDate" and "tee_tcb_svn2" not in appraisal.claims


def test_a_tcb_info_level_cannot_claim_a_relaunch_status(pki: TcbPki) -> None:
    with pytest.raises(MalformedError, match="tcbStatus"):
        run(pki, tcb_info=pki.tcb_info(levels("TDRelaunchAdvised")))


@pytest.mark.parametrize("identities", [5, "TDX_01", [{"id": "TDX_01", "mrsigner": "00" * 48, "attributes": "00" * 8,
                                                       "attributesMask": "FF" * 8, "tcbLevels": [{"tcb": "x"}]}],
                                        [{"id": "TDX_01", "mrsigner": "00" * 48, "attributes": "00" * 8,
                                          "attributesMask": "FF" * 8, "tcbLevels": 7}]])
def test_malformed_module_identities_are_malformed_collateral(pki: TcbPki, identities: object) -> None:
    info = pki.tcb_info([level(SGX_OK, PCESVN, _tdx16(99, 99, 4), "UpToDate")], module_identities=identities)  # type: ignore[arg-type]
    with pytest.raises(MalformedError, match="tdxModuleIdentities|tcbLevels|isvsvn"):
        run(pki, tcb_info=info, quote=pki.quote(tee_tcb_svn=bytes([7, 1, 4]) + bytes(13)))
