"""Verdict bundles (issue 13): a chain of 20 links over a ledger with 1,000 key events.

The ledger is built through the real append path on SQLite: 1,000 administrator key events
(registrations with grants, re-affirmations, thresholds, revocations of unrelated keys), then a
chain of 20 links (a hardware part, a firmware image on it, and 18 builds, each built from the
one below). The bundle of the top build therefore holds 20 records and the whole key history,
each with its inclusion proof.

Measured: the bundle's size (JSON bytes), the time to build it from the store, and the time to
verify it offline (``ledger.trust.bundle_verify.verify_verdict_bundle``: parse, checkpoint,
trust head, every inclusion proof and signature, key-history completeness, the fold and the
chain verdict), median of --repeat runs, warm.

Targets: bundle <= 2 MB (2,000,000 bytes); offline verification <= 1 s on this machine. Where the
bytes go: a key event is a DSSE envelope whose payload is base64 inside a leaf that the bundle
carries as base64 (~1.4 KB for a registration: the key id appears once, as the subject digest; no
keyid hint; leaf signers without key ids), plus its own 10-hash inclusion proof (~0.47 KB at this
tree size): about 1.9 KB each (gzip on the wire: ~0.4 KB).

    .venv/bin/python bench/bench_bundle.py [--key-events 1000] [--links 20] [--repeat 7]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import fresh_store, machine, median  # noqa: E402
from ledger.records.dsse import sign_envelope  # noqa: E402
from ledger.records.keys import generate_private_key  # noqa: E402
from ledger.records.statement import IN_TOTO_PAYLOAD_TYPE, STATEMENT_V1  # noqa: E402
from ledger.services import registry, setup  # noqa: E402
from ledger.services.append import append_batch  # noqa: E402
from ledger.services.verdict_bundles import build_verdict_bundle  # noqa: E402
from ledger.trust.bundle import format_verdict_bundle  # noqa: E402
from ledger.trust.bundle_verify import verify_verdict_bundle  # noqa: E402
from ledger.trust.policy import Grant  # noqa: E402
from ledger.trust.predicates import FIRMWARE_IMAGE, HARDWARE_PART, SLSA_V1  # noqa: E402

T0 = 1_760_000_000


def _statement(name: str, digest: str, predicate_type: str, predicate: dict) -> bytes:  # type: ignore[type-arg]
    return json.dumps({"_type": STATEMENT_V1, "subject": [{"name": name, "digest": {"sha256": digest}}],
                       "predicateType": predicate_type, "predicate": predicate}, indent=1).encode()


def _digest(label: str) -> str:
    import hashlib  # noqa: PLC0415

    return hashlib.sha256(label.encode()).hexdigest()


def build_ledger(store, key_events: int, links: int) -> str:  # type: ignore[no-untyped-def]
    """Returns the top artifact's digest."""
    admin = setup.load_admin_key(store.settings)
    clock = T0
    signer = generate_private_key()
    registry.add_key(store.sessions, store.log, admin, "acme", signer.public_key,
                     [Grant((HARDWARE_PART, FIRMWARE_IMAGE, SLSA_V1), review_by=T0 + 10**8)], now=clock)
    made, others = 1, []
    while made < key_events:
        clock += 1
        kind = made % 10
        if kind < 5 or not others:  # registrations: the bulk of a real key history
            key = generate_private_key()
            grant = Grant((f"https://example.com/predicate/{made}/*",), subjects=(f"team-{made}/*",), review_by=T0 + 10**7)
            registry.add_key(store.sessions, store.log, admin, f"team-{made}", key.public_key, [grant], now=clock)
            others.append(key)
        elif kind < 8:
            registry.reaffirm_key(store.sessions, store.log, admin, others[made % len(others)].key_id, review_by=T0 + 10**7 + made, now=clock)
        elif kind == 8:
            registry.set_threshold(store.sessions, store.log, admin, f"https://example.com/predicate/{made}/*", 2, now=clock)
        else:
            victim = others.pop(0)
            registry.revoke_key(store.sessions, store.log, admin, victim.key_id, now=clock, compromised_since=clock - 5)
        made += 1
        if made % 200 == 0:
            print(f"  {made} key events", file=sys.stderr, flush=True)
    hw = _digest("chip")
    records = [_statement("acme/chip", hw, HARDWARE_PART, {
        "manufacturer": "ACME", "model": "RC-2000", "part_number": "RC2K", "serial": "1",
        "manufactured": {"date": "2026-03-14", "site": "Penang, MY"}, "children": []})]
    fw = _digest("bios")
    records.append(_statement("acme/bios", fw, FIRMWARE_IMAGE, {
        "vendor": "ACME", "name": "bios", "version": "2.14.1", "security_version": 7, "targets": ["RC-2000"],
        "hardware": [{"digest": {"sha256": hw}}], "measurements": {"sev-snp": "ab" * 48}}))
    below = fw
    for i in range(links - 2):
        d = _digest(f"build-{i}")
        records.append(_statement(f"acme/build-{i}", d, SLSA_V1, {
            "buildDefinition": {"buildType": "https://ci.example/t", "externalParameters": {},
                                "resolvedDependencies": [{"uri": f"dep-{i}", "digest": {"sha256": below}}]},
            "runDetails": {"builder": {"id": "https://ci.example"}}}))
        below = d
    for record in records:
        clock += 1
        (result,) = append_batch(store.sessions, [json.dumps(sign_envelope(record, IN_TOTO_PAYLOAD_TYPE, [signer]))],
                                 store.log, now=clock)
        assert not isinstance(result, Exception), result
    return f"sha256:{below}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--key-events", type=int, default=1000)
    parser.add_argument("--links", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    with fresh_store("sqlite") as store:
        start = time.perf_counter()
        artifact = build_ledger(store, args.key_events, args.links)
        print(f"built the ledger ({args.key_events} key events, {args.links} links) in {time.perf_counter() - start:.1f} s")
        builds = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            with store.sessions() as session:
                bundle = build_verdict_bundle(session, store.log, artifact)
            builds.append(time.perf_counter() - t)
        raw = json.dumps(format_verdict_bundle(bundle), separators=(",", ":")).encode()
        verifies, cpu = [], []
        for _ in range(args.repeat):
            t, c = time.perf_counter(), time.process_time()
            result = verify_verdict_bundle(raw, artifact, store.log.vkey, now=T0 + 10**6)
            verifies.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
        assert result.verdict == "trusted", result.chain["weakest_link"]
        links = len(result.chain["links"])
        size = len(raw)
        verify_s = median(verifies)
        print()
        print(f"{'figure':<44}{'value':>14}{'target':>12}{'ratio':>9}")
        print(f"{'links in the chain':<44}{links:>14}")
        print(f"{'entries in the bundle':<44}{result.entries:>14}")
        print(f"{'key events in the bundle':<44}{len(result.key_events):>14}")
        print(f"{'bundle size (bytes)':<44}{size:>14,}{2_000_000:>12,}{size / 2_000_000:>9.2f}")
        print(f"{'bundle size gzip -6 (bytes, HTTP transfer)':<44}{len(gzip.compress(raw, 6)):>14,}")
        print(f"{'bytes per entry':<44}{size // result.entries:>14,}")
        print(f"{'build from the store, median (ms)':<44}{median(builds) * 1000:>14.1f}")
        print(f"{'offline verification, median (ms)':<44}{verify_s * 1000:>14.1f}{1000:>12}{verify_s:>9.2f}")
        print(f"{'offline verification CPU time, median (ms)':<44}{median(cpu) * 1000:>14.1f}{1000:>12}{median(cpu):>9.2f}")
        print(f"{'load average (1 min) during the run':<44}{os.getloadavg()[0]:>14.2f}")
        print(f"{'offline verification per entry (us)':<44}{verify_s / result.entries * 1e6:>14.1f}")
        print(f"verdict: {result.verdict}; size {'PASS' if size <= 2_000_000 else 'FAIL'} (<= 2 MB), "
              f"offline verification {'PASS' if verify_s <= 1.0 else 'FAIL'} (<= 1 s wall; CPU {median(cpu):.2f} s)")


if __name__ == "__main__":
    main()
