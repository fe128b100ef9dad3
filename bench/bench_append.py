"""Local batched append of pre-signed envelopes (issue 2).

Every signature is checked (the bulk importer spreads checks over a process pool), and every
batch persists its entries, hash chain, interior hashes and a signed checkpoint in one
transaction. Prints entries/s into SQLite and PostgreSQL and the ratio to the raw PyNaCl
verification rate measured in the same run (one core, the same envelopes).

Targets: >= 10,000 entries/s into SQLite, >= 4,000 entries/s into PostgreSQL.

    .venv/bin/python bench/bench_append.py [--entries 200000] [--workers 2] [--backends sqlite,postgres]
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import fresh_store, machine, median, new_key, postgres_available, register, signed_envelopes  # noqa: E402
from ledger.records.dsse import pae  # noqa: E402
from ledger.services.audit import audit  # noqa: E402
from ledger.services.bulk import import_envelopes  # noqa: E402


def raw_verify_rate(envelopes: list[bytes], key) -> float:
    """PyNaCl verifications per second on one core, over the envelopes' PAE bytes."""
    import nacl.signing  # noqa: PLC0415

    vk = nacl.signing.VerifyKey(key.public_key.spki_der[-32:])
    items = []
    for raw in envelopes[: min(len(envelopes), 20000)]:
        doc = json.loads(raw)
        items.append((pae(doc["payloadType"], base64.b64decode(doc["payload"])), base64.b64decode(doc["signatures"][0]["sig"])))
    rates = []
    for _ in range(3):
        t = time.perf_counter()
        for message, sig in items:
            vk.verify(message, sig)
        rates.append(len(items) / (time.perf_counter() - t))
    return median(rates)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=200_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch", type=int, default=2000)
    ap.add_argument("--backends", default="sqlite,postgres")
    args = ap.parse_args()
    print(f"machine: {machine()}")
    key = new_key()
    t = time.perf_counter()
    envelopes = signed_envelopes(key, args.entries)
    print(f"pre-signed {len(envelopes)} envelopes ({len(envelopes[0])} bytes each) in {time.perf_counter() - t:.1f} s")
    raw = raw_verify_rate(envelopes, key)
    print(f"raw PyNaCl verify rate (1 core): {raw:,.0f}/s")
    print()
    print(f"{'backend':10} {'entries':>9} {'workers':>7} {'entries/s':>11} {'vs raw verify':>13} {'target':>8}  audit")
    targets = {"sqlite": 10_000, "postgres": 4_000}
    for backend in args.backends.split(","):
        if backend == "postgres" and not postgres_available():
            print(f"{backend:10} skipped: PostgreSQL unreachable")
            continue
        with fresh_store(backend) as store:
            register(store, key)
            t = time.perf_counter()
            summary = import_envelopes(store.sessions, envelopes, store.log, workers=args.workers, batch_size=args.batch)
            rate = summary.created / (time.perf_counter() - t)
            with store.sessions() as session:
                ok = audit(session, store.log).ok
            assert summary.created == len(envelopes), summary
            print(
                f"{backend:10} {summary.created:>9} {args.workers:>7} {rate:>11,.0f} {rate / raw:>12.2f}x "
                f"{'PASS' if rate >= targets[backend] else 'FAIL':>8}  {'ok' if ok else 'FAILED'}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
