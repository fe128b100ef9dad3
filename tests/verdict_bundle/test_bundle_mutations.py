"""Seeded structural mutations of real verdict bundles: the offline verifier answers each with
a clear error (a LedgerError) or a verdict no better than the genuine bundle's, never a crash,
and never "trusted" for a chain whose genuine verdict is not.
"""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from ledger.errors import LedgerError
from ledger.trust.bundle_verify import verify_verdict_bundle
from tests.mutations import mutate
from tests.verdict_bundle.helpers import bundle_doc, raw, supply_chain

NOW = 1_760_000_000
CASES = 400


@pytest.mark.parametrize("revoked", [False, True], ids=["trusted", "revoked"])
def test_mutated_bundles_fail_cleanly_and_never_gain_trust(store: Any, revoked: bool) -> None:
    chain = supply_chain(store)
    if revoked:
        chain.trust.revoke(chain.keys["fw"], compromised_since=store.clock - 100)
    genuine = bundle_doc(store, chain.artifact)
    base = verify_verdict_bundle(raw(genuine), chain.artifact, store.log.vkey, now=NOW)
    assert base.verdict == ("untrusted" if revoked else "trusted")
    rng = random.Random(1309)
    refused = 0
    for case in range(CASES):
        doc = json.loads(json.dumps(genuine))
        touched = mutate(doc, rng)
        try:
            result = verify_verdict_bundle(raw(doc), chain.artifact, store.log.vkey, now=NOW)
        except LedgerError:
            refused += 1
            continue
        # accepted: the change did not touch what the verdict rests on, or only took support away
        assert result.verdict != "trusted" or (base.verdict == "trusted" and result.chain == base.chain), (case, touched)
    assert refused > CASES * 0.8  # the mutations reach the parts that matter
