"""Re-judging deployments on real Celery workers over real Redis (and PostgreSQL): the trust state
moves (a policy event), reevaluate_chain_verdicts fans out one reappraise_batch per deployment,
the rows land and a recomputation from the log agrees."""

from __future__ import annotations

import json

import pytest
from celery.result import allow_join_result

from ledger.services import reappraisal, registry, setup
from tests.deployment import helpers as h
from tests.unit.attestation.factories import SnpPki
from tests.workers.test_worker_redis import cluster, wait_for  # noqa: F401 - fixtures
from workers.app import make_celery
from workers.dispatch import close


@pytest.mark.redis
def test_rejudging_runs_on_redis_workers(cluster, monkeypatch) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    from ledger.attestation import sev_snp
    from tests.unit.attestation.factories import fingerprint

    st, settings, workers = cluster
    snp_pki = SnpPki()
    monkeypatch.setitem(sev_snp.AMD_ARK_FINGERPRINTS, fingerprint(snp_pki.ark), "Milan")
    w = h.world(st)
    deployed = []
    for n in range(3):
        report, endorsements = h.snp_evidence(snp_pki, w.artifact, host=f"vm-{n}")
        deployed.append(w.trust.ok(h.deployment_statement(w.artifact, "sev-snp", report, endorsements, host=f"vm-{n}"), w.deployer))
    admin = setup.load_admin_key(st.settings)
    policy = registry.set_tee_policy(st.sessions, st.log, admin, json.dumps(
        {"version": 1, "environment": "production", "sev-snp": {"allowed_vmpls": [1]}}).encode(), now=st.tick()).receipt["index"]
    # the worker processes pin only the vendors' ARKs: the test ARK stays pinned in this process only,
    # so the workers refuse the chain — and the recomputation here must agree once it is unpinned too
    monkeypatch.delitem(sev_snp.AMD_ARK_FINGERPRINTS, fingerprint(snp_pki.ark))
    workers.start(concurrency=2)
    app = make_celery(settings)
    try:
        result = app.signature("provledger.reevaluate_chain_verdicts", kwargs={"batch": 1}).apply_async()
        with allow_join_result():  # an embedded worker started earlier in this process marks joins as blocking
            summary = result.get(timeout=120)
    finally:
        close(app)
    assert summary == {"trust_index": policy, "deployments": 3, "batches": 3}

    def done() -> bool:
        with st.sessions() as session:
            return not reappraisal.pending(session)

    wait_for(done, 120, "the re-judged rows", workers)
    with st.sessions() as session:
        rows = session.connection().exec_driver_sql(
            "SELECT entry_idx, trust_index, verdict, document FROM tee_reappraisals ORDER BY entry_idx").fetchall()
        assert [(r[0], r[1], r[2]) for r in rows] == [(i, policy, "reject") for i in deployed]
        failed = {c["name"] for c in json.loads(rows[0][3])["checks"] if not c["ok"]}
        assert {"vmpl_allowed", "vcek_chain"} <= failed
        assert reappraisal.verify_reappraisals(session) == []
    # nothing changed since: a no-op
    app = make_celery(settings)
    try:
        with allow_join_result():
            again = app.signature("provledger.reevaluate_chain_verdicts").apply_async().get(timeout=120)
    finally:
        close(app)
    assert again["skipped"]


def test_rejudging_in_the_embedded_mode(sqlite_store, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """No Redis: the same tasks on the embedded worker thread (in-memory transport, JSON messages);
    the test ARK is pinned in this process, so the policy change alone flips one verdict."""
    from ledger.attestation import sev_snp
    from ledger.services.deployment import appraisal_of, appraisals_of
    from tests.unit.attestation.factories import fingerprint
    from workers.app import is_embedded
    from workers.embedded import EmbeddedWorker

    st = sqlite_store
    snp_pki = SnpPki()
    monkeypatch.setitem(sev_snp.AMD_ARK_FINGERPRINTS, fingerprint(snp_pki.ark), "Milan")
    w = h.world(st)
    admin = setup.load_admin_key(st.settings)
    registry.set_tee_policy(st.sessions, st.log, admin, json.dumps(
        {"version": 1, "environment": "production", "sev-snp": {"allowed_vmpls": [0, 1]}}).encode(), now=st.tick())
    deployed = {}
    for vmpl in (0, 1):
        report, endorsements = h.snp_evidence(snp_pki, w.artifact, host=f"vm-{vmpl}", vmpl=vmpl)
        deployed[vmpl] = w.trust.ok(h.deployment_statement(w.artifact, "sev-snp", report, endorsements, host=f"vm-{vmpl}"), w.deployer)
    narrowed = registry.set_tee_policy(st.sessions, st.log, admin, json.dumps(
        {"version": 1, "environment": "production", "sev-snp": {"allowed_vmpls": [1]}}).encode(), now=st.tick()).receipt["index"]
    app = make_celery(st.settings)
    assert is_embedded(app)
    worker = EmbeddedWorker(app, concurrency=2)
    worker.start()
    try:
        with allow_join_result():  # the embedded worker shares this process
            summary = app.signature("provledger.reevaluate_chain_verdicts", kwargs={"batch": 1}).apply_async().get(timeout=30)
        assert summary == {"trust_index": narrowed, "deployments": 2, "batches": 2}

        def done() -> bool:
            with st.sessions() as session:
                return not reappraisal.pending(session)

        wait_for(done, 30, "the re-judged rows")
    finally:
        worker.stop()
    with st.sessions() as session:
        current = appraisals_of(session, [deployed[0], deployed[1]])
        assert current[deployed[0]]["verdict"] == "reject" and current[deployed[0]]["trust_index"] == narrowed
        assert current[deployed[1]]["verdict"] == "accept"
        assert appraisal_of(session, deployed[0])["verdict"] == "accept"  # the submission's, unchanged
        assert reappraisal.verify_reappraisals(session) == []


@pytest.mark.redis
def test_a_large_batch_is_appraised_on_redis_workers(cluster, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """A batch of MIN_WORKER_BATCH deployments: their TEE appraisals run as appraise_deployments
    tasks on the worker processes (the TPM roots travel in the jobs), the firmware match and the
    verdict here; one with a wrong nonce binding is refused by name, the others are stored."""
    from ledger.services.deployment import MIN_WORKER_BATCH, appraisals_of, register_job_runner
    from tests.provenance.helpers import envelope
    from tests.unit.attestation.factories import TpmPki, pem
    from workers.dispatch import appraisal_runner

    st, settings, workers = cluster
    tpm = TpmPki()
    folder = tmp_path / "tee-trust"
    folder.mkdir()
    (folder / "root.pem").write_bytes(pem(tpm.root))
    monkeypatch.setenv("PROVLEDGER_TEE_TRUST_DIR", str(folder))
    w = h.world(st)
    statements = [
        h.deployment_statement(w.artifact, "tpm", h.tpm_evidence(tpm, w.artifact, host=f"vm-{n}"), host=f"vm-{n}")
        for n in range(MIN_WORKER_BATCH)
    ]
    statements[3] = h.deployment_statement(w.artifact, "tpm", h.tpm_evidence(tpm, w.artifact, host="elsewhere"), host="vm-3")
    workers.start(concurrency=2)
    app = make_celery(settings)
    with st.sessions() as session:
        url = session.get_bind().url.render_as_string(hide_password=False)
    register_job_runner(url, appraisal_runner(app, chunk=4, timeout=60))
    try:
        results = st.append([envelope(s, w.deployer) for s in statements])
    finally:
        register_job_runner(url, None)
        close(app)
    assert "report_data_binding" in str(results[3])
    indexes = [r.receipt["index"] for n, r in enumerate(results) if n != 3]
    assert len(indexes) == MIN_WORKER_BATCH - 1
    with st.sessions() as session:
        docs = appraisals_of(session, indexes)
    assert all(d["verdict"] == "accept" and d["firmware_entry"] == w.firmware_index for d in docs.values())
    log = workers.log_text()
    # the appraisals ran there (the worker logs each task it received and its result)
    assert "provledger.appraise_deployments[" in log and "succeeded" in log
