"""/healthz latency on a real `provledger serve` while 100 connections stall.

Starts `provledger serve` (SQLite, a fresh home) on a free localhost port, times /healthz
idle, then opens 50 connections that stall in their headers and 50 uploads that stall
mid-body (valid token), and times /healthz and a signed submission again. Target: /healthz
p95 under 1 s with the stalls open; the ratio to the idle figure says what the stalls cost.

    .venv/bin/python -m bench.bench_slow_clients [--rounds 50] [--stalls 100]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench._common import machine  # noqa: E402
from ledger.config import Settings  # noqa: E402
from ledger.db.engine import make_engine, make_session_factory  # noqa: E402
from ledger.services import registry, setup  # noqa: E402
from tests.web.slow_clients import request, running_server, stalled_header, stalled_upload  # noqa: E402

PROVLEDGER = str(Path(sys.executable).with_name("provledger"))
TARGET_S = 1.0


def timed(port: int, rounds: int) -> list[float]:
    out = []
    for _ in range(rounds):
        started = time.perf_counter()
        status, _ = request(port, "GET", "/healthz", timeout=30)
        out.append(time.perf_counter() - started)
        assert status == 200, status
    return out


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--stalls", type=int, default=100)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="provledger-bench-slow-")) / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROVLEDGER_")}
    env.update(PROVLEDGER_HOME=str(home), PROVLEDGER_READ_TIMEOUT="300", PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    settings = Settings.from_env(env)
    engine = make_engine(settings.database_url)
    setup.init_store(settings, engine)
    with make_session_factory(engine)() as session, session.begin():
        token = registry.create_token(session, "bench", "submit", now=int(time.time()))
    engine.dispose()
    print(f"machine: {machine()}")
    with running_server(PROVLEDGER, env, home.parent / "serve.log") as port:
        idle = timed(port, args.rounds)
        started = time.perf_counter()
        half = args.stalls // 2
        stalled = [stalled_header(port) for _ in range(half)] + [stalled_upload(port, token) for _ in range(args.stalls - half)]
        opened = time.perf_counter() - started
        try:
            loaded = timed(port, args.rounds)
        finally:
            for s in stalled:
                s.close()
    print(f"{args.stalls} stalled connections opened in {opened * 1000:.0f} ms ({half} in headers, {args.stalls - half} mid-upload)")
    print(f"/healthz idle:    p50 {statistics.median(idle) * 1000:7.1f} ms  p95 {p95(idle) * 1000:7.1f} ms")
    print(f"/healthz stalled: p50 {statistics.median(loaded) * 1000:7.1f} ms  p95 {p95(loaded) * 1000:7.1f} ms  max {max(loaded) * 1000:.1f} ms")
    print(f"ratio stalled/idle p95: {p95(loaded) / p95(idle):.2f}x; target p95 < {TARGET_S:.0f} s: {'met' if p95(loaded) < TARGET_S else 'MISSED'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
