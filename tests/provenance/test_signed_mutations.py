"""A trusted signer's key, or the root of trust itself, signs a malformed statement: seeded
structural mutations of every record kind and of key events, each validly signed, are appended.
Each gets a receipt or a clear error (a LedgerError) — never a crash — and afterwards the ledger
audits clean (every cache equal to the fold of the leaves) and an artifact's chain still answers.
"""

from __future__ import annotations

import json
import random
from typing import Any

from ledger.errors import LedgerError
from ledger.records.dsse import sign_envelope
from ledger.records.statement import IN_TOTO_PAYLOAD_TYPE
from ledger.services import audit
from ledger.services import chain as chain_service
from ledger.services.registry import key_event_statement, next_prev
from ledger.trust.policy import Grant, KeyEvent
from ledger.trust.predicates import SLSA_V1
from tests.mutations import mutate
from tests.provenance import helpers
from tests.provenance.helpers import Trust

CASES = 300


def test_mutated_signed_statements_fail_cleanly_and_the_ledger_audits_clean(store: Any) -> None:
    trust = Trust(store)
    key = trust.add("vendor", Grant(("*",)))
    hw_s, hw = helpers.hardware_part("chip")
    fw_s, fw = helpers.firmware_image("bios", hardware=[hw])
    app_s, app = helpers.build("app", inputs=[fw])
    seeds = [hw_s, fw_s, app_s, helpers.build("app2", inputs=[fw], v02=True)[0],
             helpers.cyclonedx("sbom", app, [fw]), helpers.spdx("spdx", app, [hw])]
    for s in seeds[:3]:
        trust.ok(s, key)
    rng = random.Random(2718)
    outcomes: dict[str, int] = {}
    for case in range(CASES):
        if rng.random() < 0.3:  # a key event, mutated, signed by the root of trust
            with store.sessions() as session:
                prev = next_prev(session)
            event = rng.choice([
                KeyEvent(action="register", key_id=key.key_id, principal="vendor", public_key=key.public_key.spki_der,
                         grants=(Grant(("*",)),), issued_at=store.clock, prev=prev),
                KeyEvent(action="revoke", key_id=key.key_id, compromised_since=store.clock, issued_at=store.clock, prev=prev),
                KeyEvent(action="reaffirm", key_id=key.key_id, review_by=store.clock + 10**6, issued_at=store.clock, prev=prev),
                KeyEvent(action="threshold", predicate_type=SLSA_V1, threshold=2, issued_at=store.clock, prev=prev),
            ])
            doc, signer, hint = json.loads(key_event_statement(event)), trust.admin, False
        else:
            doc, signer, hint = json.loads(rng.choice(seeds)), key, True
        mutate(doc, rng)
        envelope = sign_envelope(json.dumps(doc).encode(), IN_TOTO_PAYLOAD_TYPE, [signer], hint=hint)
        (result,) = store.append([envelope])  # a crash fails the test here, with its case
        name = type(result).__name__
        outcomes[name] = outcomes.get(name, 0) + 1
        if case % 50 == 0:
            with store.sessions() as session:
                try:
                    chain_service.chain(session, f"sha256:{app}", now=store.clock)
                except LedgerError:
                    pass  # a clear answer (the key may be revoked by now)
    assert outcomes.get("Appended", 0) > 0 and sum(v for k, v in outcomes.items() if k != "Appended") > CASES // 2, outcomes
    with store.sessions() as session:
        report = audit.audit(session, store.log)
    assert report.ok, report.to_json()
