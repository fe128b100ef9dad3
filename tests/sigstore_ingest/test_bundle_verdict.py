"""Sigstore-bundle entries (GitHub attestations, managed-key signatures) in verdict bundles:
the offline verifier re-checks their signatures and recomputes the verdict from their leaves."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from ledger.trust.bundle_verify import verify_verdict_bundle
from ledger.trust.fold import leaf_facts
from tests.sigstore_ingest.conftest import BEACON_REPO, BEACON_SAN, GITHUB, HAPPY_DSSE, Policy, ok
from tests.verdict_bundle.helpers import bundle_doc, raw

MANAGED = "sigstore-bundles/conformance/managed-key-happy-path"


def test_bundle_entries_verify_in_a_verdict_bundle(bundle_store: Any, provenance: Path) -> None:
    policy = Policy(bundle_store)
    policy.identity("beacon", BEACON_SAN, GITHUB, BEACON_REPO)
    policy.key("release", (provenance / MANAGED / "key.pub").read_bytes())
    bodies = [(provenance / HAPPY_DSSE).read_bytes(), (provenance / MANAGED / "bundle.sigstore.json").read_bytes()]
    receipts = [ok(r) for r in bundle_store.append(bodies, now=bundle_store.tick())]
    for receipt in receipts:
        facts = leaf_facts(receipt["index"], base64.b64decode(receipt["entry"]))
        alg, digest, _ = facts.subjects[0]
        assert alg == "sha256"
        artifact = f"sha256:{digest}"
        doc = bundle_doc(bundle_store, artifact)
        result = verify_verdict_bundle(raw(doc), artifact, bundle_store.log.vkey)
        assert result.verdict == "trusted", result.chain
        assert receipt["index"] in {e["index"] for e in doc["entries"]}
        # both vectors sign the same artifact: one record holds the link up, the other is beside it
        held = {link["index"] for link in result.chain["links"]}
        beside = {str(a) for link in result.chain["links"] for a in link.get("set_aside", ())}
        assert receipt["index"] in held or any(str(receipt["index"]) in b for b in beside), result.chain["links"]
        # a forged signature inside the logged bundle no longer matches the leaf hash: caught
        forged = json.loads(json.dumps(doc))
        for item in forged["entries"]:
            if item["index"] == receipt["index"]:
                leaf = json.loads(base64.b64decode(item["entry"]))
                item["entry"] = base64.b64encode(json.dumps(leaf).replace("a", "b", 1).encode()).decode()
        try:
            verify_verdict_bundle(raw(forged), artifact, bundle_store.log.vkey)
        except Exception as exc:  # noqa: BLE001 - any refusal; it must not verify
            assert type(exc).__name__ in ("VerificationError", "MalformedError", "SignatureError")
        else:
            raise AssertionError("a forged bundle entry verified")


def test_a_keyless_entry_alone_gets_the_servers_verdict_offline(bundle_store: Any, provenance: Path) -> None:
    """A keyless leaf records the certificate's key and identity, not a registered key: the
    offline verifier resolves its signers to the identities the certificate matched (as the
    append did) and judges it as the server's chain does, link for link. Before the identity is
    registered, or once it is revoked as compromised, it is untrusted on both sides alike."""
    from ledger.services import chain as chain_service  # noqa: PLC0415
    from ledger.services import registry  # noqa: PLC0415

    policy = Policy(bundle_store)
    # an identity of the same issuer that the certificate does not match, registered first
    policy.identity("other-caller", BEACON_SAN, GITHUB, "https://github.com/acme/widget")
    beacon = policy.identity("beacon", BEACON_SAN, GITHUB, BEACON_REPO)
    (receipt,) = [ok(r) for r in bundle_store.append([(provenance / HAPPY_DSSE).read_bytes()], now=bundle_store.tick())]
    facts = leaf_facts(receipt["index"], base64.b64decode(receipt["entry"]))
    artifact = f"sha256:{facts.subjects[0][1]}"

    def both() -> tuple[dict[str, Any], dict[str, Any]]:
        now = bundle_store.tick()
        result = verify_verdict_bundle(raw(bundle_doc(bundle_store, artifact)), artifact, bundle_store.log.vkey, now=now)
        with bundle_store.sessions() as session:
            return chain_service.chain(session, artifact, now=now), result.chain

    server, offline = both()
    assert server == offline
    (link,) = [link for link in offline["links"] if link["index"] == receipt["index"]]
    assert link["verdict"] == "trusted" and link["signer"] == "beacon" and link["key_id"] == beacon, link
    registry.revoke_key(bundle_store.sessions, bundle_store.log, policy.admin, beacon, now=bundle_store.tick(),
                        compromised_since=facts.integrated_time)
    server, offline = both()
    assert server == offline
    (link,) = [link for link in offline["links"] if link["index"] == receipt["index"]]
    assert link["verdict"] == "untrusted" and "revoked" in " ".join(link["reasons"]), link
