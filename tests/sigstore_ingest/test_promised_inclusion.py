"""A v0.1 bundle whose Rekor entry has only an inclusion promise goes into the ledger; the leaf
records that inclusion was promised, not proven, and the chain of trust says so in its reasons."""

from __future__ import annotations

from typing import Any

from ledger.errors import SignatureError, VerificationError
from ledger.records.leaf import decode_leaf
from ledger.services import chain
from ledger.trust.fold import PROMISED_INCLUSION
from tests.sigstore.factory import ARTIFACT_SHA256, World, encode
from tests.sigstore_ingest.conftest import ok


def _leaf(st: Any, index: int) -> Any:
    from ledger.db import store as dbstore  # noqa: PLC0415

    with st.sessions() as session:
        return decode_leaf(bytes(dbstore.get_entry(session, index).data))


def _link(st: Any, index: int) -> dict[str, Any]:
    with st.sessions() as session:
        doc = chain.chain(session, f"sha256:{ARTIFACT_SHA256}")
    return next(link for link in doc["links"] if link["index"] == index)


def test_promised_inclusion_is_recorded_and_shown(generated: tuple[Any, World]) -> None:
    st, world = generated
    (result,) = st.append([encode(world.bundle(promise=True, proof=False))], now=st.tick())
    index = ok(result)["index"]
    assert _leaf(st, index).signer["tlog_inclusion"] == "promised"
    link = _link(st, index)
    assert link["verdict"] == "trusted"
    assert PROMISED_INCLUSION in link["reasons"]


def test_proven_inclusion_shows_no_such_reason(generated: tuple[Any, World]) -> None:
    st, world = generated
    (result,) = st.append([encode(world.bundle(promise=True, proof=True))], now=st.tick())
    index = ok(result)["index"]
    assert "tlog_inclusion" not in _leaf(st, index).signer
    assert PROMISED_INCLUSION not in _link(st, index)["reasons"]


def test_bad_promise_or_none_changes_nothing(generated: tuple[Any, World]) -> None:
    st, world = generated
    doc = world.bundle(promise=True)
    entry = doc["verificationMaterial"]["tlogEntries"][0]
    entry["integratedTime"] = str(int(entry["integratedTime"]) + 1)
    (bad_set,) = st.append([encode(doc)], now=st.tick())
    assert isinstance(bad_set, SignatureError) and "signed entry timestamp" in str(bad_set)
    (neither,) = st.append([encode(world.bundle(promise=False, proof=False))], now=st.tick())
    assert isinstance(neither, VerificationError) and "neither an inclusion proof nor an inclusion promise" in str(neither)
    with st.sessions() as session:
        assert chain.chain(session, f"sha256:{ARTIFACT_SHA256}")["verdict"] == "missing"


def test_the_offline_verdict_shows_the_promise_as_the_server_does(generated: tuple[Any, World]) -> None:
    """The note is read from the leaf by the pure code both sides run: the offline verifier's
    chain of a promised-inclusion keyless entry is the server's, reasons included."""
    from ledger.trust.bundle_verify import verify_verdict_bundle  # noqa: PLC0415
    from tests.verdict_bundle.helpers import bundle_doc, raw  # noqa: PLC0415

    st, world = generated
    (result,) = st.append([encode(world.bundle(promise=True, proof=False))], now=st.tick())
    index = ok(result)["index"]
    artifact = f"sha256:{ARTIFACT_SHA256}"
    now = st.tick()
    offline = verify_verdict_bundle(raw(bundle_doc(st, artifact)), artifact, st.log.vkey, now=now).chain
    with st.sessions() as session:
        assert chain.chain(session, artifact, now=now) == offline
    link = next(link for link in offline["links"] if link["index"] == index)
    assert link["verdict"] == "trusted" and PROMISED_INCLUSION in link["reasons"]
