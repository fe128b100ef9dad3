"""A keyless bundle whose Fulcio certificate certifies an ECDSA P-384 key (older Sigstore
clients made such keys; sigstore-conformance's 2023 a.txt bundle is one)
goes into the ledger: recorded with that key, trusted by the identity grant, re-verified by the
audit at both levels and by the offline receipt check."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from ledger.records.leaf import decode_leaf
from ledger.services import audit, chain, shards
from ledger.verify import verify_receipt
from tests.sigstore.factory import ARTIFACT_SHA256, World, encode
from tests.sigstore_ingest.conftest import ok


@pytest.fixture
def p384_world(generated: tuple[Any, World]) -> tuple[Any, World]:
    store, world = generated
    world.signer_key = ec.generate_private_key(ec.SECP384R1())
    world.leaf = world.issue(world.signer_key)
    return store, world


def test_a_p384_keyless_bundle_is_recorded_trusted_and_audited(p384_world: tuple[Any, World]) -> None:
    st, world = p384_world
    # (SET only: sigstore-python's cross-check of a proven entry needs a CT log, which the generated root lacks)
    (result,) = st.append([encode(world.bundle(kind="dsse", promise=True, proof=False))], now=st.tick())
    receipt = ok(result)
    index = receipt["index"]
    with st.sessions() as session:
        from ledger.db import store as dbstore  # noqa: PLC0415

        leaf = decode_leaf(bytes(dbstore.get_entry(session, index).data))
        doc = chain.chain(session, f"sha256:{ARTIFACT_SHA256}")
        report = audit.audit(session, st.log)
        plan = shards.plan_shards(report.tree_size, 1)
        results = [shards.verify_shard(session, s, vkey=st.log.vkey, origin=st.log.origin) for s in plan]
        combined = shards.combine_shards(session, report.tree_size, results, vkey=st.log.vkey, origin=st.log.origin)
    (signer,) = leaf.signers
    assert signer.algorithm == "ecdsa-p384"
    assert next(link for link in doc["links"] if link["index"] == index)["verdict"] == "trusted"
    assert report.ok and combined.ok, (report.to_json(), combined.to_json())
    verify_receipt(receipt, st.log.vkey)
