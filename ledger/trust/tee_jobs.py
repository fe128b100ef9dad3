"""TEE appraisal as a JSON job: what a Celery worker runs for a large batch of deployments.

The cryptographic part of a deployment's appraisal (``ledger.trust.deployment.appraise_deployment``)
needs no database: the evidence, its endorsements, the policy document of its environment, the
TDX collateral and the TPM roots in force, and the submission time. :func:`appraisal_job` packs
them as JSON, :func:`run_appraisal_job` runs one anywhere (a worker process or this one) and
:func:`appraisal_from_result` turns the JSON result back into an ``Appraisal``. The firmware
match, which reads the ledger, stays with the caller. The same function runs in both places, so a
batch appraised on workers is judged exactly as it would be here.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from ledger.attestation.appraisal import Appraisal, Check
from ledger.attestation.policy_document import PolicyDocument, parse_policy_document
from ledger.attestation.tdx_tcb import TdxCollateral
from ledger.errors import LedgerError, MalformedError
from ledger.trust.deployment import Deployment, VendorRoot, appraise_deployment

__all__ = ["appraisal_from_result", "appraisal_job", "run_appraisal_job"]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(values: Sequence[str]) -> tuple[bytes, ...]:
    return tuple(base64.b64decode(v, validate=True) for v in values)


def appraisal_job(
    record: Deployment,
    *,
    now: int,
    tpm_roots: Sequence[bytes],
    policy_document: PolicyDocument,
    collateral: TdxCollateral | None,
) -> dict[str, Any]:
    """Everything the appraisal of ``record`` depends on, as JSON."""
    return {
        "deployment": {
            "artifact": record.artifact,
            "host_id": record.host_id,
            "environment": record.environment,
            "evidence_type": record.evidence_type,
            "evidence": _b64(record.evidence),
            "endorsements": [_b64(e) for e in record.endorsements],
            "nonce": record.nonce,
        },
        "now": now,
        "tpm_roots": [_b64(r) for r in tpm_roots],
        "policy": dict(policy_document.document),
        "collateral": None if collateral is None else {
            "tcb_infos": [_b64(b) for b in collateral.tcb_infos],
            "qe_identities": [_b64(b) for b in collateral.qe_identities],
            "certificates": [_b64(b) for b in collateral.certificates],
            "crls": [_b64(b) for b in collateral.crls],
        },
    }


def run_appraisal_job(job: Mapping[str, Any]) -> dict[str, Any]:
    """Run one job: ``{"appraisal": {"kind","checks","claims"}, "root": {...}|None}`` or
    ``{"error": message}`` for evidence that does not parse (never raises for bad evidence)."""
    d = job["deployment"]
    record = Deployment(
        artifact=d["artifact"], host_id=d["host_id"], environment=d["environment"], evidence_type=d["evidence_type"],
        evidence=base64.b64decode(d["evidence"], validate=True), endorsements=_unb64(d["endorsements"]), nonce=d["nonce"],
    )
    c = job.get("collateral")
    collateral = None if c is None else TdxCollateral(
        _unb64(c["tcb_infos"]), _unb64(c["qe_identities"]), _unb64(c["certificates"]), _unb64(c["crls"])
    )
    try:
        appraisal, root = appraise_deployment(
            record,
            now=datetime.fromtimestamp(int(job["now"]), UTC),
            tpm_roots=_unb64(job["tpm_roots"]),
            policy_document=parse_policy_document(job["policy"]),
            collateral=collateral,
        )
    except LedgerError as exc:
        return {"error": f"predicate.evidence.data is not valid {record.evidence_type} evidence: {exc.diagnostics()}"}
    return {
        "appraisal": {"kind": appraisal.kind, "checks": [c.to_json() for c in appraisal.checks], "claims": appraisal.claims},
        "root": None if root is None else {"name": root.name, "fingerprint": root.fingerprint},
    }


def appraisal_from_result(result: Mapping[str, Any]) -> tuple[Appraisal, VendorRoot | None]:
    """The ``Appraisal`` of a job's result (MalformedError for evidence that did not parse)."""
    if "error" in result:
        raise MalformedError(str(result["error"]))
    doc = result["appraisal"]
    appraisal = Appraisal(
        kind=doc["kind"],
        checks=[Check(c["name"], bool(c["ok"]), c["reason"]) for c in doc["checks"]],
        claims=dict(doc["claims"]),
    )
    root = result.get("root")
    return appraisal, None if root is None else VendorRoot(root["name"], root["fingerprint"])
