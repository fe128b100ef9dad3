"""Batch pacing (``PROVLEDGER_PACE_BATCHES``, ``ledger.services.sequencer.Sequencer.pace``) on and
off, back to back: POST /api/v1/entries/batch, 4 connections, batches of 200, against a real
``provledger serve`` on SQLite, in the two cases the setting's default (``auto``) decides between:

* ``sqlite-2`` — 2 server processes (the default on 2 cores: pacing on);
* ``sqlite-1`` — 1 server process (``--workers 1``: pacing off).

(On PostgreSQL the sequencer never paces: the database server does the writes.)

Each case is one fresh ledger; each pair starts the server twice on it, pacing on then off (the
order alternates from pair to pair, as the ledger grows), and times ``--entries`` entries each.
Printed: entries/s per run, the medians, and the median of the per-pair ratios on / off. Seven
pairs by default: runs of the same code, back to back, differed by 0.84-1.18x within a pair on
the fourteenth round's host (README, Performance), so three pairs cannot show a few per cent.

    .venv/bin/python bench/bench_pacing.py [CASE ...] [--entries 10000] [--pairs 7]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import fresh_store, machine, median, new_key, register, signed_envelopes  # noqa: E402
from bench.bench_ingest import Server, batch_ingest  # noqa: E402
from ledger.services import registry  # noqa: E402

CASES = {"sqlite-2": 2, "sqlite-1": 1}
BATCH = 200


def run_case(name: str, args: argparse.Namespace) -> None:
    workers = CASES[name]
    key = new_key()
    per_run = args.entries // BATCH
    envelopes = signed_envelopes(key, 2 * args.pairs * (args.entries + 2 * BATCH))
    bodies = [b'{"envelopes":[' + b",".join(envelopes[i : i + BATCH]) + b"]}" for i in range(0, len(envelopes), BATCH)]
    rates: dict[str, list[float]] = {"on": [], "off": []}
    with fresh_store("sqlite") as st:
        register(st, key)
        with st.sessions() as session, session.begin():
            token = registry.create_token(session, "bench-pacing", "submit", now=int(time.time()))
        print(f"{name}: SQLite, {workers} server process(es), {args.entries:,} entries a run; "
              f"load average {' / '.join(f'{x:.2f}' for x in os.getloadavg())}")
        position = 0
        for pair in range(args.pairs):
            for setting in ("on", "off") if pair % 2 == 0 else ("off", "on"):
                server = Server(str(st.settings.home), workers, 16, {"PROVLEDGER_PACE_BATCHES": setting})
                try:
                    batch_ingest(server.port, token, bodies[position : position + 2], 2)  # warm up
                    chunk = bodies[position + 2 : position + 2 + per_run]
                    position += 2 + per_run
                    rate, created = batch_ingest(server.port, token, chunk, 4)
                finally:
                    server.stop()
                if created != len(chunk) * BATCH:
                    raise SystemExit(f"{name}: {created} of {len(chunk) * BATCH} entries were created")
                rates[setting].append(rate)
                print(f"  pair {pair + 1}, pacing {setting}: {rate:,.0f} entries/s")
    ratio = median([on / off for on, off in zip(rates["on"], rates["off"], strict=True)])
    print(f"  {name}: pacing on {median(rates['on']):,.0f}/s, off {median(rates['off']):,.0f}/s (medians); "
          f"on / off {ratio:.2f}x (median of {args.pairs} pairs)\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cases", nargs="*", metavar="CASE", help="default: all, in this order: " + " ".join(CASES))
    ap.add_argument("--entries", type=int, default=10_000, help="entries per run (a multiple of 200)")
    ap.add_argument("--pairs", type=int, default=7, help="on/off pairs per case (default 7: the route is noisy)")
    args = ap.parse_args()
    if args.entries <= 0 or args.entries % BATCH or args.pairs < 1:
        ap.error("--entries must be a positive multiple of 200 and --pairs at least 1")
    unknown = [c for c in args.cases if c not in CASES]
    if unknown:
        ap.error(f"unknown case {unknown[0]!r}; the cases are {', '.join(CASES)}")
    print(f"machine: {machine()}\n")
    for name in args.cases or CASES:
        run_case(name, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
