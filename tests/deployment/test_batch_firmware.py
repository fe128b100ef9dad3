"""A deployment whose only matching firmware record comes earlier in its own batch.

At preparation that record has no index yet, so the deployment's appraisal cannot match it; the
sequencer appraises such a deployment under its lock, once the record is stored before it
(``Prepared.appraise_in_sequence``). Accepted exactly when the record, read from the log, would
be matched; refused (and nothing of it stored) in every other case."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import text

from ledger.errors import LedgerError, NotTrustedError
from ledger.services.bulk import import_envelopes
from ledger.trust.policy import Grant
from ledger.trust.predicates import DEPLOYMENT, FIRMWARE_IMAGE, SLSA_V1
from tests.deployment import helpers as h
from tests.fixtures import envelope_bytes
from tests.provenance import helpers as prov
from tests.provenance.helpers import Trust, envelope
from tests.unit.attestation.factories import SnpPki
from tests.verdict_bundle.test_server_offline_agree import _diff, both, ok

pytestmark = pytest.mark.usefixtures("pinned")


def _ledger(store: Any, snp_pki: SnpPki) -> tuple[Trust, dict[str, Any], str, dict[str, Any]]:
    """A trust policy, a firmware record (not yet submitted), the artifact built on it and a
    deployment of the artifact whose SEV-SNP evidence measures that firmware."""
    trust = Trust(store)
    vendor = trust.add("firmware-vendor", Grant((FIRMWARE_IMAGE,)))
    ci = trust.add("ci", Grant((SLSA_V1,)))
    deployer = trust.add("deployer", Grant((DEPLOYMENT,)))
    fw_s, firmware = h.firmware_statement()
    build_s, artifact = prov.build(h.ARTIFACT_NAME, inputs=[firmware])
    trust.ok(build_s, ci)
    report, endorsements = h.snp_evidence(snp_pki, artifact)
    deployment = envelope(h.deployment_statement(artifact, "sev-snp", report, endorsements), deployer)
    return trust, envelope(fw_s, vendor), artifact, deployment


def _document(store: Any, index: int) -> dict[str, Any]:
    with store.sessions() as session:
        raw = session.execute(text("SELECT document FROM appraisals WHERE entry_idx = :i"), {"i": index}).scalar_one()
    return json.loads(raw)


def test_a_deployment_after_its_only_firmware_in_one_batch_is_accepted_and_matched_to_it(store: Any, snp_pki: SnpPki) -> None:
    _, firmware, artifact, deployment = _ledger(store, snp_pki)
    fw_result, deployed = store.append([firmware, deployment], now=store.tick())
    fw_index, index = ok(fw_result), ok(deployed)
    assert index == fw_index + 1
    document = _document(store, index)
    assert document["verdict"] == "accept" and document["firmware_entry"] == fw_index
    with store.sessions() as session:
        integrated = session.execute(text("SELECT integrated_time FROM entries WHERE idx = :i"), {"i": index}).scalar_one()
        assert document["appraised_at"] == integrated
        edges = session.execute(text("SELECT kind FROM entry_edges WHERE entry_idx = :i"), {"i": index}).scalars().all()
    assert "firmware" in edges
    h.audits_pass(store)
    server, offline = both(store, f"sha256:{artifact}", now=store.tick())  # type: ignore[misc]
    assert server == offline, "\n".join(_diff(server, offline))
    assert server["verdict"] == "trusted", server


def test_a_deployment_before_its_only_firmware_in_one_batch_is_refused(store: Any, snp_pki: SnpPki) -> None:
    _, firmware, _, deployment = _ledger(store, snp_pki)
    size = store.size()
    deployed, fw_result = store.append([deployment, firmware], now=store.tick())
    assert isinstance(deployed, NotTrustedError) and "firmware_measurement_matches" in str(deployed), deployed
    assert ok(fw_result) == size  # the firmware record alone was appended
    assert store.size() == size + 1
    h.audits_pass(store)


def test_an_untrusted_firmware_record_earlier_in_the_batch_does_not_carry_a_deployment(store: Any, snp_pki: SnpPki) -> None:
    trust, _, _, deployment = _ledger(store, snp_pki)
    stranger = trust.add("stranger", Grant((SLSA_V1,)))  # registered, but not for firmware images
    fw_s, _ = h.firmware_statement()
    size = store.size()
    fw_result, deployed = store.append([envelope(fw_s, stranger), deployment], now=store.tick())
    assert isinstance(fw_result, LedgerError)
    assert isinstance(deployed, NotTrustedError) and "firmware_measurement_matches" in str(deployed), deployed
    assert store.size() == size


def test_a_firmware_record_of_another_measurement_does_not_defer_the_refusal(store: Any, snp_pki: SnpPki) -> None:
    trust, _, _, deployment = _ledger(store, snp_pki)
    other_s, _ = h.firmware_statement("acme/bios/9.9.9", snp=bytes(range(48)))
    size = store.size()
    other, deployed = store.append([envelope(other_s, trust.keys["firmware-vendor"]), deployment], now=store.tick())
    assert ok(other) == size
    assert isinstance(deployed, NotTrustedError) and "no firmware-image record" in str(deployed), deployed
    assert store.size() == size + 1


def test_evidence_that_fails_another_check_is_refused_before_the_lock(store: Any, snp_pki: SnpPki) -> None:
    """Only a deployment whose firmware match alone failed waits for the sequencer: evidence
    bound to another host is refused at preparation, whatever the batch holds."""
    trust, firmware, artifact, _ = _ledger(store, snp_pki)
    report, endorsements = h.snp_evidence(snp_pki, artifact, host="another-host")
    wrong = envelope(h.deployment_statement(artifact, "sev-snp", report, endorsements), trust.keys["deployer"])
    size = store.size()
    fw_result, deployed = store.append([firmware, wrong], now=store.tick())
    assert ok(fw_result) == size
    assert isinstance(deployed, NotTrustedError), deployed
    assert "report_data" in str(deployed).lower()  # refused for its binding (every failed check is named)
    assert store.size() == size + 1


def test_import_of_a_firmware_record_and_its_deployment_in_one_batch(store: Any, snp_pki: SnpPki) -> None:
    _, firmware, artifact, deployment = _ledger(store, snp_pki)
    size = store.size()
    summary = import_envelopes(store.sessions, [envelope_bytes(firmware), envelope_bytes(deployment)], store.log, workers=1, clock=lambda: store.tick())
    assert (summary.created, summary.refused) == (2, 0), summary.errors
    assert _document(store, size + 1)["firmware_entry"] == size
    h.audits_pass(store)
    server, offline = both(store, f"sha256:{artifact}", now=store.tick())  # type: ignore[misc]
    assert server == offline, "\n".join(_diff(server, offline))
