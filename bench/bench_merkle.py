"""Benchmark of the Merkle core (a benchmark, not a test: it prints figures and ratios).

(a) ``ledger.merkle.root`` over 1,000,000 leaf hashes against the bare-hashlib floor: the same
    n-1 interior hashes, ``sha256(b"\\x01" + left + right).digest()``, level by level in the
    plainest Python loop. Target: ledger / floor <= 1.25.
(b) Hashing 1,000,000 entries of 100 bytes and computing the root, with ``ledger.merkle`` and with
    pymerkle 7's ``InmemoryTree`` (its defaults prefix 0x00/0x01, i.e. RFC 6962/9162; the two
    roots are compared and the result printed). Target: pymerkle / ledger >= 8.

Run from the repository root: ``.venv/bin/python bench/bench_merkle.py [--leaves N] [--runs R]
[--pymerkle-runs P]``.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ledger import merkle  # noqa: E402

ROOT_TARGET = 1.25  # ledger.merkle.root may cost at most this much more than the floor
PEER_TARGET = 8.0  # pymerkle should take at least this many times as long as ledger.merkle
ENTRY_BYTES = 100


def floor_root(leaf_hashes: list[bytes]) -> bytes:
    """The bare-hashlib floor: n-1 node hashes, level by level, in the plainest loop.

    A last odd node moves up a level unchanged, which is RFC 9162's split at the largest power of
    two below n (the root is checked against ledger.merkle.root below).
    """
    sha256 = hashlib.sha256
    level = leaf_hashes
    while len(level) > 1:
        parents = []
        for i in range(0, len(level) - 1, 2):
            parents.append(sha256(b"\x01" + level[i] + level[i + 1]).digest())
        if len(level) % 2:
            parents.append(level[-1])
        level = parents
    return level[0]


def ledger_entries_root(entries: list[bytes]) -> bytes:
    leaf_hash = merkle.leaf_hash
    return merkle.root([leaf_hash(entry) for entry in entries])


def pymerkle_entries_root(entries: list[bytes]) -> bytes:
    from pymerkle import InmemoryTree

    tree = InmemoryTree(algorithm="sha256")
    for entry in entries:
        tree.append_entry(entry)
    # get_root, not get_state: pymerkle 7.0.0 deprecates get_state as an alias of get_root.
    return tree.get_root()


def timed(fn: Callable[..., Any], *args: Any) -> tuple[float, Any]:
    gc.collect()
    start = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - start, result


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--leaves", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5, help="runs per figure (median taken)")
    parser.add_argument(
        "--pymerkle-runs", type=int, default=1, help="pymerkle is slow: runs of it (default 1)"
    )
    args = parser.parse_args()
    n, runs = args.leaves, max(1, args.runs)

    print("Merkle benchmark")
    print(f"  machine : {platform.platform()}; {cpu_model()}; {os.cpu_count()} CPUs")
    print(f"  python  : {platform.python_implementation()} {platform.python_version()}")
    print(f"  sizes   : {n:,} leaves; {ENTRY_BYTES}-byte entries in (b); median of {runs} runs")
    print()

    # (a) root over leaf hashes vs the floor. Runs alternate so drift hits both sides alike.
    leaf_hashes = [merkle.leaf_hash(i.to_bytes(8, "big")) for i in range(n)]
    ledger_times, floor_times = [], []
    ledger_root = floor_value = b""
    for _ in range(runs):
        seconds, ledger_root = timed(merkle.root, leaf_hashes)
        ledger_times.append(seconds)
        seconds, floor_value = timed(floor_root, leaf_hashes)
        floor_times.append(seconds)
    if ledger_root != floor_value:
        print("ERROR: ledger.merkle.root and the floor disagree", file=sys.stderr)
        return 1
    ledger_a, floor_a = statistics.median(ledger_times), statistics.median(floor_times)
    ratio_a = ledger_a / floor_a

    # (b) entries -> root: ledger.merkle vs pymerkle InmemoryTree.
    entries = [i.to_bytes(8, "big") * (ENTRY_BYTES // 8) + bytes(ENTRY_BYTES % 8) for i in range(n)]
    ledger_b_times = []
    ledger_b_root = b""
    for _ in range(runs):
        seconds, ledger_b_root = timed(ledger_entries_root, entries)
        ledger_b_times.append(seconds)
    peer_times = []
    peer_root = b""
    for _ in range(max(1, args.pymerkle_runs)):
        seconds, peer_root = timed(pymerkle_entries_root, entries)
        peer_times.append(seconds)
    ledger_b, peer_b = statistics.median(ledger_b_times), statistics.median(peer_times)
    ratio_b = peer_b / ledger_b
    roots_agree = peer_root == ledger_b_root

    width = 68
    print(f"{'figure':<{width}} {'seconds':>9}")
    print("-" * (width + 10))
    print(f"{'(a) ledger.merkle.root, leaf hashes -> root':<{width}} {ledger_a:>9.3f}")
    print(
        f"{'(a) floor: plain loop of sha256(0x01||l||r), level by level':<{width}} {floor_a:>9.3f}"
    )
    print(f"{'(b) ledger.merkle: leaf_hash x n, then root':<{width}} {ledger_b:>9.3f}")
    label = f"(b) pymerkle 7 InmemoryTree.append_entry x n, get_root [{len(peer_times)} run(s)]"
    print(f"{label:<{width}} {peer_b:>9.3f}")
    print()
    print(f"{'ratio':<{width}} {'value':>9}  target")
    print("-" * (width + 20))
    ok_a, ok_b = verdict(ratio_a <= ROOT_TARGET), verdict(ratio_b >= PEER_TARGET)
    print(f"{'(a) ledger / floor':<{width}} {ratio_a:>8.3f}x  <= {ROOT_TARGET}x  {ok_a}")
    print(f"{'(b) pymerkle / ledger':<{width}} {ratio_b:>8.2f}x  >= {PEER_TARGET}x  {ok_b}")
    print()
    print(f"root (a): {ledger_root.hex()} (ledger == floor)")
    print(f"root (b): {ledger_b_root.hex()} (pymerkle {'agrees' if roots_agree else 'DISAGREES'})")
    if len(peer_times) == 1:
        print(f"note: pymerkle ran once on {n:,} entries (it is slow); ledger: median of {runs}.")
    if ratio_a > ROOT_TARGET:
        print(
            "note: (a) missed its target. Measured: ledger.merkle.root(leaf_hashes), one call\n"
            "      over a list of 32-byte hashes, against floor_root() above (a for-loop with\n"
            "      index arithmetic appending sha256(b'\\x01' + l + r).digest() per pair, the\n"
            "      odd last node carried up a level)."
        )
    if not roots_agree:
        print("ERROR: pymerkle and ledger.merkle computed different roots", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
