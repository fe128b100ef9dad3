"""Minimal ledgers on which the server's chain and the offline verifier's once differed
(found by ``test_server_offline_agree``): each says what differed and what the product does now,
and holds the two chains equal."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import text

from ledger.errors import NotTrustedError
from ledger.trust.policy import Grant
from ledger.trust.predicates import DEPLOYMENT, FIRMWARE_IMAGE, SLSA_V1
from tests.deployment import helpers as h
from tests.provenance import helpers as prov
from tests.provenance.helpers import Trust
from tests.unit.attestation.factories import SnpPki
from tests.verdict_bundle.test_server_offline_agree import _diff, both, build_statement, ok


# ------------------------------------------------------------------------------ once divergent
#
# Each case below is a minimal ledger on which the server's chain and the offline verifier's
# chain once differed; the comment says what differed and what the product does now.


def _compare(store: Any, artifact: str, *, at: int | None = None, now: int | None = None) -> None:
    pair = both(store, artifact, at=at, now=store.tick() if now is None else now)
    assert pair is not None
    server, offline = pair
    assert server == offline, "server != offline:\n" + "\n".join(_diff(server, offline))


# ONCE DIVERGENT 1 — a re-judged deployment's firmware match considered firmware records the
# bundle did not hold. Now a verdict bundle holds, beside the chain's records, every firmware
# record before each deployment in it whose measurement matches its evidence
# (``ledger.services.deployment.firmware_candidate_indexes``).
#
# The server re-judges a deployment (``ledger.services.reappraisal._judge``) against EVERY
# firmware-image record before it in the ledger (``ledger.services.deployment._candidates``); the
# offline verifier (``ledger.trust.offline._appraise``) only against the firmware records in the
# bundle, which holds only the records reachable from the artifact (build inputs and the
# deployment's stored ``firmware`` edge). When the record matched at submission stops being
# trusted and another record with the same measurement, that nothing depends on, is still
# trusted, the server re-matches the deployment to that other record and the offline verifier
# cannot.
#
# Operations: firmware vendor V and mirror vendor M registered; M signs firmware record F0
# (same SEV-SNP measurement, nothing depends on it); V signs firmware F1; a build of F1; an
# SEV-SNP deployment of the build (matched to F1, the latest trusted record); V revoked as
# compromised since 0 (re-affirming V with a review-by before the deployment does the same).
# Observed (both backends), chain of the build as of now:
#   tee-evidence link: server verdict "trusted", reasons [], why {root, fingerprint, pinned}
#                      offline verdict "untrusted", reasons ["firmware_measurement_matches: ...
#                      matches firmware-image entry <F1> ..., but that record is not trusted:
#                      untrusted: key ... (firmware-vendor) was revoked ..."], why {}
#   deployment link:   reasons: offline adds "depends on untrusted entry sev-snp evidence of
#                      host ... (deployment entry <D>)" (its verdict is "untrusted" on both sides:
#                      it also rests on the build, whose input F1 is untrusted)
#   root (the tee-evidence link), roots.tee[0].verdict: "trusted" vs "untrusted".
#   The chain verdict is "untrusted" on both sides here. In the re-affirmation variant (V
#   re-affirmed with a review-by before the deployment instead of revoked) the chain verdict
#   differs too: server "stale" vs offline "untrusted".
@pytest.mark.usefixtures("pinned")
def test_a_rejudged_deployment_matches_a_firmware_record_off_the_chain_on_both_sides(store: Any, snp_pki: SnpPki) -> None:
    trust = Trust(store)
    vendor = trust.add("firmware-vendor", Grant((FIRMWARE_IMAGE,)))
    mirror = trust.add("mirror-vendor", Grant((FIRMWARE_IMAGE,)))
    ci = trust.add("ci", Grant((SLSA_V1,)))
    deployer = trust.add("deployer", Grant((DEPLOYMENT,)))
    trust.ok(h.firmware_statement("mirror/bios/2.14.1")[0], mirror)  # same measurement; nothing depends on it
    fw_s, firmware = h.firmware_statement()
    trust.ok(fw_s, vendor)
    build_s, artifact = prov.build(h.ARTIFACT_NAME, inputs=[firmware])
    trust.ok(build_s, ci)
    report, endorsements = h.snp_evidence(snp_pki, artifact)
    ok(trust.submit(h.deployment_statement(artifact, "sev-snp", report, endorsements), deployer))
    trust.revoke(vendor, compromised_since=0)
    _compare(store, f"sha256:{artifact}")


# ONCE DIVERGENT 2 — a digest that is the subject of a key event was a link on the server only.
# Now the offline verifier judges key events as records too (``recompute_chain``).
#
# Key-event entries have subjects too (a key id, ``sha256(predicate-type glob)`` for a threshold,
# the digest of a TEE policy, ...) and the server's walk (``entry_subjects``) finds them: the
# server's chain shows the key event as the record holding that digest up, judged "trusted"
# (signed by the administrator). The offline verifier drops key events from the records it
# judges (``ledger.trust.offline.recompute_chain``: ``if f.predicate_type == KEY_EVENT:
# continue``), so for it no record has that subject: "missing".
#
# Operations: register key K for principal "ci" (entry 0: a key event whose subject digest is
# K's key id); K signs a build that lists sha256:<K's key id> as a resolved dependency.
# Observed (both backends):
#   chain of the build:  verdict server "trusted" vs offline "missing"; links[1] (the input):
#                        server {kind "key-event", index 0, signer "administrator", verdict
#                        "trusted"} vs offline {kind "missing", index None, verdict "missing"};
#                        links[0].depends_on: server [0] vs offline [].
#   chain of sha256:<K's key id> itself: server "trusted" (a key-event link) vs offline
#                        "missing" (a verdict bundle can be made: the key event is reachable).
@pytest.mark.parametrize("which", ["build-depending-on-it", "the-digest-itself"])
def test_a_key_event_subject_digest_is_the_same_link_on_both_sides(store: Any, which: str) -> None:
    trust = Trust(store)
    ci = trust.add("ci", Grant((SLSA_V1,)))
    build_s, app = build_statement("apps/a", [ci.key_id])  # an input digest that a key event names
    trust.ok(build_s, ci)
    _compare(store, f"sha256:{app}" if which == "build-depending-on-it" else f"sha256:{ci.key_id}")


# ONCE DIVERGENT 3 — a deployment appraised on a clock behind the log's. Now the sequencer
# appraises a deployment again at its integrated time when its appraisal was made at another
# (``ledger.services.append._appraise_at``): here the firmware's grant is past its review-by
# then, so the deployment is refused, and nothing diverges. Submitted while the grant is still
# fresh at the integrated time, it is accepted and both sides agree.
#
# The server stores the submission appraisal made at the submitter's ``now``
# (``complete_appraisals(now=...)``: certificates and the firmware record's signer judged as of
# then), but the entry is integrated at ``max(now, last entry's time)`` (``integrate``: "two
# processes with different clocks cannot make time go backwards"). The offline verifier
# re-appraises the deployment at its integrated time. When the firmware signer's review-by lies
# between the two, the server's stored appraisal accepted a firmware match the offline one finds
# stale.
#
# Operations: firmware vendor V with a grant reviewed by R; V signs firmware F; the ledger's
# clock moves to R + 30 (a build of F appended then); an SEV-SNP deployment submitted with
# ``now = R - 5`` (integrated at R + 30).
# Observed (both backends), chain of the build as of now: verdict server "stale" (F's link) vs
# offline "untrusted"; tee-evidence link and deployment link server "trusted" vs offline "untrusted"
# ("firmware_measurement_matches: ... matches firmware-image entry <F> ..., but that record is
# not trusted: stale: ... past its review-by date ..."); weakest_link: server the firmware-image
# link (stale) vs offline the tee-evidence link.
@pytest.mark.usefixtures("pinned")
def test_a_deployment_submitted_on_a_clock_behind_the_log_is_appraised_at_its_integrated_time(store: Any, snp_pki: SnpPki) -> None:
    trust = Trust(store)
    review_by = store.clock + 20
    vendor = trust.add("firmware-vendor", Grant((FIRMWARE_IMAGE,), review_by=review_by))
    ci = trust.add("ci", Grant((SLSA_V1,)))
    deployer = trust.add("deployer", Grant((DEPLOYMENT,)))
    fw_s, firmware = h.firmware_statement()
    trust.ok(fw_s, vendor)
    build_s, artifact = prov.build(h.ARTIFACT_NAME, inputs=[firmware])
    store.clock = review_by + 30
    trust.ok(build_s, ci)
    report, endorsements = h.snp_evidence(snp_pki, artifact)
    size = store.size()
    refused = trust.submit(h.deployment_statement(artifact, "sev-snp", report, endorsements), deployer, now=review_by - 5)
    assert isinstance(refused, NotTrustedError) and "past its review-by date" in str(refused), refused
    assert store.size() == size  # nothing appended
    _compare(store, f"sha256:{artifact}")
    # fresh again: accepted, appraised at its integrated time (ahead of the submitter's clock)
    trust.reaffirm(vendor, store.clock + 10_000)
    appended = ok(trust.submit(h.deployment_statement(artifact, "sev-snp", report, endorsements), deployer, now=review_by - 5))
    with store.sessions() as session:
        entry = session.execute(text("SELECT integrated_time FROM entries WHERE idx = :i"), {"i": appended}).scalar_one()
        document = json.loads(session.execute(text("SELECT document FROM appraisals WHERE entry_idx = :i"),
                                              {"i": appended}).scalar_one())
    assert entry > review_by - 5 and document["appraised_at"] == entry
    _compare(store, f"sha256:{artifact}")


# ONCE DIVERGENT 4 — a deployment sequenced in the same batch as, and after, a firmware record it
# matches. Its appraisal was made before that record was stored, so it matched an older record
# (or none); the offline verifier, reading the log, matches the latest trusted record before it.
# Now the sequencer appraises such a deployment again under the lock with the batch's firmware
# records among the candidates (``append._appraise_at``): the stored firmware edge and appraisal
# are what the log says.
@pytest.mark.usefixtures("pinned")
def test_a_deployment_after_its_firmware_in_one_batch_matches_it_on_both_sides(store: Any, snp_pki: SnpPki) -> None:
    from tests.provenance.helpers import envelope  # noqa: PLC0415

    trust = Trust(store)
    old_vendor = trust.add("old-vendor", Grant((FIRMWARE_IMAGE,)))
    vendor = trust.add("firmware-vendor", Grant((FIRMWARE_IMAGE,)))
    ci = trust.add("ci", Grant((SLSA_V1,)))
    deployer = trust.add("deployer", Grant((DEPLOYMENT,)))
    old = trust.ok(h.firmware_statement("acme/bios/2.14.0")[0], old_vendor)  # same measurement, older
    fw_s, firmware = h.firmware_statement()
    build_s, artifact = prov.build(h.ARTIFACT_NAME, inputs=[firmware])
    trust.ok(build_s, ci)
    report, endorsements = h.snp_evidence(snp_pki, artifact)
    deployment = envelope(h.deployment_statement(artifact, "sev-snp", report, endorsements), deployer)
    fw_result, deployed = store.append([envelope(fw_s, vendor), deployment], now=store.tick())
    fw_index, index = ok(fw_result), ok(deployed)
    assert old < fw_index < index
    with store.sessions() as session:
        document = json.loads(session.execute(text("SELECT document FROM appraisals WHERE entry_idx = :i"), {"i": index}).scalar_one())
    assert document["firmware_entry"] == fw_index  # the latest trusted match, from its own batch
    _compare(store, f"sha256:{artifact}")
