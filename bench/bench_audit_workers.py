"""Full audit of N signed entries on 2 Celery worker processes (issue 4).

Everything is re-measured: every envelope signature, leaf hash, chain link, interior hash and
checkpoint. Three rates, measured in the same run on the same ledger:

* ``raw``: PyNaCl Ed25519 verifications per second on one core (the floor of the work);
* ``single``: the same verification core in one process (every shard in turn, then the combiner);
* ``pool``: ``provledger audit --signatures`` — the same shards on a process pool, no Redis;
* ``workers``: the distributed audit — ``celery worker --concurrency 2`` (two pool processes) on
  Redis, shards and chord, from enqueue to the stored report.

Targets: workers >= 1.7 x single, and workers >= 75% of 2 x raw. The worker processes' RSS is
sampled when the audit has passed 100,000 entries and at its end (memory flat in n).

    .venv/bin/python bench/bench_audit_workers.py [--entries 1000000] [--backend postgres|sqlite]
        [--processes 2] [--shard-size N] [--repeat 1]

Needs Redis (PROVLEDGER_TEST_REDIS_URL, default redis://127.0.0.1:6379/14; keys go under a
unique prefix, removed at the end) and, for the PostgreSQL backend, PROVLEDGER_TEST_POSTGRES_URL.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import nacl.signing  # noqa: E402
import redis  # noqa: E402

from bench._common import build_signed_ledger, fresh_store, machine, median, new_key, postgres_available  # noqa: E402
from ledger.records.dsse import pae  # noqa: E402
from ledger.services import audit, shards  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
REDIS_URL = os.environ.get("PROVLEDGER_TEST_REDIS_URL", "redis://127.0.0.1:6379/14")
RSS_MARK = 100_000


def raw_verify_rate(st, sample: int = 20_000) -> float:
    """PyNaCl verifications per second on one core, over the ledger's own envelopes."""
    from ledger.db import store as dbstore  # noqa: PLC0415

    items = []
    with st.sessions() as session:
        for _, data, _, _ in dbstore.iter_entries(session, 0, sample):
            doc = json.loads(data)
            env = doc["envelope"]
            key = nacl.signing.VerifyKey(base64.b64decode(doc["signers"][0]["public_key"])[-32:])
            items.append((key, pae(env["payloadType"], base64.b64decode(env["payload"])), base64.b64decode(env["signatures"][0]["sig"])))
    rates = []
    for _ in range(3):
        t = time.perf_counter()
        for key, message, sig in items:
            key.verify(message, sig)
        rates.append(len(items) / (time.perf_counter() - t))
    return median(rates)


def single_process(st, level: int) -> float:
    """Seconds for the whole verification core in this process: every shard, then the combiner."""
    size = _size(st)
    plan = shards.plan_shards(size, level)
    t = time.perf_counter()
    with st.sessions() as session:
        results = [shards.verify_shard(session, s, vkey=st.log.vkey, origin=st.log.origin) for s in plan]
        report = shards.combine_shards(session, size, results, vkey=st.log.vkey, origin=st.log.origin)
    elapsed = time.perf_counter() - t
    assert report.ok, report.to_json()
    return elapsed


def local_pool(st, level: int, processes: int) -> float:
    """Seconds for ``provledger audit --signatures``: the same shards on a process pool, no Redis."""
    t = time.perf_counter()
    report = shards.audit_signatures(
        st.sessions, st.log, database_url=st.settings.database_url, processes=processes, shard_level=level
    )
    elapsed = time.perf_counter() - t
    assert report.ok, report.to_json()
    return elapsed


def single_process_hashes_only(st) -> float:
    """Seconds for ``audit --hashes`` in one process (hashes and checkpoints; no signatures, no
    cache rebuilt): for scale."""
    t = time.perf_counter()
    with st.sessions() as session:
        report = audit.audit_hashes(session, st.log)
    assert report.ok, report.to_json()
    return time.perf_counter() - t


def _size(st) -> int:
    from ledger.db import store as dbstore  # noqa: PLC0415

    with st.sessions() as session:
        return dbstore.current_size(session)


def _rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            pass
    return found


def distributed(st, settings, env: dict[str, str], level: int, processes: int, logs: Path) -> tuple[float, dict[str, list[int]]]:
    """Seconds from enqueue to the stored report on a `celery worker` with ``processes`` pool processes."""
    from workers.app import make_celery  # noqa: PLC0415
    from workers.dispatch import close, enqueue_audit  # noqa: PLC0415

    log = open(logs / f"worker-{uuid.uuid4().hex[:6]}.log", "wb")  # noqa: SIM115
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "workers", "worker", "--loglevel=WARNING", f"--concurrency={processes}",
         "--pool=prefork", "-n", f"bench-{uuid.uuid4().hex[:6]}@localhost", "--without-gossip", "--without-mingle", "--without-heartbeat"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    log.close()
    app = make_celery(settings)
    rss: dict[str, list[int]] = {}
    try:
        # the clock starts once the worker answers (its pool is forked by then)
        deadline = time.monotonic() + 60
        while not app.control.ping(timeout=0.5):
            if worker.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the celery worker did not start; see its log")
        pool = _children(worker.pid)
        rss["start"] = [_rss_kib(p) for p in pool]
        with st.sessions() as session, session.begin():
            audit_id = shards.create_audit(session, st.log, now=int(time.time()), source="cli", shard_level=level).id
        t = time.perf_counter()
        enqueue_audit(app, st.sessions, audit_id)
        report = _wait_done(st, audit_id, worker, rss=rss, pool=pool)
        elapsed = time.perf_counter() - t
        rss["end"] = [_rss_kib(p) for p in pool]
        assert report["ok"], report
        return elapsed, rss
    finally:
        close(app)
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(5)


def _wait_done(st, audit_id: int, worker, *, rss=None, pool=()) -> dict:
    while True:
        with st.sessions() as session:
            run = shards.get_audit(session, audit_id)
            state, result, progress, error = run.state, run.result, run.progress, run.error
        if state == "done":
            return json.loads(result)["report"]
        if state == "failed":
            raise SystemExit(f"the audit failed: {error}")
        if worker.poll() is not None:
            raise SystemExit("the celery worker exited; see its log")
        if rss is not None and "100k" not in rss and progress >= RSS_MARK:
            rss["100k"] = [_rss_kib(p) for p in pool]
        time.sleep(0.05 if rss is not None else 0.2)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=1_000_000)
    ap.add_argument("--backend", choices=["postgres", "sqlite"], default="postgres")
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--shard-size", type=int, default=None, help="a power of two (default: automatic)")
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    if args.backend == "postgres" and not postgres_available():
        raise SystemExit("PostgreSQL is not reachable (PROVLEDGER_TEST_POSTGRES_URL); try --backend sqlite")
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.exceptions.RedisError as exc:
        raise SystemExit(f"Redis is not reachable at {REDIS_URL}: {exc}") from exc
    prefix = f"provledger-bench-{uuid.uuid4().hex[:8]}:"
    level = shards.shard_level_for(args.entries) if args.shard_size is None else args.shard_size.bit_length() - 1
    print(f"machine: {machine()}")
    print(f"entries: {args.entries:,}  backend: {args.backend}  shard size: {1 << level:,}  worker processes: {args.processes}")
    with fresh_store(args.backend) as st:
        key = new_key()

        t = time.perf_counter()
        build_signed_ledger(st, key, args.entries)
        print(f"built the ledger in {time.perf_counter() - t:.0f} s")
        settings = dataclasses.replace(st.settings, redis_url=REDIS_URL)
        os.environ["PROVLEDGER_REDIS_PREFIX"] = prefix
        env = {k: v for k, v in os.environ.items() if not k.startswith("PROVLEDGER_")}
        env.update(
            PROVLEDGER_HOME=str(settings.home), PROVLEDGER_DATABASE_URL=settings.database_url,
            PROVLEDGER_ORIGIN=settings.origin, PROVLEDGER_REDIS_URL=REDIS_URL, PROVLEDGER_REDIS_PREFIX=prefix,
            PYTHONPATH=str(REPO),
        )
        n = args.entries
        raw = raw_verify_rate(st)
        singles, hashes_only, dists, pools, rss = [], [], [], [], {}
        for _ in range(args.repeat):
            singles.append(n / single_process(st, level))
            pools.append(n / local_pool(st, level, args.processes))
            hashes_only.append(n / single_process_hashes_only(st))
            elapsed, rss = distributed(st, settings, env, level, args.processes, Path(settings.home))
            dists.append(n / elapsed)
        single_rate, dist_rate = median(singles), median(dists)
        print()
        print(f"{'measure':<52} {'entries/s':>12}")
        print(f"{'raw PyNaCl verify, one core':<52} {raw:>12,.0f}")
        print(f"{'raw PyNaCl verify x ' + str(args.processes):<52} {raw * args.processes:>12,.0f}")
        print(f"{'audit, single process (same core, all checks)':<52} {single_rate:>12,.0f}")
        print(f"{'audit, single process, hashes only (services.audit)':<52} {median(hashes_only):>12,.0f}")
        print(f"{f'audit --signatures, {args.processes} pool processes':<52} {median(pools):>12,.0f}")
        print(f"{f'audit, {args.processes} worker processes (Celery, Redis)':<52} {dist_rate:>12,.0f}")
        print()
        speedup = dist_rate / single_rate
        of_raw = dist_rate / (raw * args.processes)
        print(f"workers / single process: {speedup:.2f}x  (target >= 1.7x)  {'OK' if speedup >= 1.7 else 'BELOW TARGET'}")
        print(f"workers / ({args.processes} x raw PyNaCl): {of_raw:.0%}  (target >= 75%)  {'OK' if of_raw >= 0.75 else 'BELOW TARGET'}")
        for mark in ("start", "100k", "end"):
            if mark in rss:
                print(f"worker pool RSS at {mark:>5}: " + ", ".join(f"{kib / 1024:.0f} MiB" for kib in rss[mark]))
        if args.repeat > 1:
            print(f"(medians of {args.repeat} runs)")
    keys = list(client.scan_iter(match=prefix + "*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
