"""Deployment statements with generated TEE evidence (SEV-SNP, TPM) bound to them, and a supply
chain (chip → board → firmware → build) to deploy into."""

from __future__ import annotations

import base64
import hashlib
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from ledger.records.keys import PrivateKey
from ledger.trust.deployment import binding
from ledger.trust.policy import Grant
from ledger.trust.predicates import DEPLOYMENT, FIRMWARE_IMAGE, HARDWARE_PART, SLSA_V1
from tests.provenance import helpers as prov
from tests.unit.attestation.factories import (
    CHIP_ID,
    MILAN_TCB,
    TPM_SHA256,
    SnpPki,
    TpmPki,
    amd_extensions,
    encode_json,
    fingerprint,
    make_cert,
)

SNP_MEASUREMENT = bytes.fromhex("5a" * 48)
TPM_PCRS = {0: hashlib.sha256(b"pcr0").digest(), 7: hashlib.sha256(b"pcr7").digest()}
NONCE = "0f" * 16
HOST = "host-17.eu-west"
ARTIFACT_NAME = "payments/api/1.8.0"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def firmware_statement(name: str = "acme/bios/2.14.1", *, board: str | None = None,
                       snp: bytes = SNP_MEASUREMENT, pcrs: dict[int, bytes] | None = None) -> tuple[bytes, str]:
    d = prov.digest(name)
    pcrs = TPM_PCRS if pcrs is None else pcrs
    predicate: dict[str, Any] = {
        "vendor": "ACME", "name": "bios", "version": "2.14.1", "security_version": 7, "targets": ["RC-2000"],
        "measurements": {
            "sev-snp": snp.hex(),
            "tpm": {"bank": "sha256", "pcrs": {str(i): v.hex() for i, v in pcrs.items()}},
        },
    }
    if board is not None:
        predicate["hardware"] = [{"name": "acme/boards/rev-c", "digest": {"sha256": board}}]
    return prov.statement(name, d, FIRMWARE_IMAGE, predicate), d


def deployment_statement(
    artifact: str, evidence_type: str, evidence: bytes, endorsements: list[bytes] = (),  # type: ignore[assignment]
    *, host: str = HOST, nonce: str = NONCE, name: str = ARTIFACT_NAME, **overrides: Any,
) -> bytes:
    predicate: dict[str, Any] = {
        "artifact": {"sha256": artifact},
        "host_id": host,
        "environment": "production",
        "evidence": {"type": evidence_type, "encoding": "base64", "data": b64(evidence),
                     "endorsements": [b64(e) for e in endorsements]},
        "nonce": nonce,
    }
    predicate.update(overrides)
    return prov.statement(name, artifact, DEPLOYMENT, predicate)


def snp_evidence(pki: SnpPki, artifact: str, *, host: str = HOST, nonce: str = NONCE,
                 measurement: bytes = SNP_MEASUREMENT, **fields: Any) -> tuple[bytes, list[bytes]]:
    report = pki.report(report_data=binding(artifact, host, nonce), measurement=measurement, **fields)
    return report, pki.endorsements()


def tpm_evidence(pki: TpmPki, artifact: str, *, host: str = HOST, nonce: str = NONCE,
                 pcrs: dict[int, bytes] | None = None) -> bytes:
    quote = pki.quote(nonce=binding(artifact, host, nonce)[:32], bank=TPM_SHA256,
                      pcrs=TPM_PCRS if pcrs is None else pcrs)
    return encode_json(pki.evidence(quotes=[quote]))


@dataclass
class World:
    """A store with signers for every kind, and chip → board → firmware → build appended."""

    trust: prov.Trust
    hw: PrivateKey
    fw: PrivateKey
    ci: PrivateKey
    deployer: PrivateKey
    chip: str
    board: str
    firmware: str
    firmware_index: int
    artifact: str
    build_index: int

    def deploy(self, stmt: bytes) -> Any:
        return self.trust.submit(stmt, self.deployer)


def world(store: Any) -> World:
    trust = prov.Trust(store)
    hw = trust.add("hardware-vendor", Grant((HARDWARE_PART,)))
    fw = trust.add("firmware-vendor", Grant((FIRMWARE_IMAGE,)))
    ci = trust.add("ci", Grant((SLSA_V1,)))
    deployer = trust.add("deployer", Grant((DEPLOYMENT,), ("payments/*/*",)))
    chip_s, chip = prov.hardware_part("acme/chips/tpm/7731")
    trust.ok(chip_s, hw)
    board_s, board = prov.hardware_part("acme/boards/rev-c/0042", children=[chip])
    trust.ok(board_s, hw)
    fw_s, firmware = firmware_statement(board=board)
    fw_index = trust.ok(fw_s, fw)
    build_s, artifact = prov.build(ARTIFACT_NAME, inputs=[firmware])
    build_index = trust.ok(build_s, ci)
    # the TEE trust folder is an import path: its roots count once they are in the key history
    from ledger.services.deployment import load_tpm_roots, trust_dir  # noqa: PLC0415
    from ledger.services.registry import import_tee_roots  # noqa: PLC0415

    import_tee_roots(store.sessions, store.log, trust.admin, load_tpm_roots(trust_dir()), name="test TPM CAs", now=store.tick())
    return World(trust, hw, fw, ci, deployer, chip, board, firmware, fw_index, artifact, build_index)


# The factories' certificates are valid around their fixed NOW; the HTTP API and the command
# line appraise at the wall-clock time, so these hierarchies are valid around the real now.
_WALL = datetime.fromtimestamp(time.time(), UTC)
_VALID = {"not_before": _WALL - timedelta(days=1), "not_after": _WALL + timedelta(days=3650)}


class CurrentSnpPki(SnpPki):
    def __post_init__(self) -> None:
        p = self.product
        self.ark = make_cert(f"ARK-{p}", self.ark_key.public_key(), f"ARK-{p}", self.ark_key, ca=True, pss=True, **_VALID)
        self.ask = make_cert(f"SEV-{p}", self.ask_key.public_key(), f"ARK-{p}", self.ark_key, ca=True, pss=True, **_VALID)
        self.asvk = self.ask
        self.vcek = make_cert("SEV-VCEK", self.vcek_key.public_key(), f"SEV-{p}", self.ask_key, ca=False, pss=True,
                              extensions=amd_extensions(MILAN_TCB, CHIP_ID), **_VALID)
        self.vlek = self.vcek
        self.roots = {fingerprint(self.ark): p}


class CurrentTpmPki(TpmPki):
    def __post_init__(self) -> None:
        self.root = make_cert("Test TPM Root", self.root_key.public_key(), "Test TPM Root", self.root_key, ca=True, **_VALID)
        self.mid = make_cert("Test TPM Intermediate", self.mid_key.public_key(), "Test TPM Root", self.root_key, ca=True,
                             **_VALID)
        self.rsa_ak_cert = make_cert("rsa ak", self.rsa_ak.public_key(), "Test TPM Intermediate", self.mid_key, ca=False,
                                     **_VALID)
        self.ec_ak_cert = make_cert("ec ak", self.ec_ak.public_key(), "Test TPM Intermediate", self.mid_key, ca=False,
                                    **_VALID)
        self.roots = frozenset({fingerprint(self.root)})


def audits_pass(store: Any, *, shard_level: int = 1) -> None:
    """The full audit and the signature-level one (shards of 2**shard_level entries, then the
    combiner) both rebuild what the log holds (appraisals, firmware edges) and find nothing."""
    from ledger.services import audit, shards  # noqa: PLC0415

    with store.sessions() as session:
        report = audit.audit(session, store.log)
        assert report.ok, report.problems
        log = store.log
        plan = shards.plan_shards(report.tree_size, shard_level)
        results = [shards.verify_shard(session, s, vkey=log.vkey, origin=log.origin) for s in plan]
        combined = shards.combine_shards(session, report.tree_size, results, vkey=log.vkey, origin=log.origin)
        assert combined.ok, combined.problems
