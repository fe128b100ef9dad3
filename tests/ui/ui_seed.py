"""A small, realistic ledger for the UI tests: the demo's supply chain (hardware parts, firmware,
SLSA build, SBOM; ``ledger.cli.demo``), a record by a key that is revoked afterwards, and a hostile record whose
subject names, predicate type and signer name are HTML and script."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ledger.cli.demo import GRANTS, supply_chain
from ledger.records.dsse import sign_envelope
from ledger.records.keys import PrivateKey, generate_private_key
from ledger.trust.policy import Grant
from ledger.services import registry
from ledger.services.setup import load_admin_key
from ledger.records.statement import IN_TOTO_PAYLOAD_TYPE, STATEMENT_V1
from tests.fixtures import StoreHandle, sign

XSS_SCRIPT = "<script>alert(1)</script>"
XSS_ATTR = '"><img src=x onerror=alert(2)>'
XSS_PREDICATE = 'https://evil.example/"><img src=x onerror=alert(3)>/<script>alert(4)</script>'
XSS_SIGNER = "<img src=x onerror=alert(5)>"
#: Strings that must never reach a page unescaped.
HOSTILE = (XSS_SCRIPT, XSS_ATTR, XSS_PREDICATE, XSS_SIGNER, "<img src=x", "<script>")

XSS_DIGEST = hashlib.sha256(b"hostile-record").hexdigest()
REVOKED_DIGEST = hashlib.sha256(b"signed-by-a-revoked-key").hexdigest()


@dataclass
class Seeded:
    store: StoreHandle
    #: subject name -> entry index
    indexes: dict[str, int] = field(default_factory=dict)
    build_digest: str = ""
    build_name: str = ""
    xss_digest: str = XSS_DIGEST
    revoked_digest: str = REVOKED_DIGEST
    xss_index: int = -1
    revoked_key_id: str = ""
    #: principal -> signing key
    keys: dict[str, PrivateKey] = field(default_factory=dict)


def register(store: StoreHandle, name: str, grant: Grant | Sequence[str]) -> PrivateKey:
    """Register a signer key with one grant (or predicate-type patterns), as a key event signed
    by the store's administrator key."""
    key = generate_private_key()
    if not isinstance(grant, Grant):
        grant = Grant(predicate_types=tuple(grant))
    registry.add_key(store.sessions, store.log, load_admin_key(store.settings), name, key.public_key, [grant], now=store.tick())
    return key


def _statement(subjects: list[dict[str, Any]], predicate_type: str, predicate: dict[str, Any]) -> bytes:
    return json.dumps(
        {"_type": STATEMENT_V1, "subject": subjects, "predicateType": predicate_type, "predicate": predicate}, indent=2
    ).encode()


def seed(store: StoreHandle) -> Seeded:
    seeded = Seeded(store)
    signers = {name: register(store, name, grant) for name, grant in GRANTS.items()}
    seeded.keys.update(signers)
    for who, statement in supply_chain():
        names = (who,) if isinstance(who, str) else tuple(who)
        envelope = sign_envelope(statement, IN_TOTO_PAYLOAD_TYPE, [signers[n] for n in names])
        (result,) = store.append_ok([envelope])
        doc = json.loads(statement)
        subject = doc["subject"][0]
        seeded.indexes.setdefault(subject["name"], result.receipt["index"])
        if doc["predicateType"] == "https://slsa.dev/provenance/v1":
            seeded.build_digest, seeded.build_name = subject["digest"]["sha256"], subject["name"]

    hostile = register(store, XSS_SIGNER, ["*"])
    seeded.keys[XSS_SIGNER] = hostile
    statement = _statement(
        [
            {"name": XSS_SCRIPT, "digest": {"sha256": XSS_DIGEST}},
            {"name": XSS_ATTR, "digest": {"sha256": hashlib.sha256(b"second").hexdigest()}},
        ],
        XSS_PREDICATE,
        {"note": XSS_SCRIPT, "html": XSS_ATTR, "</pre><script>alert(6)</script>": True},
    )
    (result,) = store.append_ok([sign(hostile, statement)])
    seeded.xss_index = result.receipt["index"]

    leaked = register(store, "leaked-builder", ["https://slsa.dev/provenance/*"])
    seeded.keys["leaked-builder"] = leaked
    statement = _statement(
        [{"name": "tampered-tool-0.1.tar.gz", "digest": {"sha256": REVOKED_DIGEST}}],
        "https://slsa.dev/provenance/v1",
        {"buildDefinition": {"buildType": "https://example/build"}},
    )
    store.append_ok([sign(leaked, statement)])
    # compromised since before the record: the record stops being trusted
    registry.revoke_key(
        store.sessions, store.log, load_admin_key(store.settings), leaked.key_id,
        now=store.tick(), compromised_since=store.clock - 100, reason="key leaked <b>in a paste</b>",
    )
    seeded.revoked_key_id = leaked.key_id
    return seeded


def fixture_chain(artifact: str) -> dict[str, Any]:
    """A chain in the GUIDE's JSON shape: deployment → TEE evidence → firmware → hardware part,
    and deployment → build → input and SBOM; hostile text in a subject and a reason."""
    links = [
        {"index": 9, "kind": "deployment", "subject": "payments-api@prod-eu-1", "signer": "deployer", "key_id": "d" * 64,
         "verdict": "trusted", "reasons": ["signed within its grant"], "depends_on": [8, 5]},
        {"index": 8, "kind": "tee", "subject": "sev-snp report host-17", "signer": "attestation-service", "key_id": "e" * 64,
         "verdict": "trusted", "reasons": ["report verified against the AMD root"], "depends_on": [1]},
        {"index": 5, "kind": "build", "subject": "payments-api-1.8.0-linux-amd64", "signer": "ci-pipeline", "key_id": "c" * 64,
         "verdict": "stale", "reasons": ["grant past its review date"], "depends_on": [4, 6]},
        {"index": 4, "kind": "input", "subject": XSS_SCRIPT, "signer": XSS_SIGNER, "key_id": "f" * 64,
         "verdict": "untrusted", "reasons": [XSS_ATTR], "depends_on": []},
        {"index": 6, "kind": "sbom", "subject": "payments-api SBOM", "signer": "ci-pipeline", "key_id": "c" * 64,
         "verdict": "trusted", "reasons": [], "depends_on": [5]},  # a cycle: SBOM describes the build
        {"index": 1, "kind": "firmware", "subject": "acme/bios/2.14.1", "signer": "firmware-vendor", "key_id": "b" * 64,
         "verdict": "trusted", "reasons": [], "depends_on": [0]},
        {"index": 0, "kind": "hardware", "subject": "acme/boards/rev-c/0042", "signer": "hardware-vendor", "key_id": "a" * 64,
         "verdict": "trusted", "reasons": [], "depends_on": []},
        {"index": None, "kind": "input", "subject": "libfoo-2.0", "signer": None, "key_id": None,
         "verdict": "missing", "reasons": ["no record"], "depends_on": []},
    ]
    return {"artifact": artifact, "verdict": "untrusted", "weakest_link": links[3], "root": links[6], "links": links}
