"""``provledger demo``: a fresh ledger with a small, realistic supply chain, then served.

A hardware vendor signs a board and its TPM chip, a firmware vendor and an independent lab
co-sign a firmware image for the board (threshold 2), a CI pipeline the SLSA provenance and
CycloneDX SBOM of an OS image that bundles the firmware: each signer with its own key and
scoped grant, registered by key events signed with the administrator key. The OS image's chain
of trust runs part → firmware → build → SBOM, down to the chip.

Then the OS image is deployed on a host whose (demo) vTPM quotes PCRs 0 and 7, bound to the
deployment (``ledger.trust.deployment``), with its attestation key certified by a demo
"vTPM CA" whose certificate the demo writes into the TEE trust folder (``<home>/tee-trust``).
The ledger appraises the quote and matches its PCRs to the firmware record, so the chain runs
deployment → build → firmware and deployment → firmware → board → chip, plus the TEE evidence.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import struct
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from ledger.config import Settings
from ledger.db.engine import make_engine, make_session_factory
from ledger.records.dsse import sign_envelope
from ledger.errors import ConfigurationError, LedgerError
from ledger.records.keys import generate_private_key
from ledger.trust.deployment import binding
from ledger.trust.policy import Grant
from ledger.services import append, audit, registry, setup
from ledger.services import chain as chain_service
from ledger.services.policy import verify_trust_state
from ledger.records.statement import IN_TOTO_PAYLOAD_TYPE, STATEMENT_V1
from ledger.verify import verify_receipt

__all__ = ["run_demo"]

DEPLOYMENT = "https://provenance-ledger.dev/deployment/v1"
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


def supply_chain() -> list[tuple[tuple[str, ...], bytes]]:
    """(signers, statement) pairs: part (with a child chip) → firmware → build → SBOM."""
    tpm = _digest("acme-tpm-chip/lot-7731")
    board = _digest("acme-board-rev-c/serial-0042")
    firmware = _digest("acme-bios-2.14.1.bin")
    binary = _digest("appliance-os-1.8.0.img")
    return [
        (("hardware-vendor",), _statement("acme/chips/tpm/lot-7731", tpm, HARDWARE_PART, {
            "manufacturer": "ACME Silicon", "model": "AT-97", "part_number": "AT97-TPM20",
            "lot": "7731", "manufactured": {"date": "2026-01-20", "site": "Hsinchu, TW"}})),
        (("hardware-vendor",), _statement("acme/boards/rev-c/0042", board, HARDWARE_PART, {
            "manufacturer": "ACME Silicon", "model": "RC-2000", "part_number": "RC2K-C",
            "serial": "0042", "manufactured": {"date": "2026-03-14", "site": "Penang, MY"},
            "children": [{"name": "tpm", "role": "root-of-trust", "digest": {"sha256": tpm}}]})),
        (("firmware-vendor", "independent-lab"), _statement("acme/bios/2.14.1", firmware, FIRMWARE_IMAGE, {
            "vendor": "ACME Firmware", "name": "acme-bios", "version": "2.14.1", "security_version": 7,
            "targets": ["RC-2000"],
            "hardware": [{"name": "acme/boards/rev-c", "digest": {"sha256": board}}],
            "measurements": {
                "sev-snp": _digest("snp-launch")[:96].ljust(96, "0"),
                "tpm": {"bank": "sha256", "pcrs": {"0": _digest("pcr0"), "7": _digest("pcr7")}},
            }})),
        (("ci-pipeline",), _statement("appliance/os/1.8.0/appliance-os.img", binary, SLSA_V1, {
            "buildDefinition": {
                "buildType": "https://slsa-framework.github.io/github-actions-buildtypes/workflow/v1",
                "externalParameters": {"workflow": {"ref": "refs/tags/v1.8.0", "repository": "https://github.com/example/appliance-os", "path": ".github/workflows/release.yml"}},
                "resolvedDependencies": [
                    {"uri": "https://firmware.acme.example/acme-bios-2.14.1.bin", "digest": {"sha256": firmware}},
                ]},
            "runDetails": {"builder": {"id": "https://github.com/actions/runner/github-hosted"},
                           "metadata": {"invocationId": "https://github.com/example/appliance-os/actions/runs/1/attempts/1"}}})),
        (("ci-pipeline",), _statement("appliance/os/1.8.0/appliance-os.img", binary, CYCLONEDX, {
            "bomFormat": "CycloneDX", "specVersion": "1.5", "version": 1,
            "components": [{"type": "firmware", "name": "acme-bios", "version": "2.14.1",
                            "hashes": [{"alg": "SHA-256", "content": firmware}]}]})),
    ]


GRANTS = {
    "hardware-vendor": Grant((HARDWARE_PART,), ("acme/*/*/*",)),
    "firmware-vendor": Grant((FIRMWARE_IMAGE,), ("acme/bios/*",)),
    "independent-lab": Grant((FIRMWARE_IMAGE,)),
    "ci-pipeline": Grant(("https://slsa.dev/provenance/*", "https://cyclonedx.org/bom*"), ("appliance/*/*/*",)),
    "deployer": Grant((DEPLOYMENT,), ("appliance/*/*/*",)),
}

#: the PCRs the demo firmware record measures (sha256 bank) and the demo vTPM quotes
DEMO_PCRS = {0: "pcr0", 7: "pcr7"}
DEMO_HOST = "edge-appliance-0042"


def _tpm2b(data: bytes) -> bytes:
    return len(data).to_bytes(2, "big") + data


def demo_tpm_quote(extra_data: bytes, pcrs: dict[int, bytes], *, valid_from: datetime) -> tuple[bytes, bytes]:
    """A TPM 2.0 quote in the ledger's JSON evidence form, by a fresh ECC P-256 attestation key
    certified by a fresh demo vTPM CA; returns (evidence, the CA's PEM).

    Layouts: TPM 2.0 Library Part 2 (TPMT_PUBLIC, TPMS_ATTEST, TPMT_SIGNATURE; big-endian).
    """
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ak = ec.generate_private_key(ec.SECP256R1())

    def cert(cn: str, key: Any, issuer: str, *, ca: bool) -> x509.Certificate:
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(valid_from - timedelta(days=1))
            .not_valid_after(valid_from + timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256())
        )

    ca = cert("Demo vTPM CA", ca_key.public_key(), "Demo vTPM CA", ca=True)
    ak_cert = cert(f"{DEMO_HOST} attestation key", ak.public_key(), "Demo vTPM CA", ca=False)
    nums = ak.public_key().public_numbers()
    # TPMT_PUBLIC: ECC, nameAlg SHA-256, fixedTPM|fixedParent|sensitiveDataOrigin|userWithAuth|
    # restricted|sign; no policy; null symmetric; ECDSA/SHA-256; NIST P-256; null KDF; the point
    ak_public = (
        struct.pack(">HHI", 0x0023, 0x000B, 0x00050072) + _tpm2b(b"")
        + struct.pack(">HHHHH", 0x0010, 0x0018, 0x000B, 0x0003, 0x0010)
        + _tpm2b(nums.x.to_bytes(32, "big")) + _tpm2b(nums.y.to_bytes(32, "big"))
    )
    indexes = sorted(pcrs)
    bitmap = bytearray(3)
    for i in indexes:
        bitmap[i // 8] |= 1 << (i % 8)
    digest = hashlib.sha256(b"".join(pcrs[i] for i in indexes)).digest()
    # TPMS_ATTEST of a quote: magic, type, qualifiedSigner, extraData, clockInfo,
    # firmwareVersion, TPML_PCR_SELECTION (one sha256 bank), pcrDigest
    attest = (
        struct.pack(">IH", 0xFF544347, 0x8018) + _tpm2b(b"\x00\x0b" + hashlib.sha256(ak_public).digest())
        + _tpm2b(extra_data) + struct.pack(">QIIB", int(valid_from.timestamp()) * 1000, 1, 0, 1)
        + struct.pack(">Q", 0x2016051100162800) + struct.pack(">IHB", 1, 0x000B, 3) + bytes(bitmap) + _tpm2b(digest)
    )
    r, s = decode_dss_signature(ak.sign(attest, ec.ECDSA(hashes.SHA256())))
    signature = struct.pack(">HH", 0x0018, 0x000B) + _tpm2b(r.to_bytes(32, "big")) + _tpm2b(s.to_bytes(32, "big"))
    b64 = lambda data: base64.b64encode(data).decode("ascii")  # noqa: E731
    evidence = {
        "format": "provledger-tpm-evidence/v1",
        "ak_public": b64(ak_public),
        "ak_certificate": b64(ak_cert.public_bytes(Encoding.DER)),
        "intermediates": [],
        "quotes": [{"attest": b64(attest), "signature": b64(signature),
                    "pcrs": {"sha256": {str(i): pcrs[i].hex() for i in indexes}}}],
    }
    return json.dumps(evidence, indent=1).encode(), ca.public_bytes(Encoding.PEM)


def deployment(home: Path, binary: str, *, now: int) -> bytes:
    """The OS image's deployment on the demo host, with its bound vTPM quote; writes the demo
    vTPM CA into ``<home>/tee-trust``."""
    nonce = os.urandom(16).hex()
    bound = binding(binary, DEMO_HOST, nonce)[:32]  # TPM extraData: the first 32 bytes
    pcrs = {i: bytes.fromhex(_digest(label)) for i, label in DEMO_PCRS.items()}
    evidence, ca_pem = demo_tpm_quote(bound, pcrs, valid_from=datetime.fromtimestamp(now, UTC))
    trust = home / "tee-trust"
    trust.mkdir(exist_ok=True)
    (trust / "demo-vtpm-ca.pem").write_bytes(ca_pem)
    return _statement("appliance/os/1.8.0/appliance-os.img", binary, DEPLOYMENT, {
        "artifact": {"sha256": binary},
        "host_id": DEMO_HOST,
        "environment": "production/edge",
        "evidence": {"type": "tpm", "encoding": "base64", "data": base64.b64encode(evidence).decode("ascii"),
                     "endorsements": []},
        "nonce": nonce,
    })


#: written into the folder a demo ledger is made in: ``demo`` replaces only a folder that holds it
DEMO_MARKER = ".provledger-demo"
#: what a demo folder made before the marker holds (all of it): replaced too
_DEMO_LAYOUT = {"ledger.db", "log.key", "admin.key", "keys", "tee-trust", "receipts"}


def _clear_home(home: Path) -> None:
    """Make way for a fresh demo ledger in ``home``: remove an earlier demo ledger there, never
    anything else (``--home ~`` must not delete a home folder)."""
    if not home.exists():
        return
    if not home.is_dir():
        raise ConfigurationError(f"--home {home} is a file: give a new or empty folder (default var/demo)")
    names = {p.name for p in home.iterdir()}
    if DEMO_MARKER in names or _DEMO_LAYOUT <= names:
        shutil.rmtree(home)
    elif names:
        raise ConfigurationError(
            f"--home {home} is not empty and is not a demo ledger made by `provledger demo`; the demo replaces "
            "its folder, so give a new or empty one (default var/demo)"
        )


def run_demo(home: Path, *, port: int = 8000, serve_it: bool = True) -> int:
    _clear_home(home)
    os.environ["PROVLEDGER_HOME"] = str(home)
    os.environ.pop("PROVLEDGER_DATABASE_URL", None)
    os.environ["PROVLEDGER_TEE_TRUST_DIR"] = str(home / "tee-trust")
    settings = Settings.from_env()
    log = setup.init_store(settings)
    (home / DEMO_MARKER).write_text("made by `provledger demo`, which replaces this folder when it runs again\n")
    print(f"demo ledger in {home} (SQLite), origin {log.origin}")
    engine = make_engine(settings.database_url)
    sessions = make_session_factory(engine)
    now = int(time.time())
    admin = setup.load_admin_key(settings)
    signers = {name: generate_private_key() for name in GRANTS}
    (home / "keys").mkdir(exist_ok=True)
    for name, key in signers.items():
        registry.add_key(sessions, log, admin, name, key.public_key, [GRANTS[name]], now=now)
        (home / "keys" / f"{name}.pem").write_bytes(key.to_pem())
        (home / "keys" / f"{name}.pem.pub").write_bytes(key.public_key.to_pem())
    # firmware needs its vendor and an independent lab
    registry.set_threshold(sessions, log, admin, FIRMWARE_IMAGE, 2, now=now)
    with sessions() as session, session.begin():
        token = registry.create_token(session, "demo", "submit", now=now)
    records = supply_chain()
    envelopes = [sign_envelope(stmt, IN_TOTO_PAYLOAD_TYPE, [signers[w] for w in who]) for who, stmt in records]
    results = append.append_batch(sessions, [json.dumps(e) for e in envelopes], log, now=now)
    # the deployment comes once the firmware record it is matched against is in the ledger
    binary = json.loads(records[-1][1])["subject"][0]["digest"]["sha256"]
    deployed = sign_envelope(deployment(home, binary, now=now), IN_TOTO_PAYLOAD_TYPE, [signers["deployer"]])
    # the demo vTPM CA goes into the key history too: the trust state decides which TEE roots count
    from cryptography import x509  # noqa: PLC0415
    from cryptography.hazmat.primitives.serialization import Encoding  # noqa: PLC0415

    ca = x509.load_pem_x509_certificate((home / "tee-trust" / "demo-vtpm-ca.pem").read_bytes())
    registry.add_tee_root(sessions, log, admin, "demo vTPM CA", ca.public_bytes(Encoding.DER), now=now)
    if not any(isinstance(r, LedgerError) for r in results):
        results += append.append_batch(sessions, [json.dumps(deployed)], log, now=now)
    receipts_dir = home / "receipts"
    receipts_dir.mkdir(exist_ok=True)
    for result in results:
        if isinstance(result, LedgerError):
            print(f"demo: a record was refused: {result}", file=sys.stderr)
            return 1
        r = result.receipt
        (receipts_dir / f"{r['index']}.json").write_text(json.dumps(r, indent=2))
        verify_receipt(r, log.vkey)
    artifact = "sha256:" + json.loads(records[-1][1])["subject"][0]["digest"]["sha256"]
    with sessions() as session:
        report = audit.audit(session, log)
        trust_problems = verify_trust_state(session, log)
        chain = chain_service.chain(session, artifact)
    engine.dispose()
    # The same audit again, sharded on Celery workers: with no PROVLEDGER_REDIS_URL they run
    # embedded, in this process, through Celery itself.
    from ledger.cli.worker import audit_with_workers  # noqa: PLC0415

    sharded = audit_with_workers(settings, None)
    first = results[0].receipt["index"]  # type: ignore[union-attr]
    print(f"registered {len(signers)} signer keys and a firmware threshold as key events (entries 0..{first - 1})")
    print(f"appended {len(results)} signed records; audit: {'OK' if report.ok and not trust_problems else 'FAILED'} "
          f"({report.tree_size} entries, {report.checkpoints_checked} checkpoints)")
    print(f"audit on the (embedded) Celery workers, every signature re-verified: {'OK' if sharded.ok else 'FAILED'} "
          f"({sharded.tree_size} entries)")
    print(f"chain of {artifact}: {chain['verdict']} over {len(chain['links'])} links, "
          f"root entry {chain['root']['index']} ({chain['root']['kind']})")
    print(f"deployed on {DEMO_HOST}: entry {results[-1].receipt['index']}, its vTPM quote appraised "  # type: ignore[union-attr]
          f"to the demo vTPM CA in {home / 'tee-trust'} and matched to the firmware's PCRs")
    print()
    print("Look around:")
    print("  first:           . .venv/bin/activate   (puts provledger on PATH in this shell)")
    print(f"  open:            http://127.0.0.1:{port}/                      (the auditor overview)")
    print(f"                   http://127.0.0.1:{port}/artifacts/{artifact}  (the chain, drawn)")
    print(f"  receipts:        {receipts_dir}/{first}.json …")
    print(f"  verify offline:  provledger verify-receipt {receipts_dir}/{first}.json --log-key '{log.vkey}'")
    print(f"  chain of trust:  provledger chain {artifact}")
    print(f"                   curl http://127.0.0.1:{port}/api/v1/artifacts/{artifact}/chain")
    print(f"  API:             curl http://127.0.0.1:{port}/api/v1/checkpoint")
    print(f"                   curl http://127.0.0.1:{port}/api/v1/entries/{first}")
    print("  audits:          provledger audit                    (leaves, chain, tree, checkpoints; every cache rebuilt)")
    print("                   provledger audit --hashes           (the hash level alone: the quick check of the bytes)")
    print("                   provledger audit --signatures       (all that and every signature, on every core)")
    print("  workers:         provledger worker --concurrency 2   (with PROVLEDGER_REDIS_URL set; README: Scaling out)")
    print("                   provledger audit --workers          (the signature audit, sharded on the workers)")
    print(f"  submit token:    {token}")
    print(f"  environment:     export PROVLEDGER_HOME={home.resolve()}")
    if not serve_it:
        return 0
    from web.server import serve  # noqa: PLC0415

    print()
    return serve(settings, host="127.0.0.1", port=port)
