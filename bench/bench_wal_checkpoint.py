"""Integrate and commit as the SQLite ledger grows, with the WAL copied back every
``SQLITE_WAL_AUTOCHECKPOINT`` pages (the ledger's setting) against SQLite's default of 1,000.

Each run builds two fresh ledgers from the same prepared envelopes (signatures already
checked: only the sequencer's part is timed) and appends them in groups of ``--group``, one
transaction and checkpoint each, single-threaded; per stage of ``--stage`` entries it prints µs an
entry for both settings and their ratio, measured in the same run. The order of the two
settings alternates between runs; the medians over the runs are printed last.

    .venv/bin/python bench/bench_wal_checkpoint.py [--entries 100000] [--stage 20000] [--group 200] [--runs 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import event  # noqa: E402

from bench._common import fresh_store, machine, median, new_key, register, signed_envelopes  # noqa: E402
from ledger.db.engine import SQLITE_WAL_AUTOCHECKPOINT  # noqa: E402
from ledger.services.append import integrate, prepare_envelopes  # noqa: E402
from ledger.services.trust import load_keys  # noqa: E402

SQLITE_DEFAULT = 1000


def stages(pages: int, envelopes: list[bytes], key: object, args: argparse.Namespace) -> list[float]:
    """µs an entry for integrate + commit, per stage, on a fresh ledger copying back every ``pages``."""
    with fresh_store("sqlite") as st:
        if pages != SQLITE_WAL_AUTOCHECKPOINT:

            @event.listens_for(st.engine, "connect")
            def _pages(dbapi_connection, _record):  # type: ignore[no-untyped-def]  # after the ledger's own
                dbapi_connection.execute(f"PRAGMA wal_autocheckpoint={pages}")

            st.engine.dispose()  # connections opened before the listener reconnect with it
        register(st, key)
        now = int(time.time())
        with st.sessions() as session:
            keys = load_keys(session)
        prepared = prepare_envelopes(envelopes, keys, now=now, everything=lambda: keys)
        assert all(not isinstance(p, Exception) for p in prepared), next(p for p in prepared if isinstance(p, Exception))
        with st.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == pages
        out, spent = [], 0.0
        for start in range(0, len(prepared), args.group):
            t = time.perf_counter()
            with st.sessions() as session, session.begin():
                integrate(session, prepared[start : start + args.group], st.log, now=now)
            spent += time.perf_counter() - t
            if (start + args.group) % args.stage == 0:
                out.append(spent / args.stage * 1e6)
                spent = 0.0
        return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=100_000)
    ap.add_argument("--stage", type=int, default=20_000)
    ap.add_argument("--group", type=int, default=200)
    ap.add_argument("--runs", type=int, default=2)
    args = ap.parse_args()
    if args.entries % args.stage or args.stage % args.group:
        ap.error("--entries must be a multiple of --stage, and --stage of --group")
    print(f"machine: {machine()}")
    key = new_key()
    envelopes = signed_envelopes(key, args.entries)
    results: dict[int, list[list[float]]] = {SQLITE_WAL_AUTOCHECKPOINT: [], SQLITE_DEFAULT: []}
    for run in range(args.runs):
        order = [SQLITE_WAL_AUTOCHECKPOINT, SQLITE_DEFAULT] if run % 2 == 0 else [SQLITE_DEFAULT, SQLITE_WAL_AUTOCHECKPOINT]
        for pages in order:
            results[pages].append(stages(pages, envelopes, key, args))
        ours, default = results[SQLITE_WAL_AUTOCHECKPOINT][-1], results[SQLITE_DEFAULT][-1]
        print(f"run {run + 1}: " + "; ".join(
            f"at {(i + 1) * args.stage:,}: {o:.1f} vs {d:.1f} µs ({o / d:.2f}x)" for i, (o, d) in enumerate(zip(ours, default, strict=True))
        ))
    print(f"\nintegrate + commit, groups of {args.group}, µs an entry (median of {args.runs} runs)")
    print(f"| ledger size | every {SQLITE_WAL_AUTOCHECKPOINT:,} pages | every {SQLITE_DEFAULT:,} pages (SQLite's default) | ratio |")
    print("|---|---|---|---|")
    for i in range(args.entries // args.stage):
        ours = median([r[i] for r in results[SQLITE_WAL_AUTOCHECKPOINT]])
        default = median([r[i] for r in results[SQLITE_DEFAULT]])
        ratios = median([o[i] / d[i] for o, d in zip(results[SQLITE_WAL_AUTOCHECKPOINT], results[SQLITE_DEFAULT], strict=True)])
        print(f"| {(i + 1) * args.stage:,} | {ours:.1f} | {default:.1f} | {ratios:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
