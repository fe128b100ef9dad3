"""A DSSE bundle whose Rekor entry is ``hashedrekord/0.0.1`` (its digest over the envelope's PAE,
as sigstore-go writes it) goes into the ledger like any keyless bundle: trusted by the identity
grant, audited clean at both levels, the same chain offline; one whose logged digest is over
another envelope changes nothing."""

from __future__ import annotations

import base64
import json
from typing import Any

from ledger.errors import VerificationError
from ledger.services import chain
from tests.sigstore.factory import ARTIFACT_SHA256, World, encode
from tests.sigstore_ingest.conftest import ok


def _bundle(world: World, envelope: dict[str, Any], body: dict[str, Any]) -> bytes:
    return encode(world.bundle(envelope=envelope, body=body, promise=True, proof=True, log_index=3))


def test_it_is_appended_trusted_and_audits_clean(generated: tuple[Any, World]) -> None:
    from ledger.services import audit, shards  # noqa: PLC0415
    from ledger.trust.bundle_verify import verify_verdict_bundle  # noqa: PLC0415
    from tests.verdict_bundle.helpers import bundle_doc, raw  # noqa: PLC0415

    st, world = generated
    envelope = world.envelope()
    (result,) = st.append([_bundle(world, envelope, world.hashedrekord_dsse_body(envelope))], now=st.tick())
    index = ok(result)["index"]
    artifact = f"sha256:{ARTIFACT_SHA256}"
    now = st.tick()
    with st.sessions() as session:
        served = chain.chain(session, artifact, now=now)
        report = audit.audit(session, st.log)
        plan = shards.plan_shards(report.tree_size, 1)
        results = [shards.verify_shard(session, s, vkey=st.log.vkey, origin=st.log.origin) for s in plan]
        combined = shards.combine_shards(session, report.tree_size, results, vkey=st.log.vkey, origin=st.log.origin)
    link = next(link for link in served["links"] if link["index"] == index)
    assert link["verdict"] == "trusted", json.dumps(link)
    assert report.ok, report.to_json()
    assert combined.ok, combined.to_json()
    assert verify_verdict_bundle(raw(bundle_doc(st, artifact)), artifact, st.log.vkey, now=now).chain == served


def test_a_body_for_another_envelope_changes_nothing(generated: tuple[Any, World]) -> None:
    st, world = generated
    envelope = world.envelope()
    other = world.envelope({**json.loads(base64.b64decode(envelope["payload"])), "predicateType": "https://example.com/other"})
    now = st.tick()  # one evaluation time for both views (a chain states when it was judged)
    with st.sessions() as session:
        before = chain.chain(session, f"sha256:{ARTIFACT_SHA256}", now=now)
    (result,) = st.append([_bundle(world, envelope, world.hashedrekord_dsse_body(other))], now=st.tick())
    assert isinstance(result, VerificationError) and "digest does not match the DSSE envelope's PAE" in str(result)
    with st.sessions() as session:
        assert chain.chain(session, f"sha256:{ARTIFACT_SHA256}", now=now) == before
