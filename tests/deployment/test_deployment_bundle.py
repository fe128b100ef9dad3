"""Deployments in verdict bundles: the offline verifier re-appraises the TEE evidence from the
deployment's leaf (as the ledger did at submission) and finds the firmware it matched."""

from __future__ import annotations

import json

import pytest

from ledger.services import chain as chain_service
from ledger.trust.bundle import Expectations
from ledger.trust.bundle_verify import verify_verdict_bundle
from tests.deployment import helpers as h
from tests.unit.attestation.factories import SnpPki, TpmPki
from tests.verdict_bundle.helpers import bundle_doc, raw


@pytest.mark.usefixtures("pinned", "tee_trust")
def test_a_deployment_verifies_offline_and_meets_require_deployment(store, snp_pki: SnpPki) -> None:  # type: ignore[no-untyped-def]
    w = h.world(store)
    report, endorsements = h.snp_evidence(snp_pki, w.artifact)
    index = w.trust.ok(h.deployment_statement(w.artifact, "sev-snp", report, endorsements), w.deployer)
    artifact = f"sha256:{w.artifact}"
    doc = bundle_doc(store, artifact)
    assert {index, w.firmware_index, w.build_index} <= {e["index"] for e in doc["entries"]}
    result = verify_verdict_bundle(raw(doc), artifact, store.log.vkey, expectations=Expectations(deployment=True))
    assert result.ok and result.verdict == "trusted", result.chain["weakest_link"]
    links = {(l["kind"], l["index"]): l for l in result.chain["links"]}
    assert ("deployment", index) in links and links[("deployment", index)]["verdict"] == "trusted"
    tee = [l for l in result.chain["links"] if l["kind"] == "tee-evidence"]
    assert tee and tee[0]["signer"].startswith("AMD SEV-SNP ARK Milan")
    # the same verdict as the server's chain, which reads its stored appraisal
    with store.sessions() as session:
        server = chain_service.chain(session, artifact, now=result.as_of_time)
    assert server["verdict"] == result.verdict
    assert {(l["kind"], l["index"], l["verdict"]) for l in server["links"]} == {
        (l["kind"], l["index"], l["verdict"]) for l in result.chain["links"]
    }


@pytest.mark.usefixtures("pinned", "tee_trust")
def test_evidence_for_another_firmware_is_not_a_trusted_deployment_offline(store, snp_pki: SnpPki) -> None:  # type: ignore[no-untyped-def]
    """A bundle whose firmware record was swapped for another cannot re-derive the match."""
    w = h.world(store)
    report, endorsements = h.snp_evidence(snp_pki, w.artifact)
    w.trust.ok(h.deployment_statement(w.artifact, "sev-snp", report, endorsements), w.deployer)
    artifact = f"sha256:{w.artifact}"
    doc = bundle_doc(store, artifact)
    dropped = json.loads(json.dumps(doc))
    dropped["entries"] = [e for e in dropped["entries"] if e["index"] != w.firmware_index]
    result = verify_verdict_bundle(raw(dropped), artifact, store.log.vkey, expectations=Expectations(deployment=True))
    assert not result.ok and result.verdict != "trusted"


@pytest.mark.usefixtures("pinned", "tee_trust")
def test_a_tpm_root_in_the_key_history_counts_offline_until_revoked(store, tpm_pki: TpmPki) -> None:  # type: ignore[no-untyped-def]
    """Only the key history says which TPM roots count, for the server and offline alike."""
    from ledger.services import registry  # noqa: PLC0415

    w = h.world(store)  # imports the trust folder's TPM roots into the key history
    index = w.trust.ok(h.deployment_statement(w.artifact, "tpm", h.tpm_evidence(tpm_pki, w.artifact)), w.deployer)
    artifact = f"sha256:{w.artifact}"
    result = verify_verdict_bundle(raw(bundle_doc(store, artifact)), artifact, store.log.vkey,
                                   expectations=Expectations(deployment=True))
    assert result.ok, result.chain["weakest_link"]
    with store.sessions() as session:
        assert chain_service.chain(session, artifact, now=result.as_of_time) == result.chain
    (tee,) = [l for l in result.chain["links"] if l["kind"] == "tee-evidence"]
    assert tee["why"].get("registered_index") is not None  # the root the evidence chains to is key history
    registry.revoke_key(store.sessions, store.log, w.trust.admin, tee["key_id"],
                        now=store.tick(), compromised_since=store.clock - 100)
    revoked = verify_verdict_bundle(raw(bundle_doc(store, artifact)), artifact, store.log.vkey,
                                    expectations=Expectations(deployment=True))
    assert not revoked.ok and any(l["index"] == index and l["verdict"] == "untrusted" for l in revoked.chain["links"])
