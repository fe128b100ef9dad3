"""Statements of every record kind, and a trust-policy driver over a test store."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from ledger.records.dsse import sign_envelope
from ledger.errors import LedgerError
from ledger.records.keys import PrivateKey, generate_private_key
from ledger.trust.policy import Grant
from ledger.trust.predicates import CYCLONEDX, FIRMWARE_IMAGE, HARDWARE_PART, SLSA_V02, SLSA_V1, SPDX
from ledger.services import registry, setup
from ledger.services.append import Appended
from ledger.records.statement import IN_TOTO_PAYLOAD_TYPE, STATEMENT_V1


def digest(label: str) -> str:
    return hashlib.sha256(label.encode()).hexdigest()


def statement(name: str, sha256: str, predicate_type: str, predicate: Any, *, extra_subjects: list[tuple[str, str]] = ()) -> bytes:  # type: ignore[assignment]
    subjects = [{"name": name, "digest": {"sha256": sha256}}] + [{"name": n, "digest": {"sha256": d}} for n, d in extra_subjects]
    return json.dumps({"_type": STATEMENT_V1, "subject": subjects, "predicateType": predicate_type, "predicate": predicate}, indent=1).encode()


def hardware_part(name: str, *, children: list[str] = (), serial: str = "0001") -> tuple[bytes, str]:  # type: ignore[assignment]
    d = digest(name)
    return statement(name, d, HARDWARE_PART, {
        "manufacturer": "ACME", "model": "RC-2000", "part_number": "RC2K", "serial": serial,
        "manufactured": {"date": "2026-03-14", "site": "Penang, MY"},
        "children": [{"digest": {"sha256": c}} for c in children],
    }), d


def firmware_image(name: str, *, hardware: list[str] = ()) -> tuple[bytes, str]:  # type: ignore[assignment]
    d = digest(name)
    return statement(name, d, FIRMWARE_IMAGE, {
        "vendor": "ACME", "name": "bios", "version": "2.14.1", "security_version": 7, "targets": ["RC-2000"],
        "hardware": [{"digest": {"sha256": h}} for h in hardware],
        "measurements": {
            "sev-snp": "ab" * 48,
            "tdx": {"mrtd": "cd" * 48, "rtmr0": "00" * 48},
            "tpm": {"bank": "sha256", "pcrs": {"0": "11" * 32, "7": "22" * 32}},
            "nitro": {"pcr0": "33" * 48, "pcr1": "44" * 48, "pcr2": "55" * 48},
        },
    }), d


def build(name: str, *, inputs: list[str] = (), v02: bool = False) -> tuple[bytes, str]:  # type: ignore[assignment]
    d = digest(name)
    if v02:
        predicate = {"builder": {"id": "https://ci.example"}, "buildType": "https://ci.example/t",
                     "materials": [{"uri": f"dep-{i}", "digest": {"sha256": x}} for i, x in enumerate(inputs)]}
        return statement(name, d, SLSA_V02, predicate), d
    predicate = {"buildDefinition": {"buildType": "https://ci.example/t", "externalParameters": {},
                                     "resolvedDependencies": [{"uri": f"dep-{i}", "digest": {"sha256": x}} for i, x in enumerate(inputs)]},
                 "runDetails": {"builder": {"id": "https://ci.example"}}}
    return statement(name, d, SLSA_V1, predicate), d


def cyclonedx(name: str, sha256: str, components: list[str]) -> bytes:
    return statement(name, sha256, CYCLONEDX, {
        "bomFormat": "CycloneDX", "specVersion": "1.5", "version": 1,
        "components": [{"type": "library", "name": f"c{i}", "hashes": [{"alg": "SHA-256", "content": c}]} for i, c in enumerate(components)],
    })


def spdx(name: str, sha256: str, components: list[str]) -> bytes:
    return statement(name, sha256, SPDX + "/v2.3", {
        "spdxVersion": "SPDX-2.3", "SPDXID": "SPDXRef-DOCUMENT", "name": name,
        "packages": [{"SPDXID": f"SPDXRef-{i}", "name": f"p{i}", "checksums": [{"algorithm": "SHA256", "checksumValue": c}]}
                     for i, c in enumerate(components)],
    })


def envelope(stmt: bytes, *keys: PrivateKey) -> dict[str, Any]:
    return sign_envelope(stmt, IN_TOTO_PAYLOAD_TYPE, list(keys))


@dataclass
class Trust:
    """Drives a test store's trust policy through key events signed with its admin key."""

    store: Any
    keys: dict[str, PrivateKey] = field(default_factory=dict)

    @property
    def admin(self) -> PrivateKey:
        return setup.load_admin_key(self.store.settings)

    def add(self, principal: str, *grants: Grant, key: PrivateKey | None = None, now: int | None = None) -> PrivateKey:
        key = key or generate_private_key()
        registry.add_key(self.store.sessions, self.store.log, self.admin, principal, key.public_key,
                         list(grants) or [Grant(("*",))], now=now if now is not None else self.store.tick())
        self.keys[principal] = key
        return key

    def revoke(self, key: PrivateKey, *, compromised_since: int | None = None, now: int | None = None) -> Appended:
        return registry.revoke_key(self.store.sessions, self.store.log, self.admin, key.key_id,
                                   now=now if now is not None else self.store.tick(), compromised_since=compromised_since)

    def reaffirm(self, key: PrivateKey, review_by: int, *, now: int | None = None) -> Appended:
        return registry.reaffirm_key(self.store.sessions, self.store.log, self.admin, key.key_id, review_by=review_by,
                                     now=now if now is not None else self.store.tick())

    def threshold(self, predicate_type: str, n: int) -> Appended:
        return registry.set_threshold(self.store.sessions, self.store.log, self.admin, predicate_type, n, now=self.store.tick())

    def submit(self, stmt: bytes, *keys: PrivateKey, now: int | None = None) -> Appended | LedgerError:
        (result,) = self.store.append([envelope(stmt, *keys)], now=now)
        return result

    def ok(self, stmt: bytes, *keys: PrivateKey, now: int | None = None) -> int:
        result = self.submit(stmt, *keys, now=now)
        assert isinstance(result, Appended), f"refused: {result!r}"
        return result.receipt["index"]
