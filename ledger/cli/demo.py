"""``provledger demo``: a fresh ledger with a small, realistic supply chain, then served.

A hardware vendor signs a part, a firmware vendor an image for it, a CI pipeline the SLSA
provenance and CycloneDX SBOM of a build: each signer with its own key and grant.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

from ledger.config import Settings
from ledger.db.engine import make_engine, make_session_factory
from ledger.dsse import sign_envelope
from ledger.errors import LedgerError
from ledger.keys import generate_private_key
from ledger.services import append, audit, registry, setup
from ledger.statement import IN_TOTO_PAYLOAD_TYPE, STATEMENT_V1
from ledger.verify import verify_receipt

__all__ = ["run_demo"]

HARDWARE_PART = "https://provenance-ledger.dev/hardware-part/v1"
FIRMWARE_IMAGE = "https://provenance-ledger.dev/firmware-image/v1"
SLSA_V1 = "https://slsa.dev/provenance/v1"
CYCLONEDX = "https://cyclonedx.org/bom"


def _digest(label: str) -> str:
    return hashlib.sha256(label.encode()).hexdigest()


def _statement(subject: str, digest: str, predicate_type: str, predicate: dict) -> bytes:
    return json.dumps(
        {
            "_type": STATEMENT_V1,
            "subject": [{"name": subject, "digest": {"sha256": digest}}],
            "predicateType": predicate_type,
            "predicate": predicate,
        },
        indent=2,
    ).encode()


def supply_chain() -> list[tuple[str, bytes]]:
    """(signer, statement) pairs: part → firmware → build → SBOM."""
    board = _digest("acme-board-rev-c/serial-0042")
    firmware = _digest("acme-bios-2.14.1.bin")
    binary = _digest("payments-api-1.8.0-linux-amd64")
    base_image = _digest("debian-12-slim@2026-11-01")
    return [
        ("hardware-vendor", _statement("acme/boards/rev-c/0042", board, HARDWARE_PART, {
            "manufacturer": "ACME Silicon", "model": "RC-2000", "part_number": "RC2K-C",
            "serial": "0042", "manufactured": {"date": "2026-03-14", "site": "Penang, MY"}, "children": []})),
        ("firmware-vendor", _statement("acme/bios/2.14.1", firmware, FIRMWARE_IMAGE, {
            "vendor": "ACME Firmware", "name": "acme-bios", "version": "2.14.1", "security_version": 7,
            "targets": ["RC-2000"],
            "measurements": {"sev-snp": _digest("launch-measurement")[:96].ljust(96, "0")}})),
        ("ci-pipeline", _statement("payments-api-1.8.0-linux-amd64", binary, SLSA_V1, {
            "buildDefinition": {
                "buildType": "https://slsa-framework.github.io/github-actions-buildtypes/workflow/v1",
                "externalParameters": {"workflow": {"ref": "refs/tags/v1.8.0", "repository": "https://github.com/example/payments-api", "path": ".github/workflows/release.yml"}},
                "resolvedDependencies": [
                    {"uri": "git+https://github.com/example/payments-api@refs/tags/v1.8.0", "digest": {"gitCommit": "4f2c7a9e1d3b5c6a7e8f9a0b1c2d3e4f5a6b7c8d"}},
                    {"uri": "oci://registry.example/debian:12-slim", "digest": {"sha256": base_image}},
                ]},
            "runDetails": {"builder": {"id": "https://github.com/actions/runner/github-hosted"},
                           "metadata": {"invocationId": "https://github.com/example/payments-api/actions/runs/1/attempts/1"}}})),
        ("ci-pipeline", _statement("payments-api-1.8.0-linux-amd64", binary, CYCLONEDX, {
            "bomFormat": "CycloneDX", "specVersion": "1.5", "version": 1,
            "components": [{"type": "library", "name": "openssl", "version": "3.0.15",
                            "hashes": [{"alg": "SHA-256", "content": _digest("openssl-3.0.15")}]}]})),
    ]


GRANTS = {
    "hardware-vendor": [HARDWARE_PART],
    "firmware-vendor": [FIRMWARE_IMAGE],
    "ci-pipeline": ["https://slsa.dev/provenance/*", "https://cyclonedx.org/bom*"],
}


def run_demo(home: Path, *, port: int = 8000, serve_it: bool = True) -> int:
    if home.exists():
        shutil.rmtree(home)
    os.environ["PROVLEDGER_HOME"] = str(home)
    os.environ.pop("PROVLEDGER_DATABASE_URL", None)
    settings = Settings.from_env()
    log = setup.init_store(settings)
    print(f"demo ledger in {home} (SQLite), origin {log.origin}")
    engine = make_engine(settings.database_url)
    sessions = make_session_factory(engine)
    now = int(time.time())
    signers = {name: generate_private_key() for name in GRANTS}
    with sessions() as session, session.begin():
        for name, key in signers.items():
            registry.add_key(session, name, key.public_key, GRANTS[name], now=now)
            (home / "keys").mkdir(exist_ok=True)
            (home / "keys" / f"{name}.pem").write_bytes(key.to_pem())
            (home / "keys" / f"{name}.pem.pub").write_bytes(key.public_key.to_pem())
        token = registry.create_token(session, "demo", "submit", now=now)
    envelopes = [sign_envelope(stmt, IN_TOTO_PAYLOAD_TYPE, [signers[who]]) for who, stmt in supply_chain()]
    results = append.append_batch(sessions, [json.dumps(e) for e in envelopes], log, now=now)
    receipts_dir = home / "receipts"
    receipts_dir.mkdir(exist_ok=True)
    for result in results:
        if isinstance(result, LedgerError):
            print(f"demo: a record was refused: {result}", file=sys.stderr)
            return 1
        r = result.receipt
        (receipts_dir / f"{r['index']}.json").write_text(json.dumps(r, indent=2))
        verify_receipt(r, log.vkey)
    with sessions() as session:
        report = audit.audit(session, log)
    engine.dispose()
    print(f"appended {len(results)} signed records; audit: {'OK' if report.ok else 'FAILED'} "
          f"({report.tree_size} entries, {report.checkpoints_checked} checkpoints)")
    print()
    print("Look around:")
    print(f"  receipts:        {receipts_dir}/0.json …")
    print(f"  verify offline:  provledger verify-receipt {receipts_dir}/0.json --log-key '{log.vkey}'")
    print(f"  API:             curl http://127.0.0.1:{port}/api/v1/checkpoint")
    print(f"                   curl http://127.0.0.1:{port}/api/v1/entries/2")
    print(f"  submit token:    {token}")
    print(f"  environment:     export PROVLEDGER_HOME={home}")
    if not serve_it:
        return 0
    from web.server import serve  # noqa: PLC0415

    print()
    return serve(settings, host="127.0.0.1", port=port)
