"""TEE policies and TDX collateral as admin key events: deployments judged under their
environment's recorded policy; re-judging when the policy changes (service, embedded worker),
rows that audit recomputes; refused events."""

from __future__ import annotations

import json

import pytest

from ledger.attestation.policy_document import parse_policy_document
from ledger.errors import MalformedError, NotTrustedError
from ledger.services.append import Appended
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


def _submit_raw(store, predicate: dict, subject: dict):  # type: ignore[no-untyped-def]
    """A hand-made key event (prev filled in), signed by the admin, through the append path."""
    from ledger.records.dsse import sign_envelope
    from ledger.records.statement import IN_TOTO_PAYLOAD_TYPE, STATEMENT_V1
    from ledger.services.registry import next_prev
    from ledger.trust.predicates import KEY_EVENT

    with store.sessions() as session:
        prev = next_prev(session)
    predicate = {**predicate, "prev": {"index": prev[0], "leaf_hash": prev[1]}}
    statement = {"_type": STATEMENT_V1, "subject": [subject], "predicateType": KEY_EVENT, "predicate": predicate}
    admin = setup.load_admin_key(store.settings)
    (result,) = store.append([sign_envelope(json.dumps(statement).encode(), IN_TOTO_PAYLOAD_TYPE, [admin])])
    return result


def test_hand_made_tee_events_refused_with_reasons(store) -> None:  # type: ignore[no-untyped-def]
    import hashlib

    import rfc8785

    doc = {"version": 1, "environment": "prod", "sev-snp": {"allowed_vmpls": [1]}}
    good_subject = {"name": "tee-policy:prod", "digest": {"sha256": hashlib.sha256(rfc8785.dumps(doc)).hexdigest()}}
    wrong_digest = {"name": "tee-policy:prod", "digest": {"sha256": "00" * 32}}
    wrong_name = {**good_subject, "name": "tee-policy:staging"}
    cases = [
        ({"action": "tee-policy", "appraisal_policy": doc}, wrong_digest, "exactly one subject"),
        ({"action": "tee-policy", "appraisal_policy": doc}, wrong_name, "exactly one subject"),
        ({"action": "tee-policy"}, good_subject, "appraisal_policy"),
        ({"action": "tee-policy", "appraisal_policy": {**doc, "sev-snp": {"allowed_vmpls": [8]}}}, good_subject, "allowed_vmpls"),
        ({"action": "threshold", "predicate_type": "x", "threshold": 1, "appraisal_policy": doc},
         {"name": "threshold:x", "digest": {"sha256": hashlib.sha256(b"x").hexdigest()}}, "belong to"),
        ({"action": "tdx-collateral", "collateral": {"tcb_infos": ["bm90IGpzb24="]}},
         {"name": "tdx-collateral", "digest": {"sha256": "00" * 32}}, "collateral"),
        ({"action": "tdx-collateral", "collateral": {"crls": ["!!!!"]}},
         {"name": "tdx-collateral", "digest": {"sha256": "00" * 32}}, "collateral"),
    ]
    for predicate, subject, needle in cases:
        result = _submit_raw(store, predicate, subject)
        assert isinstance(result, MalformedError), (predicate, result)
        assert needle in str(result), (needle, str(result))
    assert isinstance(_submit_raw(store, {"action": "tee-policy", "appraisal_policy": doc}, good_subject), Appended)
    with store.sessions() as session:
        assert tee_state(session).policy_document("prod")[0].policy_for("sev-snp").allowed_vmpl == frozenset({1})


def test_replayed_tee_event_refused(store) -> None:  # type: ignore[no-untyped-def]
    from ledger.errors import ConflictError
    from ledger.records.dsse import sign_envelope
    from ledger.services.registry import key_event_statement
    from ledger.services.registry import next_prev
    from ledger.trust.policy import KeyEvent

    admin = setup.load_admin_key(store.settings)
    doc = parse_policy_document(b'{"version": 1, "environment": "prod"}')
    with store.sessions() as session:
        prev = next_prev(session)
    event = KeyEvent(action="tee-policy", appraisal_policy=doc, issued_at=1, prev=prev)
    from ledger.records.statement import IN_TOTO_PAYLOAD_TYPE

    envelope = sign_envelope(key_event_statement(event), IN_TOTO_PAYLOAD_TYPE, [admin])
    (first,) = store.append([envelope])
    assert isinstance(first, Appended)
    other = sign_envelope(key_event_statement(KeyEvent(action="tee-policy", appraisal_policy=doc, issued_at=2, prev=prev)),
                          IN_TOTO_PAYLOAD_TYPE, [admin])
    (forked,) = store.append([other])  # same prev: a fork of the key-event chain
    assert isinstance(forked, ConflictError)


@pytest.mark.usefixtures("pinned", "tee_trust")
def test_revocation_of_the_firmware_signer_rejudges_the_deployment(store, snp_pki: SnpPki) -> None:  # type: ignore[no-untyped-def]
    w = h.world(store)
    deployed = _deploy(w, snp_pki, "vm-r", 0).receipt["index"]
    with store.sessions() as session, session.begin():
        assert not reappraisal.pending(session)  # no key event since: nothing to re-judge
    revoked = w.trust.revoke(w.fw, compromised_since=0).receipt["index"]  # the firmware vendor's key, from the start
    with store.sessions() as session, session.begin():
        (row,) = reappraisal.reappraise(session)
        assert (row.index, row.trust_index, row.verdict, row.previous) == (deployed, revoked, "reject", "accept")
        doc = json.loads(session.connection().exec_driver_sql(
            "SELECT document FROM tee_reappraisals WHERE entry_idx = " + ("?" if store.backend == "sqlite" else "%s"),
            (deployed,)).scalar_one())
    failed = {c["name"]: c["reason"] for c in doc["checks"] if not c["ok"]}
    assert list(failed) == ["firmware_measurement_matches"] and "not trusted" in failed["firmware_measurement_matches"]
