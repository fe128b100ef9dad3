"""Deployments through the real append path (SQLite and PostgreSQL): accepted with valid, bound
evidence and a matching trusted firmware record, shown in the chain; refused (403, the failing
check named, nothing stored) for a debug guest, a wrong measurement, replayed evidence, an
untrusted root or an untrusted firmware record; 400 for malformed evidence."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sqlalchemy import text

from ledger.errors import MalformedError, NotTrustedError
from ledger.services import chain as chain_service
from ledger.services.append import Prepared, integrate, prepare_envelopes
from ledger.services.deployment import appraisal_of, load_tpm_roots, trust_dir
from ledger.services.trust import load_keys
from tests.deployment import helpers as h
from tests.provenance.helpers import envelope
from tests.unit.attestation.factories import SnpPki, TpmPki, flip, pem

SNP_CHECKS = {
    "vcek_chain", "report_signature", "vcek_tcb_matches_report", "vcek_hwid_matches_report", "debug_disabled",
    "migration_agent_disabled", "vmpl_allowed", "report_data_binding", "firmware_measurement_matches",
}
TPM_CHECKS = {
    "ak_attributes", "ak_certificate_matches", "ak_chain", "quote_signature", "pcr_digest", "report_data_binding",
    "firmware_measurement_matches",
}


def _refused(result: object, error: type, *checks: str) -> str:
    assert isinstance(result, error), f"expected {error.__name__}, got {result!r}"
    message = str(result)
    for check in checks:
        assert f"{check}: " in message, message
    return message


@pytest.mark.usefixtures("pinned", "tee_trust")
def test_accepted_deployments_are_stored_and_shown_in_the_chain(store, snp_pki: SnpPki, tpm_pki: TpmPki) -> None:  # type: ignore[no-untyped-def]
    w = h.world(store)
    report, endorsements = h.snp_evidence(snp_pki, w.artifact)
    snp_index = w.trust.ok(h.deployment_statement(w.artifact, "sev-snp", report, endorsements), w.deployer)
    tpm_index = w.trust.ok(h.deployment_statement(w.artifact, "tpm", h.tpm_evidence(tpm_pki, w.artifact, host="vm-2"), host="vm-2"),
                           w.deployer)
    with store.sessions() as session:
        snp_doc = appraisal_of(session, snp_index)
        tpm_doc = appraisal_of(session, tpm_index)
        assert appraisal_of(session, w.build_index) is None
        chain = chain_service.chain(session, f"sha256:{w.artifact}")

    # the stored appraisal lists every check, each passed, with the claims and what it matched
    assert snp_doc is not None and tpm_doc is not None
    assert {c["name"] for c in snp_doc["checks"]} == SNP_CHECKS
    assert {c["name"] for c in tpm_doc["checks"]} == TPM_CHECKS
    for doc in (snp_doc, tpm_doc):
        assert doc["verdict"] == "accept" and all(c["ok"] and c["reason"] for c in doc["checks"])
        assert doc["firmware_entry"] == w.firmware_index and doc["artifact"] == f"sha256:{w.artifact}"
    assert snp_doc["claims"]["measurement"] == h.SNP_MEASUREMENT.hex() and snp_doc["claims"]["debug"] is False
    assert snp_doc["root"]["name"].startswith("AMD SEV-SNP ARK Milan")
    assert "Test TPM Root" in tpm_doc["root"]["name"]

    # the chain: deployment → build (→ firmware) and deployment → firmware → board → chip, and
    # deployment → TEE evidence named by its vendor root; all trusted, the chip is the root
    links = {(l["kind"], l["index"]): l for l in chain["links"]}
    assert chain["verdict"] == "trusted", chain
    assert all(l["verdict"] == "trusted" for l in chain["links"])
    for index in (snp_index, tpm_index):
        assert set(links[("deployment", index)]["depends_on"]) == {w.build_index, w.firmware_index}
    tee = [l for l in chain["links"] if l["kind"] == "tee-evidence"]
    assert {l["subject"] for l in tee} == {
        f"sev-snp evidence of host {h.HOST} (deployment entry {snp_index})",
        f"tpm evidence of host vm-2 (deployment entry {tpm_index})",
    }
    assert {l["key_id"] for l in tee} == {snp_doc["root"]["fingerprint"], tpm_doc["root"]["fingerprint"]}
    assert chain["root"]["kind"] == "hardware-part" and chain["root"]["subject"] == f"sha256:{w.chip}"
    assert ("firmware-image", w.firmware_index) in links and ("hardware-part", None) not in links


@pytest.mark.usefixtures("pinned", "tee_trust")
def test_refusals_name_the_failing_check_and_store_nothing(store, snp_pki: SnpPki, tpm_pki: TpmPki) -> None:  # type: ignore[no-untyped-def]
    w = h.world(store)
    size = store.size()

    def snp(**kwargs: object) -> bytes:
        report, endorsements = h.snp_evidence(snp_pki, w.artifact, **kwargs)  # type: ignore[arg-type]
        return h.deployment_statement(w.artifact, "sev-snp", report, endorsements)

    # a debug guest (POLICY bit 19)
    message = _refused(w.deploy(snp(policy=0x30000 | 1 << 19)), NotTrustedError, "debug_disabled")
    assert message.startswith("deployment refused: debug_disabled: POLICY.DEBUG")
    # a migration agent (bit 18)
    _refused(w.deploy(snp(policy=0x30000 | 1 << 18)), NotTrustedError, "migration_agent_disabled")
    # a measurement no firmware record has
    _refused(w.deploy(snp(measurement=b"\x77" * 48)), NotTrustedError, "firmware_measurement_matches")
    # evidence bound to another artifact, another host, another nonce: replayed here
    other = h.prov.digest("payments/api/1.9.0")
    report, endorsements = h.snp_evidence(snp_pki, other)
    _refused(w.deploy(h.deployment_statement(w.artifact, "sev-snp", report, endorsements)), NotTrustedError, "report_data_binding")
    report, endorsements = h.snp_evidence(snp_pki, w.artifact, host="host-99")
    _refused(w.deploy(h.deployment_statement(w.artifact, "sev-snp", report, endorsements)), NotTrustedError, "report_data_binding")
    report, endorsements = h.snp_evidence(snp_pki, w.artifact, nonce="aa" * 16)
    _refused(w.deploy(h.deployment_statement(w.artifact, "sev-snp", report, endorsements)), NotTrustedError, "report_data_binding")
    # a one-byte flip in the signed report
    report, endorsements = h.snp_evidence(snp_pki, w.artifact)
    _refused(w.deploy(h.deployment_statement(w.artifact, "sev-snp", flip(report, 0x100), endorsements)),
             NotTrustedError, "report_signature")
    # TPM: a wrong PCR, a replayed quote
    bad_pcrs = {**h.TPM_PCRS, 7: b"\x00" * 32}
    _refused(w.deploy(h.deployment_statement(w.artifact, "tpm", h.tpm_evidence(tpm_pki, w.artifact, pcrs=bad_pcrs))),
             NotTrustedError, "firmware_measurement_matches")
    _refused(w.deploy(h.deployment_statement(w.artifact, "tpm", h.tpm_evidence(tpm_pki, w.artifact, host="x"))),
             NotTrustedError, "report_data_binding")
    assert store.size() == size
    with store.sessions() as session:
        assert session.execute(text("SELECT count(*) FROM appraisals")).scalar_one() == 0


@pytest.mark.usefixtures("tee_trust")
def test_evidence_signed_by_an_untrusted_root_is_refused(sqlite_store, tpm_pki: TpmPki, tee_trust: Path) -> None:  # type: ignore[no-untyped-def]
    w = h.world(sqlite_store)
    # a well-formed SNP report from a CA that is not pinned (the test ARK is not, here)
    rogue = SnpPki()
    report, endorsements = h.snp_evidence(rogue, w.artifact)
    message = _refused(w.deploy(h.deployment_statement(w.artifact, "sev-snp", report, endorsements)), NotTrustedError,
                       "vcek_chain")
    assert "not a pinned root" in message
    # a TPM quote whose AK chains to a CA the key history revoked (issue 12: the folder is only an
    # import path; the key history decides which roots count)
    import hashlib  # noqa: PLC0415

    from cryptography.hazmat.primitives.serialization import Encoding  # noqa: PLC0415

    from ledger.services import registry  # noqa: PLC0415

    fingerprint = hashlib.sha256(tpm_pki.root.public_bytes(Encoding.DER)).hexdigest()
    registry.revoke_key(sqlite_store.sessions, sqlite_store.log, w.trust.admin, fingerprint, now=sqlite_store.tick())
    _refused(w.deploy(h.deployment_statement(w.artifact, "tpm", h.tpm_evidence(tpm_pki, w.artifact))), NotTrustedError,
             "ak_chain")
    # the evidence cannot bring its own root: the root among its endorsements changes nothing
    quote = h.tpm_evidence(tpm_pki, w.artifact)
    _refused(w.deploy(h.deployment_statement(w.artifact, "tpm", quote, [pem(tpm_pki.root)])), NotTrustedError, "ak_chain")


@pytest.mark.usefixtures("pinned", "tee_trust")
def test_a_firmware_record_that_is_no_longer_trusted_does_not_match(sqlite_store, snp_pki: SnpPki) -> None:  # type: ignore[no-untyped-def]
    w = h.world(sqlite_store)
    w.trust.revoke(w.fw, compromised_since=0)
    report, endorsements = h.snp_evidence(snp_pki, w.artifact)
    message = _refused(w.deploy(h.deployment_statement(w.artifact, "sev-snp", report, endorsements)), NotTrustedError,
                       "firmware_measurement_matches")
    assert f"firmware-image entry {w.firmware_index}" in message and "not trusted" in message and "revoked" in message


@pytest.mark.usefixtures("pinned", "tee_trust")
def test_malformed_deployments_are_400(sqlite_store, snp_pki: SnpPki) -> None:  # type: ignore[no-untyped-def]
    w = h.world(sqlite_store)
    size = sqlite_store.size()  # the world, and its TEE roots imported into the key history
    report, endorsements = h.snp_evidence(snp_pki, w.artifact)
    cases = [
        (h.deployment_statement(w.artifact, "sev-snp", report[:-1], endorsements), "predicate.evidence.data is not valid sev-snp evidence"),
        (h.deployment_statement(w.artifact, "sev-snp", report, [b"garbage"]), "predicate.evidence.data is not valid sev-snp evidence"),
        (h.deployment_statement(w.artifact, "tpm", b"\x0a\x03abc"), "predicate.evidence.data is not valid tpm evidence"),
        (h.deployment_statement(w.artifact, "sev-snp", report, endorsements, nonce="0f"), "predicate.nonce"),
        (h.deployment_statement(w.artifact, "sev-snp", report, endorsements, host_id=""), "predicate.host_id"),
        (h.deployment_statement(h.prov.digest("other"), "sev-snp", report, endorsements).replace(
            h.prov.digest("other").encode(), w.artifact.encode(), 1), "predicate.artifact.sha256"),
    ]
    for stmt, field in cases:
        result = w.deploy(stmt)
        assert isinstance(result, MalformedError), (field, result)
        assert field in str(result), str(result)
    assert sqlite_store.size() == size


@pytest.mark.usefixtures("pinned")
def test_integration_refuses_a_deployment_that_skipped_its_appraisal(sqlite_store, snp_pki: SnpPki) -> None:  # type: ignore[no-untyped-def]
    """Fail closed: a submission path that prepares without ``complete_appraisals`` cannot append."""
    w = h.world(sqlite_store)
    size = sqlite_store.size()
    report, endorsements = h.snp_evidence(snp_pki, w.artifact)
    raw = envelope(h.deployment_statement(w.artifact, "sev-snp", report, endorsements), w.deployer)
    with sqlite_store.sessions() as session:
        (prepared,) = prepare_envelopes([raw], load_keys(session), now=sqlite_store.tick())
    assert isinstance(prepared, Prepared) and prepared.appraisal is None
    with sqlite_store.sessions() as session, pytest.raises(NotTrustedError, match="without its TEE appraisal"):
        with session.begin():
            integrate(session, [prepared], sqlite_store.log, now=sqlite_store.tick())
    assert sqlite_store.size() == size


@pytest.mark.usefixtures("pinned")
def test_appraisals_are_append_only(sqlite_store, snp_pki: SnpPki) -> None:  # type: ignore[no-untyped-def]
    w = h.world(sqlite_store)
    report, endorsements = h.snp_evidence(snp_pki, w.artifact)
    index = w.trust.ok(h.deployment_statement(w.artifact, "sev-snp", report, endorsements), w.deployer)
    for statement in ("UPDATE appraisals SET verdict = 'reject'", "DELETE FROM appraisals"):
        with pytest.raises(Exception, match="append-only"), sqlite_store.engine.begin() as conn:
            conn.execute(text(statement))
    with sqlite_store.sessions() as session:
        assert appraisal_of(session, index)["verdict"] == "accept"  # type: ignore[index]


def test_the_trust_folder(tmp_path: Path, tpm_pki: TpmPki) -> None:
    assert trust_dir({"PROVLEDGER_HOME": str(tmp_path)}) == tmp_path / "tee-trust"
    assert trust_dir({"PROVLEDGER_TEE_TRUST_DIR": str(tmp_path / "x"), "PROVLEDGER_HOME": "/y"}) == tmp_path / "x"
    assert load_tpm_roots(tmp_path / "absent") == ()
    folder = tmp_path / "trust"
    folder.mkdir()
    (folder / "a.pem").write_bytes(pem(tpm_pki.root, tpm_pki.mid))
    (folder / "notes.txt").write_text("ignored")
    assert len(load_tpm_roots(folder)) == 2
    (folder / "b.crt").write_bytes(b"not a certificate")
    from ledger.errors import ConfigurationError  # noqa: PLC0415

    with pytest.raises(ConfigurationError, match="b.crt"):
        load_tpm_roots(folder)
    assert trust_dir({}).name == "tee-trust"


@pytest.mark.usefixtures("pinned")
def test_audit_re_runs_each_submission_appraisal(store, snp_pki: SnpPki) -> None:  # type: ignore[no-untyped-def]
    """The appraisal row is a cache: audit re-runs the appraisal from the deployment's leaf bytes
    and names the entry whose stored outcome differs, even when row and document agree."""
    from ledger.services import audit  # noqa: PLC0415
    from ledger.services.reappraisal import verify_appraisals  # noqa: PLC0415

    w = h.world(store)
    report, endorsements = h.snp_evidence(snp_pki, w.artifact)
    index = w.trust.ok(h.deployment_statement(w.artifact, "sev-snp", report, endorsements), w.deployer)
    with store.sessions() as session:
        assert verify_appraisals(session) == []
        assert audit.audit(session, store.log).ok
    with store.tamper() as conn:  # one named check flipped to a pass it never had, consistently
        document = conn.execute(text("SELECT document FROM appraisals WHERE entry_idx = :i"), {"i": index}).scalar_one()
        doc = json.loads(document)
        doc["checks"][0]["ok"] = not doc["checks"][0]["ok"]
        conn.execute(text("UPDATE appraisals SET document = :d WHERE entry_idx = :i"), {"d": json.dumps(doc), "i": index})
    with store.sessions() as session:
        assert [entry for entry, _ in verify_appraisals(session)] == [index]
        result = audit.audit(session, store.log)
    assert not result.ok and result.first_bad_index == index
    # the signature-level audits (shards, then the combiner) re-run it too
    from ledger.services import shards  # noqa: PLC0415

    with store.sessions() as session:
        log = store.log
        results = [shards.verify_shard(session, s, vkey=log.vkey, origin=log.origin) for s in shards.plan_shards(result.tree_size, 1)]
        combined = shards.combine_shards(session, result.tree_size, results, vkey=log.vkey, origin=log.origin)
    assert not combined.ok and combined.first_bad_index == index
