"""Issue 16's single row at several offered rates: up to what rate its latencies hold, and what each
request costs in CPU (README, Performance).

Against a real ``provledger serve`` on SQLite with its default worker count (one per core) and 16
threads a process, as ``bench/bench_issue16.py single`` runs it: per offered rate, ``--runs``
open-loop runs of ``--seconds`` each (50 clients, latency from each request's scheduled time),
each printing p50, p99, errors and the achieved rate, and from ``/proc``:

* the server's CPU a request, user time and user + kernel time, over its processes;
* the load generator's CPU a request (this process, ``getrusage``);
* how busy the whole machine was (``/proc/stat``: every core, the kernel's share apart).

    .venv/bin/python bench/bench_single_capacity.py [--rates 100,200,250,300,500] [--runs 2] [--seconds 8]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import machine  # noqa: E402
from bench.bench_ingest import Server, single_open_loop  # noqa: E402
from bench.bench_issue16 import _TEMP, _http_ledger, _sign  # noqa: E402

TARGET_P50, TARGET_P99 = 0.010, 0.050
CLIENTS = 50


def _server_cpu(root: int) -> tuple[float, float]:
    """(user, user + system) seconds of ``root`` and its children (the serving processes)."""
    pids = [root]
    for task in Path(f"/proc/{root}/task").iterdir():
        children = task / "children"
        if children.exists():
            pids += [int(p) for p in children.read_text().split()]
    user = total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        user += int(fields[11]) / tick
        total += (int(fields[11]) + int(fields[12])) / tick
    return user, total


def _machine_ticks() -> tuple[int, int, int]:
    """(busy, kernel, all) jiffies over every core, from /proc/stat's first line."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    user, nice, system, idle, iowait, irq, softirq = values[:7]
    steal = values[7] if len(values) > 7 else 0
    kernel = system + irq + softirq
    return user + nice + kernel + steal, kernel, sum(values[:8])


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rates", default="100,200,250,300,500", help="offered rates, requests/s, comma-separated")
    ap.add_argument("--runs", type=int, default=2, help="runs per rate")
    ap.add_argument("--seconds", type=float, default=8.0, help="length of each run")
    ap.add_argument("--threads", type=int, default=16, help="server threads per worker")
    args = ap.parse_args()
    try:
        rates = [float(r) for r in args.rates.split(",") if r.strip()]
    except ValueError:
        ap.error("--rates takes numbers separated by commas, such as 100,200,500")
    if not rates or min(rates) <= 0 or args.runs < 1 or args.seconds <= 0:
        ap.error("--rates must be positive, --runs at least 1 and --seconds positive")
    print(f"machine: {machine()}")
    home, token, key = _http_ledger()
    need = sum(int(r * args.seconds) for r in rates) * args.runs + 300
    bodies = _sign(key, need, "c")
    server = Server(home, None, args.threads)
    print(f"server: `provledger serve`, {server.workers} processes of {args.threads} threads, SQLite; {CLIENTS} clients, open loop\n")
    print("| offered | p50 | p99 | errors | achieved | server CPU a request (user; with kernel) | load generator | machine busy (kernel) |")
    print("|---|---|---|---|---|---|---|---|")
    held: list[float] = []
    try:
        single_open_loop(server.port, token, bodies[:300], 100.0, 10, 3.0)  # warm up every worker
        position = 300
        for rate in rates:
            for _ in range(args.runs):
                chunk = bodies[position : position + int(rate * args.seconds)]
                position += len(chunk)
                user0, total0 = _server_cpu(server.proc.pid)
                own0, (busy0, kernel0, all0) = _own_cpu(), _machine_ticks()
                res = single_open_loop(server.port, token, chunk, rate, CLIENTS, args.seconds)
                user1, total1 = _server_cpu(server.proc.pid)
                own1, (busy1, kernel1, all1) = _own_cpu(), _machine_ticks()
                n = max(res["sent"], 1)
                span = max(all1 - all0, 1)
                met = res["p50"] <= TARGET_P50 and res["p99"] <= TARGET_P99 and res["errors"] == 0
                if met:
                    held.append(rate)
                print(f"| {rate:,.0f}/s | {res['p50'] * 1e3:.1f} ms | {res['p99'] * 1e3:.1f} ms | {res['errors']} | "
                      f"{res['achieved']:,.0f}/s | {(user1 - user0) / n * 1e3:.2f}; {(total1 - total0) / n * 1e3:.2f} ms | "
                      f"{(own1 - own0) / n * 1e3:.2f} ms | {(busy1 - busy0) / span:.0%} ({(kernel1 - kernel0) / span:.0%}) |",
                      flush=True)
    finally:
        server.stop()
        for folder in _TEMP:
            shutil.rmtree(folder, ignore_errors=True)
    print(f"\nruns within p50 <= 10 ms, p99 <= 50 ms, no errors: at {', '.join(f'{r:,.0f}' for r in sorted(set(held))) or 'no rate'} req/s"
          f" (load average {' / '.join(f'{x:.2f}' for x in os.getloadavg())})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
