"""End to end: the served ledger asks its witnesses after each commit, and everything it serves
(the checkpoint, the checkpoint list, the tiles' checkpoint, receipts) carries their cosignatures.

Needs the wiring of web/app.py, the sequencer and the views (see ledger/services/cosign.py);
skipped until the sequencer takes ``on_commit``.
"""

from __future__ import annotations

import base64
import inspect
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask

from ledger.tlog.checkpoint import open_checkpoint, verify_cosignatures
from ledger.errors import VerificationError
from ledger.services.cosign import WitnessConfig
from ledger.services.registry import create_token
from ledger.services.sequencer import Sequencer
from ledger.tlog.witness_policy import parse_witness_policy, verify_receipt_with_witnesses
from tests.cosign.helpers import Appender, Witnesses
from tests.fixtures import StoreHandle, sign

pytestmark = pytest.mark.skipif(
    "on_commit" not in inspect.signature(Sequencer.__init__).parameters,
    reason="the cosigning wiring (Sequencer on_commit, create_app's CosignLoop) is not applied yet",
)


@pytest.fixture
def served(sqlite_store: StoreHandle, witnesses: Witnesses, appender: Appender) -> Iterator[tuple[Flask, Witnesses, Appender]]:
    from web.app import create_app  # noqa: PLC0415

    ws = witnesses.start(3)
    vkeys = [w.vkey for w in ws]
    policy = parse_witness_policy(vkeys, 2)
    assert policy is not None
    config = WitnessConfig(tuple(w.endpoint for w in ws), policy)
    app = create_app({"SETTINGS": sqlite_store.settings, "TESTING": True, "WITNESSES": config})
    try:
        yield app, witnesses, appender
    finally:
        ext = app.extensions["provledger"]
        ext.sequencer.stop()
        if ext.cosign is not None:
            ext.cosign.stop()
        ext.engine.dispose()


def _post(app: Flask, store: StoreHandle, envelope: dict[str, Any]) -> dict[str, Any]:
    with store.sessions() as session, session.begin():
        token = create_token(session, "t", "submit", now=store.clock)
    response = app.test_client().post("/api/v1/entries", json=envelope, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()  # type: ignore[no-any-return]


def test_the_served_ledger_carries_cosignatures(served: tuple[Flask, Witnesses, Appender], sqlite_store: StoreHandle) -> None:
    app, witnesses, appender = served
    store = sqlite_store
    ws = witnesses.running
    verifiers = [w.cosigner.verifier() for w in ws]
    vkeys = [w.vkey for w in ws]
    ext = app.extensions["provledger"]

    submitted = _post(app, store, sign(appender.key))
    tree_size = submitted["tree_size"]
    assert ext.cosign.wait_for(tree_size, timeout=60)  # notified by the sequencer's commit

    http = app.test_client()
    note = http.get("/api/v1/checkpoint").get_data(as_text=True)
    open_checkpoint(note, store.log.verifier)
    assert len(verify_cosignatures(note, verifiers, 3)) == 3
    assert http.get("/tlog/checkpoint").get_data(as_text=True) == note
    listed = http.get("/api/v1/checkpoints").get_json()["checkpoints"]
    assert listed[-1] == {"tree_size": tree_size, "note": note}

    receipt = http.get(f"/api/v1/receipt/{submitted['index']}").get_json()
    assert len(verify_receipt_with_witnesses(receipt, store.log.vkey, witness_vkeys=vkeys, threshold=3).witnesses) == 3

    # One witness down: the next checkpoint gets two cosignatures; 2-of-3 passes, 3-of-3 does not.
    ws[2].stop()
    second = _post(app, store, sign(appender.key))
    assert ext.cosign.wait_for(second["tree_size"], timeout=60)
    receipt = http.get(f"/api/v1/receipt/{second['index']}").get_json()
    assert receipt["tree_size"] == second["tree_size"]
    verify_receipt_with_witnesses(receipt, store.log.vkey, witness_vkeys=vkeys, threshold=2)
    with pytest.raises(VerificationError, match="2 of the required 3"):
        verify_receipt_with_witnesses(receipt, store.log.vkey, witness_vkeys=vkeys, threshold=3)
    entry = base64.b64decode(receipt["entry"])
    assert entry  # the receipt still carries the record
