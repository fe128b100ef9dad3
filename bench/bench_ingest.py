"""HTTP ingestion with full policy evaluation (issue 3), against the real ``provledger serve``.

A fresh SQLite ledger gets an administrator key, a signer key registered by a key event (a
scoped grant with a review-by date) and a submit token; then ``provledger serve --workers 2``
(waitress) runs on 127.0.0.1 and this script is the load generator:

1. batch ingestion: concurrent clients POST /api/v1/entries/batch (Ed25519-signed SLSA v1
   envelopes, every signature verified and every record judged by the trust policy);
2. single entries at an offered load of 500 requests/s from 50 concurrent clients (open loop:
   latency counts from each request's scheduled time, so a slow server cannot hide queueing);
   every response must be a 201 carrying its receipt and signed checkpoint;
3. the highest single-entry rate: 50 closed-loop clients as fast as the server answers.

Targets: batch >= 5,000 entries/s; single entries p50 <= 10 ms, p99 <= 50 ms at 500/s.
The load generator shares the machine's cores with the server (both are in these figures).

    .venv/bin/python bench/bench_ingest.py [--entries 60000] [--batch 1000] [--seconds 10]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import machine  # noqa: E402
from ledger.config import Settings  # noqa: E402
from ledger.db.engine import make_engine, make_session_factory  # noqa: E402
from ledger.records.dsse import sign_envelope  # noqa: E402
from ledger.records.keys import generate_private_key  # noqa: E402
from ledger.trust.policy import Grant  # noqa: E402
from ledger.services import registry, setup  # noqa: E402
from ledger.records.statement import IN_TOTO_PAYLOAD_TYPE, STATEMENT_V1  # noqa: E402

SLSA = "https://slsa.dev/provenance/v1"
PROVLEDGER = str(Path(sys.executable).with_name("provledger"))


def statement(i: int, tag: str) -> bytes:
    return json.dumps({
        "_type": STATEMENT_V1,
        "subject": [{"name": f"pkg/service-{i % 97}/build-{tag}-{i}.tar.gz", "digest": {"sha256": f"{tag}{i:063x}"[-64:]}}],
        "predicateType": SLSA,
        "predicate": {"buildDefinition": {
            "buildType": "https://slsa-framework.github.io/github-actions-buildtypes/workflow/v1",
            "externalParameters": {"workflow": {"ref": "refs/heads/main", "repository": "https://github.com/example/service"}},
            "resolvedDependencies": [{"uri": "git+https://github.com/example/service@refs/heads/main", "digest": {"gitCommit": f"{i:040x}"}},
                                     {"uri": "oci://registry.example/base", "digest": {"sha256": f"{i % 13:064x}"}}]},
            "runDetails": {"builder": {"id": "https://github.com/actions/runner/github-hosted"}}},
    }, separators=(",", ":")).encode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


class Server:
    def __init__(self, home: str, workers: int | None, threads: int, env: dict[str, str] | None = None) -> None:
        """``env``: set for the server on top of this process's environment."""
        self.port = free_port()
        env = {**os.environ, "PROVLEDGER_HOME": home, "PYTHONPATH": str(Path(__file__).resolve().parent.parent), **(env or {})}
        env.pop("PROVLEDGER_DATABASE_URL", None)
        # The server's log goes to a file: a pipe nobody drains fills up (64 KiB) and then blocks
        # the server's event loop the next time it logs (waitress warns on every deep task queue).
        self.log = open(Path(home) / "serve.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [PROVLEDGER, "serve", "--port", str(self.port), "--threads", str(threads),
             *(["--workers", str(workers)] if workers is not None else [])],
            env=env, stdout=subprocess.DEVNULL, stderr=self.log,
        )
        self.workers = workers or os.cpu_count() or 1
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                c.request("GET", "/healthz")
                if c.getresponse().status == 200 and self._all_workers_up(deadline):
                    return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError("the server did not start: " + (Path(home) / "serve.log").read_text(errors="replace")[-2000:])

    def _all_workers_up(self, deadline: float) -> bool:
        """Every worker process is running (one that is still starting takes no connection, and
        a client's keep-alive connections would all land on the others for the whole run)."""
        if self.workers == 1:
            return True
        while time.time() < deadline:
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
            if children.exists() and len(children.read_text().split()) == self.workers:
                time.sleep(1.0)  # the last one forked: let it reach its event loop
                return True
            time.sleep(0.1)
        return False

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def post(conn: http.client.HTTPConnection, path: str, body: bytes, token: str) -> tuple[int, bytes]:
    conn.request("POST", path, body=body, headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    resp = conn.getresponse()
    return resp.status, resp.read()


def batch_ingest(port: int, token: str, bodies: list[bytes], clients: int) -> tuple[float, int]:
    """Entries/s through /entries/batch with ``clients`` concurrent connections."""
    lock = threading.Lock()
    queue = list(reversed(bodies))
    created = 0
    errors: list[str] = []

    def run() -> None:
        nonlocal created
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        while True:
            with lock:
                if not queue:
                    return
                body = queue.pop()
            status, raw = post(conn, "/api/v1/entries/batch", body, token)
            results = json.loads(raw)["results"] if status == 200 else []
            ok = sum(1 for r in results if "index" in r)
            with lock:
                created += ok
                if status != 200 or ok != len(results):
                    errors.append(f"{status}: {raw[:200]!r}")

    threads = [threading.Thread(target=run) for _ in range(clients)]
    t = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    elapsed = time.perf_counter() - t
    if errors:
        print(f"  batch errors: {len(errors)}; first: {errors[0]}")
    return created / elapsed, created


def single_open_loop(port: int, token: str, bodies: list[bytes], rate: float, clients: int, seconds: float) -> dict[str, float]:
    """Open loop: client c sends at t0 + (c + k*clients)/rate; latency counts from the schedule."""
    per_client = int(rate * seconds / clients)
    latencies: list[float] = []
    service: list[float] = []
    bad: list[str] = []
    lock = threading.Lock()
    t0 = time.perf_counter() + 0.5

    def run(c: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for k in range(per_client):
            i = c + k * clients
            scheduled = t0 + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            sent = time.perf_counter()
            try:
                status, raw = post(conn, "/api/v1/entries", bodies[i], token)
            except (OSError, http.client.HTTPException) as exc:  # a timeout or a dropped connection
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                with lock:
                    bad.append(f"no answer after {time.perf_counter() - sent:.0f} s: {exc!r}")
                continue
            done = time.perf_counter()
            ok = status == 201 and b"\"proof\"" in raw and b"\"tree_size\"" in raw
            with lock:
                latencies.append(done - scheduled)
                service.append(done - sent)
                if not ok:
                    bad.append(f"{status}: {raw[:160]!r}")

    threads = [threading.Thread(target=run, args=(c,)) for c in range(clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    elapsed = time.perf_counter() - t0
    if bad:
        print(f"  single-entry errors: {len(bad)}; first: {bad[0]}")
    return {"sent": len(latencies) + sum(1 for b in bad if b.startswith("no answer")), "achieved": len(latencies) / elapsed, "p50": percentile(latencies, 50),
            "p99": percentile(latencies, 99), "max": max(latencies, default=float("nan")), "svc_p50": percentile(service, 50),
            "svc_p99": percentile(service, 99), "errors": len(bad)}


def single_closed_loop(port: int, token: str, bodies: list[bytes], clients: int, seconds: float) -> dict[str, float]:
    stop = time.perf_counter() + seconds
    latencies: list[float] = []
    lock = threading.Lock()
    cursor = iter(range(len(bodies)))

    def run() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while time.perf_counter() < stop:
            with lock:
                i = next(cursor, None)
            if i is None:
                return
            t = time.perf_counter()
            status, _ = post(conn, "/api/v1/entries", bodies[i], token)
            with lock:
                if status == 201:
                    latencies.append(time.perf_counter() - t)

    threads = [threading.Thread(target=run) for _ in range(clients)]
    t = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    elapsed = time.perf_counter() - t
    return {"rate": len(latencies) / elapsed, "p50": percentile(latencies, 50), "p99": percentile(latencies, 99)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=60_000, help="envelopes for the batch phase")
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--clients", type=int, default=3, help="concurrent batch clients")
    ap.add_argument("--seconds", type=float, default=10.0, help="length of each single-entry phase")
    ap.add_argument("--workers", type=int, default=2, help="server processes for the batch phase")
    ap.add_argument("--single-workers", type=int, default=1,
                    help="server processes for the single-entry phases (one sequencer: no lock hand-offs)")
    ap.add_argument("--threads", type=int, default=16)
    args = ap.parse_args()
    print(f"machine: {machine()}")
    home = tempfile.mkdtemp(prefix="provledger-bench-ingest-")
    settings = Settings.from_env({"PROVLEDGER_HOME": home})
    log = setup.init_store(settings)
    engine = make_engine(settings.database_url)
    sessions = make_session_factory(engine)
    key = generate_private_key("ed25519")
    now = int(time.time())
    registry.add_key(sessions, log, setup.load_admin_key(settings), "ci", key.public_key,
                     [Grant(("https://slsa.dev/provenance/*",), ("pkg/*/*",), review_by=now + 86400 * 90)], now=now)
    with sessions() as session, session.begin():
        token = registry.create_token(session, "bench", "submit", now=now)
    engine.dispose()

    t = time.perf_counter()
    singles_needed = int(500 * args.seconds) + 60_000
    envelopes = [json.dumps(sign_envelope(statement(i, "a"), IN_TOTO_PAYLOAD_TYPE, [key])) for i in range(args.entries)]
    singles = [json.dumps(sign_envelope(statement(i, "b"), IN_TOTO_PAYLOAD_TYPE, [key])).encode() for i in range(singles_needed)]
    bodies = [("{\"envelopes\":[" + ",".join(envelopes[i : i + args.batch]) + "]}").encode() for i in range(0, len(envelopes), args.batch)]
    print(f"pre-signed {len(envelopes) + len(singles)} Ed25519 envelopes (~{len(envelopes[0])} bytes) in {time.perf_counter() - t:.1f} s")
    print(f"server: provledger serve --workers {args.workers} --threads {args.threads} (waitress), SQLite in {home}")

    server = Server(home, args.workers, args.threads)
    try:
        warm = bodies[:2]
        batch_ingest(server.port, token, warm, 1)
        rate, created = batch_ingest(server.port, token, bodies[2:], args.clients)
        print(f"\n1. POST /entries/batch ({args.batch} per batch, {args.clients} clients): {created} entries, "
              f"{rate:,.0f} entries/s (target >= 5,000: {'met' if rate >= 5000 else 'NOT met'})")

        if args.single_workers != args.workers:
            server.stop()
            server = Server(home, args.single_workers, args.threads)
            print(f"\nserver restarted: provledger serve --workers {args.single_workers} --threads {args.threads}")
        r = single_open_loop(server.port, token, singles, 500.0, 50, args.seconds)
        print(f"\n2. POST /entries at 500 req/s offered, 50 clients, {args.seconds:.0f} s: {r['sent']} requests, "
              f"{r['achieved']:.0f} req/s achieved, {r['errors']} errors")
        print(f"   latency from schedule: p50 {r['p50'] * 1e3:.1f} ms, p99 {r['p99'] * 1e3:.1f} ms, max {r['max'] * 1e3:.1f} ms "
              f"(targets p50 <= 10 ms: {'met' if r['p50'] <= 0.010 else 'NOT met'}, p99 <= 50 ms: {'met' if r['p99'] <= 0.050 else 'NOT met'})")
        print(f"   service time (send to response): p50 {r['svc_p50'] * 1e3:.1f} ms, p99 {r['svc_p99'] * 1e3:.1f} ms")

        rest = singles[int(500 * args.seconds):]
        c = single_closed_loop(server.port, token, rest, 50, args.seconds)
        print(f"\n3. highest single-entry rate (50 closed-loop clients, {args.seconds:.0f} s): {c['rate']:,.0f} entries/s, "
              f"p50 {c['p50'] * 1e3:.1f} ms, p99 {c['p99'] * 1e3:.1f} ms")
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
