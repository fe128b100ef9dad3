"""The trust fold (issue 12): leaf facts per entry, a from-scratch fold, the incremental fold's
cost per new key event, and a chain verdict — all pure, in memory.

    .venv/bin/python -m bench.bench_trust_fold [ENTRIES] [KEY_EVENTS]

Prints figures and ratios (never asserted in tests).
"""

from __future__ import annotations

import hashlib
import json
import sys
import time

from bench._common import machine
from ledger.records.dsse import parse_envelope, sign_envelope
from ledger.records.keys import generate_private_key
from ledger.records.leaf import encode_leaf
from ledger.records.statement import IN_TOTO_PAYLOAD_TYPE, STATEMENT_V1
from ledger.services.registry import key_event_statement
from ledger.trust.fold import GENESIS, fold, leaf_facts
from ledger.trust.policy import Grant, KeyEvent
from ledger.trust.verdict import chain_verdict, record_info

SLSA = "https://slsa.dev/provenance/v1"
T0 = 1_750_000_000


def main() -> None:
    entries = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    events = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    admin, ci = generate_private_key(), generate_private_key()
    leaves: list[bytes] = []
    last = GENESIS

    def key_event(event: KeyEvent) -> None:
        nonlocal last
        env = sign_envelope(key_event_statement(event), IN_TOTO_PAYLOAD_TYPE, [admin])
        data = encode_leaf(parse_envelope(env).document, T0 + len(leaves), [admin.public_key])
        last = (len(leaves), hashlib.sha256(b"\x00" + data).hexdigest())
        leaves.append(data)

    key_event(KeyEvent("register", ci.key_id, "ci", ci.public_key.spki_der, (Grant((SLSA,)),), prev=last))
    every = max(1, entries // events)
    for i in range(1, entries):
        if i % every == 0:
            key_event(KeyEvent("reaffirm", ci.key_id, review_by=T0 + 10**6 + i, prev=last))
            continue
        deps = [{"digest": {"sha256": f"{i - 1:064x}"}}] if i > 1 else []
        stmt = {"_type": STATEMENT_V1, "subject": [{"name": f"pkg/{i}", "digest": {"sha256": f"{i:064x}"}}],
                "predicateType": SLSA, "predicate": {"buildDefinition": {"buildType": "t", "externalParameters": {},
                                                                          "resolvedDependencies": deps},
                                                      "runDetails": {"builder": {"id": "ci"}}}}
        env = sign_envelope(json.dumps(stmt).encode(), IN_TOTO_PAYLOAD_TYPE, [ci])
        leaves.append(encode_leaf(parse_envelope(env).document, T0 + i, [ci.public_key]))

    root = admin.public_key.spki_der
    t = time.perf_counter()
    facts = [leaf_facts(i, d) for i, d in enumerate(leaves)]
    t_facts = time.perf_counter() - t
    t = time.perf_counter()
    full = fold(root, enumerate(leaves))
    t_fold = time.perf_counter() - t
    assert not full.problems, full.problems[:3]
    # incremental: advance a copy by one key event, as the append path does per key event
    base = fold(root, enumerate(leaves[:-1]))
    t = time.perf_counter()
    rounds = 200
    for _ in range(rounds):
        step = base.copy()
        step.feed(len(leaves) - 1, leaves[-1])
    t_step = (time.perf_counter() - t) / rounds
    records = {f.index: record_info(f) for f in facts}
    depth = min(2000, entries - 1)
    depth -= 1 if depth % every == 0 else 0
    t = time.perf_counter()
    chain = chain_verdict(("sha256", f"{depth:064x}"), records, full.state, as_of_time=T0 + entries)
    t_chain = time.perf_counter() - t
    n_keys = len(full.events)
    print(f"machine: {machine()}")
    print(f"{entries} entries ({n_keys} key events)")
    print(f"leaf facts:          {t_facts:8.3f} s  ({entries / t_facts:,.0f} entries/s)")
    print(f"fold from scratch:   {t_fold:8.3f} s  ({entries / t_fold:,.0f} entries/s, includes leaf facts and root signature checks)")
    print(f"incremental step:    {t_step * 1000:8.3f} ms per new key event (copy + feed)")
    print(f"ratio scratch/step:  {t_fold / t_step:8.0f}x")
    print(f"chain of depth {depth}: {t_chain:8.3f} s  ({len(chain['links'])} links, verdict {chain['verdict']})")


if __name__ == "__main__":
    main()
