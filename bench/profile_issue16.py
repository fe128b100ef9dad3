"""Where the time of each of issue 16's paths goes: the top of a cProfile profile of each, in one
process, as the issue's "done when" item 1 asks ("profile first ... put the top of each profile in
your note").

Sections (default: all, in this order):

- ``single``: ``POST /api/v1/entries`` through Flask's test client, one after another, with the
  real sequencer (group commit, fsync) on a fresh SQLite ledger;
- ``batch``: ``POST /api/v1/entries/batch`` of 200 envelopes, the same way;
- ``import``: ``import_envelopes`` with ``workers=1`` (the pool's preparation runs in this
  process, so the profile holds both halves: preparing and sequencing);
- ``audit``: ``audit_hashes`` with ``workers=1`` over the imported ledger (the hash level);
- ``caches``: ``audit_caches`` over it (every cache rebuilt from the leaf bytes and compared).

Each section prints the time an item takes without the profiler (the median of three passes),
the same under it, then the functions with the most cumulative time among the project's own
(``ledger/``, ``web/``) and the most self time among all. cProfile adds its own cost to every
call, so the shares matter, not the absolute times under it. The measured paths run in this
process only: the serving, import and audit figures of the table (``bench_issue16.py``) run on
every core.

    .venv/bin/python bench/profile_issue16.py [--entries 10000] [--top 14] [SECTION ...]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import BenchStore, fresh_store, machine, new_key, register, signed_envelopes  # noqa: E402
from ledger.config import Settings  # noqa: E402
from ledger.db.engine import make_engine, make_session_factory  # noqa: E402
from ledger.services import registry, setup  # noqa: E402

SECTIONS = ("single", "batch", "import", "audit", "caches")
REPO = str(Path(__file__).resolve().parent.parent) + "/"


def _kept_store(home: str) -> BenchStore:
    """A new ledger in ``home``, kept after the section (``fresh_store`` removes its folder)."""
    settings = Settings.from_env({"PROVLEDGER_HOME": home})
    log = setup.init_store(settings)
    engine = make_engine(settings.database_url)
    return BenchStore(settings, engine, make_session_factory(engine), log)


def top(profile: cProfile.Profile, count: int, divisor: int) -> str:
    """Two tables: the project's functions by cumulative time, and every function by self time,
    in µs an item (``divisor`` items were profiled)."""
    stats = pstats.Stats(profile, stream=io.StringIO())
    rows = [(func, cc, nc, tt, ct) for func, (cc, nc, tt, ct, _callers) in stats.stats.items()]  # type: ignore[attr-defined]

    def name(func: tuple[str, int, str]) -> str:
        path, line, fn = func
        if path.startswith(REPO):
            return f"{path[len(REPO):]}:{line} {fn}"
        return fn if path == "~" else f"{Path(path).name}:{line} {fn}"

    ours = sorted((r for r in rows if r[0][0].startswith(REPO + "ledger/") or r[0][0].startswith(REPO + "web/")),
                  key=lambda r: -r[4])[:count]
    mine = sorted(rows, key=lambda r: -r[3])[:count]
    out = ["    cumulative µs/item  calls/item  (the project's functions)"]
    out += [f"    {ct / divisor * 1e6:12.1f}  {nc / divisor:10.2f}  {name(func)}" for func, _, nc, _, ct in ours]
    out += ["    self µs/item        calls/item  (every function)"]
    out += [f"    {tt / divisor * 1e6:12.1f}  {nc / divisor:10.2f}  {name(func)}" for func, _, nc, tt, _ in mine]
    return "\n".join(out)


def measure(label: str, items: int, run: Callable[[], None], args: argparse.Namespace, passes: int = 3) -> None:
    """``run`` handles ``items`` items a call; three plain passes, then one under cProfile."""
    plain = []
    for _ in range(passes):
        t = time.perf_counter()
        run()
        plain.append((time.perf_counter() - t) / items)
    profile = cProfile.Profile()
    t = time.perf_counter()
    profile.enable()
    run()
    profile.disable()
    profiled = (time.perf_counter() - t) / items
    print(f"{label}: {statistics.median(plain) * 1e6:,.1f} µs an item without the profiler "
          f"(passes {', '.join(f'{p * 1e6:,.1f}' for p in plain)}), {profiled * 1e6:,.1f} under it")
    print(top(profile, args.top, items))
    print()


def section_http(args: argparse.Namespace, batch: bool) -> None:
    from web.app import create_app  # noqa: PLC0415

    with fresh_store("sqlite") as store:
        key = new_key()
        register(store, key)
        with store.sessions() as session, session.begin():
            token = registry.create_token(session, "profile", "submit", now=int(time.time()))
        per_call = 200 if batch else 1
        calls = max(1, args.entries // 4 // per_call) if batch else min(args.entries // 4, 1500)
        warm = 1 if batch else 50  # the first requests open connections and fill caches
        envelopes = iter(signed_envelopes(key, (4 * calls + warm) * per_call))
        app = create_app({"SETTINGS": store.settings})
        client = app.test_client()
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        path = "/api/v1/entries/batch" if batch else "/api/v1/entries"

        def body() -> bytes:
            if batch:
                return b'{"envelopes":[' + b",".join(next(envelopes) for _ in range(per_call)) + b"]}"
            return next(envelopes)

        def run() -> None:
            for _ in range(calls):
                response = client.post(path, data=body(), headers=headers)
                assert response.status_code in (200, 201), (response.status_code, response.get_data()[:300])

        for _ in range(warm):
            client.post(path, data=body(), headers=headers)
        label = f"batch: POST {path}, {calls} requests of {per_call}" if batch else f"single: POST {path}, {calls} in a row"
        measure(label + " (µs an entry)", calls * per_call, run, args)
        app.extensions["provledger"].sequencer.stop()


class _Ledger:
    home: str | None = None  # the ledger the audit sections read (the import section's last)
    homes: list[str] = []  # every import section's folder, removed at the end


def section_import(args: argparse.Namespace) -> None:
    from ledger.services.bulk import import_envelopes  # noqa: PLC0415

    homes = [tempfile.mkdtemp(prefix="provledger-profile-import-") for _ in range(4)]
    _Ledger.homes += homes
    stores = [_kept_store(home) for home in homes]
    key = new_key()
    envelopes = signed_envelopes(key, args.entries)
    for store in stores:
        register(store, key)
    turn = iter(stores)

    def run() -> None:
        store = next(turn)
        summary = import_envelopes(store.sessions, envelopes, store.log, workers=1)
        assert summary.created == len(envelopes) and not summary.refused, summary

    measure(f"import: import_envelopes(workers=1) of {args.entries:,} envelopes into a fresh SQLite ledger (µs an entry)",
            args.entries, run, args)
    for store in stores:
        store.engine.dispose()
    _Ledger.home = homes[-1]


def _ledger(args: argparse.Namespace) -> tuple[BenchStore, Callable[[], None]]:
    if _Ledger.home is None:
        print("(building the ledger with the import section first)")
        section_import(args)
    settings = Settings.from_env({"PROVLEDGER_HOME": _Ledger.home})
    engine = make_engine(settings.database_url)
    return BenchStore(settings, engine, make_session_factory(engine), setup.init_store(settings)), engine.dispose


def section_audit(args: argparse.Namespace, caches: bool) -> None:
    from ledger.services.audit import AuditReport, audit_caches, audit_hashes  # noqa: PLC0415

    store, close = _ledger(args)
    with store.sessions() as session:
        size = audit_hashes(session, store.log).tree_size

        def run() -> None:
            if caches:
                report = AuditReport(tree_size=size)
                audit_caches(session, store.log, report)
            else:
                report = audit_hashes(session, store.log, workers=1)
            assert report.ok, json.dumps(report.to_json())[:500]

        label = "caches: audit_caches (every cache rebuilt from the leaf bytes)" if caches else "audit: audit_hashes(workers=1)"
        measure(f"{label} over {size:,} entries (µs an entry)", size, run, args)
    close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sections", nargs="*", metavar="SECTION", help=f"default: all, in this order: {' '.join(SECTIONS)}")
    parser.add_argument("--entries", type=int, default=10_000, help="envelopes for import and the audits (default 10,000)")
    parser.add_argument("--top", type=int, default=14, help="rows of each table (default 14)")
    args = parser.parse_args()
    unknown = [s for s in args.sections if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown section(s): {', '.join(unknown)} (choose from {', '.join(SECTIONS)})")
    print(f"machine: {machine()}")
    try:
        for section in args.sections or SECTIONS:
            if section in ("single", "batch"):
                section_http(args, batch=section == "batch")
            elif section == "import":
                section_import(args)
            else:
                section_audit(args, caches=section == "caches")
    finally:
        for home in _Ledger.homes:
            shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
