"""A trusted deployer signs malformed deployments: seeded structural mutations of a deployment
statement (its evidence, endorsements, binding fields) and byte-level mutations of its SEV-SNP
report and certificates, each validly signed. Each gets a receipt or a clear error (a
LedgerError), never a crash; afterwards the full audit and the signature-level audit rebuild the
same appraisals from the log, and the artifact's chain still answers, server and offline alike.
"""

from __future__ import annotations

import base64
import json
import random
from typing import Any

import pytest

from ledger.trust.policy import Grant
from ledger.trust.predicates import DEPLOYMENT, FIRMWARE_IMAGE, SLSA_V1
from tests.deployment import helpers as h
from tests.mutations import mutate
from tests.provenance import helpers as prov
from tests.provenance.helpers import Trust, envelope
from tests.unit.attestation.factories import SnpPki
from tests.verdict_bundle.test_server_offline_agree import _diff, both

pytestmark = pytest.mark.usefixtures("pinned")
CASES = 120


def _flip(data: bytes, rng: random.Random) -> bytes:
    raw = bytearray(data)
    choice = rng.randrange(3)
    if choice == 0 and raw:
        raw[rng.randrange(len(raw))] ^= 1 << rng.randrange(8)
    elif choice == 1:
        del raw[rng.randrange(len(raw) + 1):]
    else:
        at = rng.randrange(len(raw) + 1)
        raw[at:at] = rng.randbytes(rng.randint(1, 16))
    return bytes(raw)


def test_mutated_signed_deployments_fail_cleanly_and_audit_clean(store: Any, snp_pki: SnpPki) -> None:
    trust = Trust(store)
    vendor = trust.add("firmware-vendor", Grant((FIRMWARE_IMAGE,)))
    ci = trust.add("ci", Grant((SLSA_V1,)))
    deployer = trust.add("deployer", Grant((DEPLOYMENT,)))
    fw_s, firmware = h.firmware_statement()
    trust.ok(fw_s, vendor)
    build_s, artifact = prov.build(h.ARTIFACT_NAME, inputs=[firmware])
    trust.ok(build_s, ci)
    report, endorsements = h.snp_evidence(snp_pki, artifact)
    genuine = json.loads(h.deployment_statement(artifact, "sev-snp", report, endorsements))
    trust.ok(json.dumps(genuine).encode(), deployer)
    rng = random.Random(4242)
    outcomes: dict[str, int] = {}
    for _ in range(CASES):
        doc = json.loads(json.dumps(genuine))
        if rng.random() < 0.5:
            mutate(doc, rng)
        else:  # the evidence bytes themselves: the report or one certificate
            evidence = doc["predicate"]["evidence"]
            parts = [evidence["data"], *evidence["endorsements"]]
            which = rng.randrange(len(parts))
            flipped = base64.b64encode(_flip(base64.b64decode(parts[which]), rng)).decode()
            if which == 0:
                evidence["data"] = flipped
            else:
                evidence["endorsements"][which - 1] = flipped
        (result,) = store.append([envelope(json.dumps(doc).encode(), deployer)])  # a crash fails here
        outcomes[type(result).__name__] = outcomes.get(type(result).__name__, 0) + 1
    assert sum(v for k, v in outcomes.items() if k != "Appended") > CASES // 2, outcomes
    h.audits_pass(store, shard_level=2)
    server, offline = both(store, f"sha256:{artifact}", now=store.tick())  # type: ignore[misc]
    assert server == offline, "\n".join(_diff(server, offline))
    assert server["verdict"] == "trusted", server
