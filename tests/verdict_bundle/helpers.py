"""A small supply chain in a test store, and ways to get and tamper with its verdict bundles."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from ledger.trust.bundle import format_verdict_bundle, parse_verdict_bundle
from ledger.trust.policy import Grant
from ledger.trust.predicates import FIRMWARE_IMAGE, HARDWARE_PART, SLSA_V1
from ledger.services.verdict_bundles import build_verdict_bundle
from tests.provenance import helpers
from tests.provenance.helpers import Trust

FAR = 4_102_444_800  # 2100-01-01


@dataclass
class Chain:
    """hardware part ← firmware image ← build (the artifact), each by its own vendor."""

    store: Any
    trust: Trust
    hw: str
    fw: str
    app: str
    keys: dict[str, Any]
    indexes: dict[str, int]

    @property
    def artifact(self) -> str:
        return f"sha256:{self.app}"


def supply_chain(store: Any, *, name: str = "app", review_by: int | None = None, inputs_missing: bool = False) -> Chain:
    trust = Trust(store)
    keys = {
        "hw": trust.add("acme-hw", Grant((HARDWARE_PART,))),
        "fw": trust.add("acme-fw", Grant((FIRMWARE_IMAGE,))),
        "ci": trust.add("ci", Grant((SLSA_V1,), review_by=review_by)),
    }
    hw_s, hw = helpers.hardware_part(f"{name}/chip")
    fw_s, fw = helpers.firmware_image(f"{name}/bios", hardware=[hw])
    indexes = {}
    if not inputs_missing:
        indexes["hw"] = trust.ok(hw_s, keys["hw"])
    indexes["fw"] = trust.ok(fw_s, keys["fw"])
    app_s, app = helpers.build(name, inputs=[fw])
    indexes["app"] = trust.ok(app_s, keys["ci"])
    return Chain(store, trust, hw, fw, app, keys, indexes)


def bundle_doc(store: Any, artifact: str, *, at: int | None = None) -> dict[str, Any]:
    with store.sessions() as session:
        return format_verdict_bundle(build_verdict_bundle(session, store.log, artifact, at=at))


def raw(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc).encode("utf-8")


def key_event_positions(doc: dict[str, Any]) -> list[int]:
    """Positions in ``entries`` of the key-event entries."""
    out = []
    for position, item in enumerate(doc["entries"]):
        leaf = json.loads(base64.b64decode(item["entry"]))
        statement = json.loads(base64.b64decode(leaf["envelope"]["payload"]))
        if statement["predicateType"].endswith("/key-event/v1"):
            out.append(position)
    return out


def without(doc: dict[str, Any], position: int) -> dict[str, Any]:
    copy = json.loads(json.dumps(doc))
    del copy["entries"][position]
    return copy


def parses(doc: dict[str, Any]) -> bool:
    parse_verdict_bundle(raw(doc))
    return True
