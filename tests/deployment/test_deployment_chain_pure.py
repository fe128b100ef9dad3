"""Deployments in the pure chain walk: shown for their artifact only, depending on its build, the
matched firmware and their TEE evidence; a rejected or absent appraisal makes them untrusted."""

from __future__ import annotations

from ledger.records.keys import generate_private_key
from ledger.trust.chain import RecordInfo, TeeInfo
from ledger.trust.verdict import chain_verdict as evaluate_chain
from ledger.trust.policy import Grant, KeyEvent, TrustState
from ledger.trust.predicates import DEPLOYMENT, FIRMWARE_IMAGE, SLSA_V1

T0 = 1_750_000_000


def d(i: int) -> str:
    return f"{i:064x}"


def _state() -> tuple[TrustState, str]:
    key = generate_private_key()
    s = TrustState(root_key_id="r" * 64)
    s.apply(KeyEvent("register", key.key_id, "everyone", key.public_key.spki_der, (Grant(("*",)),)), 0, T0)
    return s, key.key_id


def _tee(verdict: str = "accept") -> TeeInfo:
    failed = () if verdict == "accept" else ("debug_disabled: debug guest",)
    return TeeInfo("sev-snp", "host-1", verdict, "AMD SEV-SNP ARK Milan", "f" * 64, failed)


def _records(key: str, tee: TeeInfo | None) -> dict[int, RecordInfo]:
    return {
        1: RecordInfo(1, T0, FIRMWARE_IMAGE, (("sha256", d(1), "fw"),), (key,), ()),
        2: RecordInfo(2, T0, SLSA_V1, (("sha256", d(2), "app"),), (key,), (("input", "sha256", d(1)),)),
        3: RecordInfo(3, T0, DEPLOYMENT, (("sha256", d(2), "app"),), (key,), (("firmware", "sha256", d(1)),), tee),
        # built from the deployed app: its chain must not include the app's deployment
        4: RecordInfo(4, T0, SLSA_V1, (("sha256", d(4), "bundle"),), (key,), (("input", "sha256", d(2)),)),
    }


def test_a_deployment_depends_on_build_firmware_and_evidence() -> None:
    state, key = _state()
    chain = evaluate_chain(("sha256", d(2)), _records(key, _tee()), state, as_of_time=T0)
    assert chain["verdict"] == "trusted"
    deployment = next(l for l in chain["links"] if l["kind"] == "deployment")
    assert deployment["depends_on"] == [1, 2]
    (tee,) = [l for l in chain["links"] if l["kind"] == "tee-evidence"]
    assert tee["index"] is None and tee["signer"] == "AMD SEV-SNP ARK Milan" and tee["key_id"] == "f" * 64
    assert tee["subject"] == "sev-snp evidence of host host-1 (deployment entry 3)"
    # no hardware part: the TEE evidence is the bottom turtle
    assert chain["root"] == tee


def test_deployments_of_an_input_are_not_part_of_what_was_built_from_it() -> None:
    state, key = _state()
    chain = evaluate_chain(("sha256", d(4)), _records(key, _tee("reject")), state, as_of_time=T0)
    assert chain["verdict"] == "trusted"
    assert {l["kind"] for l in chain["links"]} == {"build", "firmware-image"}


def test_a_rejected_or_missing_appraisal_makes_the_deployment_untrusted() -> None:
    state, key = _state()
    for tee, reason in ((_tee("reject"), "debug_disabled: debug guest"), (None, "no appraisal")):
        chain = evaluate_chain(("sha256", d(2)), _records(key, tee), state, as_of_time=T0)
        assert chain["verdict"] == "untrusted"
        assert chain["weakest_link"]["kind"] == "tee-evidence" and reason in chain["weakest_link"]["reasons"][0]
        deployment = next(l for l in chain["links"] if l["kind"] == "deployment")
        assert deployment["verdict"] == "untrusted"
        build = next(l for l in chain["links"] if l["kind"] == "build")
        assert build["verdict"] == "trusted"  # the build does not depend on where it runs


def test_a_deployment_without_a_build_record_points_at_a_missing_link() -> None:
    state, key = _state()
    records = _records(key, _tee())
    del records[2]
    chain = evaluate_chain(("sha256", d(2)), records, state, as_of_time=T0)
    missing = [l for l in chain["links"] if l["kind"] == "missing"]
    assert len(missing) == 1 and "deployed by entry 3" in missing[0]["reasons"][0]
    assert chain["verdict"] == "missing"
