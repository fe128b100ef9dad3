"""Issue 12, point 8: non-vendor TEE roots are key history (SQLite and PostgreSQL).

A TPM root registered by a key event counts (the test world imports the trust folder's roots:
the folder is an import path only); revoking it turns its deployments untrusted (the chain
re-judges the stored appraisal against the trust state) and new evidence chaining to it is
refused even while the certificate is still in the folder; a root not in the key history counts
for nothing.
"""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from ledger.errors import ConflictError, NotTrustedError
from ledger.services import chain as chain_service
from ledger.services import registry
from ledger.services.audit import audit
from ledger.services.trust import signer_listing
from tests.deployment import helpers as h
from tests.unit.attestation.factories import TpmPki


@pytest.mark.usefixtures("tee_trust")
def test_revoking_a_registered_tpm_root_condemns_its_deployments(store, tpm_pki: TpmPki) -> None:  # type: ignore[no-untyped-def]
    w = h.world(store)
    der = tpm_pki.root.public_bytes(Encoding.DER)
    fingerprint = hashlib.sha256(der).hexdigest()
    with pytest.raises(ConflictError, match="already registered"):  # the world imported the folder
        registry.add_tee_root(store.sessions, store.log, w.trust.admin, "test TPM CA", der, now=store.tick())
    index = w.trust.ok(h.deployment_statement(w.artifact, "tpm", h.tpm_evidence(tpm_pki, w.artifact)), w.deployer)
    with store.sessions() as session:
        chain = chain_service.chain(session, f"sha256:{w.artifact}")
        listed = {k["key_id"]: k for k in signer_listing(session, now=store.clock)}
    (tee,) = [l for l in chain["links"] if l["kind"] == "tee-evidence"]
    fingerprint = tee["key_id"]  # the root the evidence chained to (the folder holds two)
    assert listed[fingerprint]["algorithm"] == "tee-root:tpm" and listed[fingerprint]["status"] == "active"
    assert tee["verdict"] == "trusted" and tee["why"]["registered_index"] >= 0
    assert chain["verdict"] == "trusted" and {"name": tee["signer"], "fingerprint": fingerprint, "verdict": "trusted"} in chain["roots"]["tee"]

    registry.revoke_key(store.sessions, store.log, w.trust.admin, fingerprint, now=store.tick(), compromised_since=store.clock - 100)
    with store.sessions() as session:
        chain = chain_service.chain(session, f"sha256:{w.artifact}")
        assert audit(session, store.log).ok
    (tee,) = [l for l in chain["links"] if l["kind"] == "tee-evidence"]
    assert tee["verdict"] == "untrusted" and "was revoked" in tee["reasons"][0]
    deployment = next(l for l in chain["links"] if l["index"] == index)
    assert deployment["verdict"] == "untrusted" and chain["verdict"] == "untrusted"
    # the folder still holds the certificates, but the key history revoked them: refused
    # (the test hierarchies share their keys, so the evidence chains to either root)
    other = hashlib.sha256(der).hexdigest()
    if other != fingerprint:
        registry.revoke_key(store.sessions, store.log, w.trust.admin, other, now=store.tick())
    result = w.deploy(h.deployment_statement(w.artifact, "tpm", h.tpm_evidence(tpm_pki, w.artifact, host="vm-9"), host="vm-9"))
    assert isinstance(result, NotTrustedError) and "ak_chain" in str(result)


@pytest.mark.usefixtures("tee_trust")
@pytest.mark.parametrize("edit", [
    "UPDATE appraisals SET root_fingerprint = '{zeros}' WHERE entry_idx = {i}",
    "UPDATE appraisals SET firmware_idx = NULL WHERE entry_idx = {i}",
    "DELETE FROM appraisals WHERE entry_idx = {i}",
])
def test_audit_checks_the_appraisals_against_their_entries(store, tpm_pki: TpmPki, edit: str) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import text  # noqa: PLC0415

    w = h.world(store)
    index = w.trust.ok(h.deployment_statement(w.artifact, "tpm", h.tpm_evidence(tpm_pki, w.artifact)), w.deployer)
    with store.sessions() as session:
        assert audit(session, store.log).ok
    with store.tamper() as conn:
        conn.execute(text(edit.format(i=index, zeros="0" * 64)))
    with store.sessions() as session:
        report = audit(session, store.log)
    assert not report.ok and report.first_bad_index == index, report.problems


@pytest.mark.usefixtures("tee_trust")
def test_a_tee_root_is_reviewed_like_a_key(sqlite_store, tpm_pki: TpmPki) -> None:  # type: ignore[no-untyped-def]
    store = sqlite_store
    w = h.world(store)
    w.trust.ok(h.deployment_statement(w.artifact, "tpm", h.tpm_evidence(tpm_pki, w.artifact)), w.deployer)
    with store.sessions() as session:
        chain = chain_service.chain(session, f"sha256:{w.artifact}")
    fingerprint = next(l for l in chain["links"] if l["kind"] == "tee-evidence")["key_id"]
    registry.reaffirm_key(store.sessions, store.log, w.trust.admin, fingerprint, review_by=store.clock + 50, now=store.tick())
    late = store.clock + 1000
    with store.sessions() as session:
        chain = chain_service.chain(session, f"sha256:{w.artifact}", now=late)
        assert {k["key_id"]: k for k in signer_listing(session, now=late)}[fingerprint]["stale"] is True
    (tee,) = [l for l in chain["links"] if l["kind"] == "tee-evidence"]
    assert tee["verdict"] == "stale" and "review-by" in tee["reasons"][0] and chain["verdict"] == "stale"
    registry.reaffirm_key(store.sessions, store.log, w.trust.admin, fingerprint, review_by=late + 1000, now=store.tick())
    with store.sessions() as session:
        chain = chain_service.chain(session, f"sha256:{w.artifact}", now=late)
    assert chain["verdict"] == "trusted"



@pytest.mark.usefixtures("tee_trust")
def test_a_tpm_root_outside_the_key_history_counts_for_nothing(sqlite_store, tpm_pki: TpmPki, tee_trust) -> None:  # type: ignore[no-untyped-def]
    from tests.unit.attestation.factories import pem  # noqa: PLC0415

    other = TpmPki()
    (tee_trust / "later.pem").write_bytes(pem(other.root))  # in the folder, never imported
    w = h.world(sqlite_store)
    (tee_trust / "later2.pem").write_bytes(pem(TpmPki().root))
    stranger = TpmPki()
    (tee_trust / "stranger.pem").write_bytes(pem(stranger.root))
    result = w.deploy(h.deployment_statement(w.artifact, "tpm", h.tpm_evidence(stranger, w.artifact)))
    assert isinstance(result, NotTrustedError) and "ak_chain" in str(result)
    del other
