"""An appraisal job is JSON, and running it gives exactly the in-process appraisal (so a batch
judged on workers is judged as it would be here); evidence that does not parse is an error result."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from ledger.attestation.policy_document import parse_policy_document
from ledger.errors import MalformedError
from ledger.trust.deployment import Deployment, appraise_deployment
from ledger.trust.tee_jobs import appraisal_from_result, appraisal_job, run_appraisal_job
from tests.deployment import helpers as h
from tests.unit.attestation.factories import NOW, SnpPki

import pytest


def _record(pki: SnpPki, vmpl: int = 0, evidence: bytes | None = None) -> Deployment:
    artifact = "ab" * 32
    report, endorsements = h.snp_evidence(pki, artifact, vmpl=vmpl)
    return Deployment(artifact, h.HOST, "production", "sev-snp", evidence or report, tuple(endorsements), h.NONCE)


@pytest.mark.usefixtures("pinned")
@pytest.mark.parametrize("vmpl", [0, 2])
def test_job_equals_in_process(snp_pki: SnpPki, vmpl: int) -> None:
    document = parse_policy_document(b'{"version": 1, "sev-snp": {"allowed_vmpls": [2]}}')
    record = _record(snp_pki, vmpl)
    now = int(NOW.timestamp())
    job = json.loads(json.dumps(appraisal_job(record, now=now, tpm_roots=(), policy_document=document, collateral=None)))
    appraisal, root = appraisal_from_result(json.loads(json.dumps(run_appraisal_job(job))))
    direct, direct_root = appraise_deployment(record, now=datetime.fromtimestamp(now, UTC), policy_document=document)
    assert appraisal.to_json() == direct.to_json() and root == direct_root
    assert appraisal.verdict == ("accept" if vmpl == 2 else "reject")


def test_malformed_evidence_is_an_error_result(snp_pki: SnpPki) -> None:
    record = _record(snp_pki, evidence=b"\x00" * 10)
    job = appraisal_job(record, now=int(NOW.timestamp()), tpm_roots=(), policy_document=parse_policy_document(b'{"version": 1}'), collateral=None)
    result = run_appraisal_job(job)
    assert "not valid sev-snp evidence" in result["error"]
    with pytest.raises(MalformedError, match="not valid sev-snp evidence"):
        appraisal_from_result(result)
