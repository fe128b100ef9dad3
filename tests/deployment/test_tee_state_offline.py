"""The TEE appraisal a chain shows is one function of the log, on the server and offline.

A deployment is appraised under its environment's recorded policy (and the recorded TDX
collateral and TPM roots); once a key event comes after it, the chain shows it re-judged under
the state after the last one. The offline verifier recomputes both from a verdict bundle's
leaves, so its chain is the server's, link for link: before the workers stored the re-judged
rows (the server recomputes them on the spot) and after, now and as of an earlier entry."""

from __future__ import annotations

from typing import Any

import pytest

from ledger.services import chain as chain_service
from ledger.services import reappraisal
from ledger.trust.bundle_verify import verify_verdict_bundle
from tests.deployment import helpers as h
from tests.deployment.test_tee_policy_events import _deploy, _policy
from tests.unit.attestation.factories import SnpPki
from tests.verdict_bundle.helpers import bundle_doc, raw


def _both(store: Any, artifact: str, at: int | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    now = store.tick()
    offline = verify_verdict_bundle(raw(bundle_doc(store, artifact, at=at)), artifact, store.log.vkey, at=at, now=now).chain
    with store.sessions() as session:
        return chain_service.chain(session, artifact, at=at, now=now), offline


def _tee(chain: dict[str, Any]) -> dict[int, str]:
    """The verdict of each TEE-evidence link, by deployment entry."""
    out = {}
    for link in chain["links"]:
        if link["kind"] == "tee-evidence":
            out[int(link["subject"].rsplit("deployment entry ", 1)[1].rstrip(")"))] = link["verdict"]
    return out


@pytest.mark.usefixtures("pinned", "tee_trust")
def test_a_recorded_policy_and_its_rejudging_give_one_verdict_on_both_sides(store: Any, snp_pki: SnpPki) -> None:
    w = h.world(store)
    artifact = f"sha256:{w.artifact}"
    # production accepts VMPL 2 (the built-in policy does not): accepted, and trusted offline too
    _policy(store, {"version": 1, "environment": "production", "sev-snp": {"allowed_vmpls": [0, 2]}})
    svsm = _deploy(w, snp_pki, "vm-b", 2).receipt["index"]
    plain = _deploy(w, snp_pki, "vm-c", 0).receipt["index"]
    server, offline = _both(store, artifact)
    assert server == offline
    assert _tee(offline) == {svsm: "trusted", plain: "trusted"}
    before_narrowing = store.size() - 1

    # narrowed to VMPL 2: the VMPL 0 deployment is re-judged untrusted, before the workers ran
    # (the server judges it on the spot) and after they stored the rows
    _policy(store, {"version": 1, "environment": "production", "sev-snp": {"allowed_vmpls": [2]}})
    with store.sessions() as session:
        assert reappraisal.pending(session)
    server, offline = _both(store, artifact)
    assert server == offline and _tee(offline) == {svsm: "trusted", plain: "untrusted"}
    with store.sessions() as session, session.begin():
        reappraisal.reappraise(session)
    server, offline = _both(store, artifact)
    assert server == offline and _tee(offline) == {svsm: "trusted", plain: "untrusted"}

    # as of an entry before the narrowing: judged under the state then, on both sides
    server, offline = _both(store, artifact, at=before_narrowing)
    assert server == offline and _tee(offline) == {svsm: "trusted", plain: "trusted"}


@pytest.mark.usefixtures("pinned", "tee_trust")
def test_a_revoked_firmware_signer_condemns_the_evidence_on_both_sides(store: Any, snp_pki: SnpPki) -> None:
    w = h.world(store)
    artifact = f"sha256:{w.artifact}"
    deployed = _deploy(w, snp_pki, "vm-r", 0).receipt["index"]
    server, offline = _both(store, artifact)
    assert server == offline and _tee(offline) == {deployed: "trusted"}
    w.trust.revoke(w.fw, compromised_since=0)  # the firmware vendor's key, from the start
    server, offline = _both(store, artifact)
    assert server == offline
    assert _tee(offline) == {deployed: "untrusted"}
    reasons = " ".join(r for link in offline["links"] if link["kind"] == "tee-evidence" for r in link["reasons"])
    assert "firmware_measurement_matches" in reasons
