"""TEE policies and TDX collateral as admin key events: deployments judged under their
environment's recorded policy; re-judging when the policy changes (service, embedded worker),
rows that audit recomputes; refused events."""

from __future__ import annotations

import json

import pytest

from ledger.errors import MalformedError, NotTrustedError
from ledger.services import chain as chain_service
from ledger.services import audit, reappraisal, registry, setup
from ledger.services.deployment import appraisal_of, tee_state
from tests.deployment import helpers as h
from tests.unit.attestation.factories import SnpPki


def _policy(store, doc: dict) -> int:
    admin = setup.load_admin_key(store.settings)
    result = registry.set_tee_policy(store.sessions, store.log, admin, json.dumps(doc).encode(), now=store.tick())
    return result.receipt["index"]


def _deploy(w, pki: SnpPki, host: str, vmpl: int):
    report, endorsements = h.snp_evidence(pki, w.artifact, host=host, vmpl=vmpl)
    return w.trust.submit(h.deployment_statement(w.artifact, "sev-snp", report, endorsements, host=host), w.deployer)


@pytest.mark.usefixtures("pinned", "tee_trust")
def test_policy_event_decides_vmpl_and_rejudging_follows_it(store, snp_pki: SnpPki) -> None:  # type: ignore[no-untyped-def]
    w = h.world(store)
    refused = _deploy(w, snp_pki, "vm-a", 2)
    assert isinstance(refused, NotTrustedError) and "vmpl_allowed: VMPL 2 is not in [0]" in str(refused)

    index = _policy(store, {"version": 1, "environment": "production", "sev-snp": {"allowed_vmpls": [0, 2]}})
    svsm = _deploy(w, snp_pki, "vm-b", 2).receipt["index"]
    plain = _deploy(w, snp_pki, "vm-c", 0).receipt["index"]
    with store.sessions() as session:
        doc = appraisal_of(session, svsm)
        assert doc["verdict"] == "accept" and doc["policy"]["index"] == index and doc["policy"]["environment"] == "production"
        assert tee_state(session).policy_document("production")[1] == index
        assert tee_state(session).policy_document("staging")[1] is None  # no default recorded: built in

    # the admin narrows production to VMPL 2: re-judging rejects the VMPL 0 deployment
    narrowed = _policy(store, {"version": 1, "environment": "production", "sev-snp": {"allowed_vmpls": [2]}})
    with store.sessions() as session, session.begin():
        assert reappraisal.pending(session)
        rows = {r.index: r for r in reappraisal.reappraise(session)}
    assert rows[plain].verdict == "reject" and rows[plain].previous == "accept" and rows[plain].trust_index == narrowed
    assert rows[svsm].verdict == "accept"
    with store.sessions() as session, session.begin():
        assert not reappraisal.pending(session)
        assert [r.verdict for r in reappraisal.reappraise(session, [plain])] == ["reject"]  # idempotent
        chain = chain_service.chain(session, f"sha256:{w.artifact}")
        assert reappraisal.verify_reappraisals(session) == []
        assert audit.audit(session, store.log).ok
        # a tampered cache row is found by the recomputation, and by the audit
        session.connection().exec_driver_sql("UPDATE tee_reappraisals SET document = REPLACE(document, 'VMPL 0', 'VMPL 9')")
        assert [p[0] for p in reappraisal.verify_reappraisals(session)] == [plain]
        report = audit.audit(session, store.log)
        assert [p.kind for p in report.problems] == ["tee_reappraisal"] and report.first_bad_index is None
        assert f"deployment entry {plain}" in report.problems[0].message
        session.rollback()
    tee = {l["subject"]: l for l in chain["links"] if l["kind"] == "tee-evidence"}
    assert tee[f"sev-snp evidence of host vm-c (deployment entry {plain})"]["verdict"] == "untrusted"
    assert tee[f"sev-snp evidence of host vm-b (deployment entry {svsm})"]["verdict"] == "trusted"


@pytest.mark.usefixtures("pinned", "tee_trust")
def test_default_environment_policy_applies_to_others(store, snp_pki: SnpPki) -> None:  # type: ignore[no-untyped-def]
    w = h.world(store)
    _policy(store, {"version": 1, "sev-snp": {"allowed_vmpls": [1]}})  # environment absent: "default"
    assert not isinstance(_deploy(w, snp_pki, "vm-d", 1), NotTrustedError)
    assert isinstance(_deploy(w, snp_pki, "vm-e", 0), NotTrustedError)


def test_bad_policy_and_collateral_events_refused(store) -> None:  # type: ignore[no-untyped-def]
    admin = setup.load_admin_key(store.settings)
    with pytest.raises(MalformedError, match="allowed_vmpls"):
        registry.set_tee_policy(store.sessions, store.log, admin, b'{"version": 1, "sev-snp": {"allowed_vmpls": [5]}}', now=store.tick())
    with pytest.raises(MalformedError):
        registry.add_tdx_collateral(store.sessions, store.log, admin, [b'{"tcbInfo": {}, "signature": "00"}'], now=store.tick())
    with store.sessions() as session:
        assert tee_state(session).last_index == -1  # nothing was recorded


def test_collateral_event_recorded_and_replaced(store) -> None:  # type: ignore[no-untyped-def]
    from tests.unit.attestation.tcb_factories import TcbPki, levels

    pki = TcbPki()
    admin = setup.load_admin_key(store.settings)
    first = registry.add_tdx_collateral(store.sessions, store.log, admin,
                                        [pki.tcb_info(levels("OutOfDate")), pki.qe_identity(), *pki.chain_files()], now=store.tick())
    second = registry.add_tdx_collateral(store.sessions, store.log, admin, [pki.tcb_info(levels("UpToDate"))], now=store.tick())
    with store.sessions() as session:
        state = tee_state(session)
        collateral = state.tdx_collateral()
    assert state.last_index == second.receipt["index"] > first.receipt["index"]
    assert len(collateral.tcb_infos) == 1 and b'"tcbStatus":"UpToDate"' in collateral.tcb_infos[0]
    assert len(collateral.qe_identities) == 1 and collateral.certificates
