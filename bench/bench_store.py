"""Proofs from the store and the hash-level audit, on a ledger of 1,000,000 signed entries.

Targets (issue 2): inclusion and consistency proofs median <= 1 ms; hash-level audit
>= 300,000 entries/s in one process, memory flat in n (peak RSS printed at two sizes).

The SQLite ledger is built once under var/bench/ (a few minutes) and reused.

    .venv/bin/python bench/bench_store.py [--entries 1000000] [--small 100000]
"""

from __future__ import annotations

import argparse
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import hashing_floor_passes, machine, median, persistent_sqlite_ledger  # noqa: E402
from ledger.db import store as db  # noqa: E402
from ledger.services import receipts  # noqa: E402
from ledger.services.audit import audit  # noqa: E402


def proof_latencies(bs, samples: int = 2000) -> tuple[float, float, float]:
    rng = random.Random(7)
    with bs.sessions() as session:
        size = db.current_size(session)
        inc, con, rec = [], [], []
        for _ in range(samples):
            index = rng.randrange(size)
            t = time.perf_counter()
            receipts.inclusion_proof(session, index, size)
            inc.append(time.perf_counter() - t)
            old = rng.randrange(1, size)
            t = time.perf_counter()
            receipts.consistency_proof(session, old, size)
            con.append(time.perf_counter() - t)
        for _ in range(samples // 4):
            t = time.perf_counter()
            receipts.receipt(session, rng.randrange(size))
            rec.append(time.perf_counter() - t)
    return median(inc) * 1e3, median(con) * 1e3, median(rec) * 1e3


def audit_run(n: int) -> None:
    """Child mode: audit the ledger of n entries, print rate and peak RSS."""
    with persistent_sqlite_ledger(n) as bs, bs.sessions() as session:
        t = time.perf_counter()
        report = audit(session, bs.log)
        dt = time.perf_counter() - t
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{n} {report.tree_size / dt:.0f} {rss:.1f} {report.ok}")


def audit_in_child(n: int) -> tuple[float, float, bool]:
    out = subprocess.run([sys.executable, __file__, "--audit-child", str(n)], capture_output=True, text=True, check=True)
    _, rate, rss, ok = out.stdout.split()
    return float(rate), float(rss), ok == "True"


def hashing_floor(n: int) -> float:
    """Entries/s of the bare hashing an audit cannot avoid — per entry one leaf hash over its
    stored bytes, one chain link and (on average) one interior node — in a plain loop over data
    already in memory: no database, no comparisons."""
    with persistent_sqlite_ledger(n) as bs, bs.sessions() as session:
        rows = [r for chunk in db.stream_chunks(session, "entries", ("idx", "data", "leaf_hash")) for r in chunk][:n]
    return median(hashing_floor_passes(rows, 3))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--entries", type=int, default=1_000_000)
    ap.add_argument("--small", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--audit-child", type=int)
    args = ap.parse_args()
    if args.audit_child:
        audit_run(args.audit_child)
        return 0
    print(f"machine: {machine()}")
    for n in (args.small, args.entries):
        with persistent_sqlite_ledger(n):
            pass  # build outside the timings
    with persistent_sqlite_ledger(args.entries) as bs:
        inc, con, rec = proof_latencies(bs)
    print(f"\nproofs from the store at {args.entries:,} entries (SQLite), median of 2000:")
    print(f"  inclusion proof   {inc:.3f} ms   {'PASS' if inc <= 1 else 'FAIL'} (<= 1 ms)")
    print(f"  consistency proof {con:.3f} ms   {'PASS' if con <= 1 else 'FAIL'} (<= 1 ms)")
    print(f"  full receipt      {rec:.3f} ms   (proof + entry + signed checkpoint)")
    floor = hashing_floor(args.small)
    print(f"\nhashing floor (3 SHA-256 per entry over the same stored bytes, plain loop, no I/O): {floor:,.0f} entries/s")
    print(f"\nhash-level audit, one process (median of {args.runs} runs, each in a fresh process):")
    for n in (args.small, args.entries):
        runs = [audit_in_child(n) for _ in range(args.runs)]
        rate = median([r[0] for r in runs])
        rss = max(r[1] for r in runs)
        ok = all(r[2] for r in runs)
        print(f"  {n:>9,} entries: {rate:>10,.0f} entries/s  peak RSS {rss:6.1f} MiB  audit {'ok' if ok else 'FAILED'}"
              f"  {rate / floor:.2f}x the hashing floor  {'PASS' if rate >= 300_000 else 'FAIL'} (>= 300,000/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
