"""Chain-of-trust evaluation (issue 3): an artifact whose graph has ~1,000 nodes, and how the
time grows with depth and fan-in.

Each graph is built into a fresh SQLite ledger through the real append path (signed SLSA v1
records whose resolvedDependencies are the edges). Layers of ``width`` records; each record
depends on ``fanin`` records of the layer below (so wide graphs are full of diamonds); the
artifact is the one record on top. A timed evaluation is ``ledger.services.chain.chain`` end to
end (the recursive reachability query, loading the records, the policy and the walk), warm.

Target: <= 100 ms for 1,000 nodes.

    .venv/bin/python bench/bench_chain.py [--repeat 7]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import machine, median  # noqa: E402
from ledger.config import Settings  # noqa: E402
from ledger.db.engine import make_engine, make_session_factory  # noqa: E402
from ledger.records.dsse import sign_envelope  # noqa: E402
from ledger.records.keys import generate_private_key  # noqa: E402
from ledger.trust.chain import evaluate_chain, parse_digest  # noqa: E402
from ledger.trust.policy import Grant  # noqa: E402
from ledger.services import chain as chain_service  # noqa: E402
from ledger.services import registry, setup  # noqa: E402
from ledger.services.append import append_batch  # noqa: E402
from ledger.services.trust import load_state  # noqa: E402
from ledger.records.statement import IN_TOTO_PAYLOAD_TYPE, STATEMENT_V1  # noqa: E402

SLSA = "https://slsa.dev/provenance/v1"


def node_digest(layer: int, i: int) -> str:
    return hashlib.sha256(f"{layer}/{i}".encode()).hexdigest()


def statement(layer: int, i: int, inputs: list[str]) -> bytes:
    return json.dumps({
        "_type": STATEMENT_V1,
        "subject": [{"name": f"pkg/l{layer}/n{i}", "digest": {"sha256": node_digest(layer, i)}}],
        "predicateType": SLSA,
        "predicate": {"buildDefinition": {"buildType": "https://ci.example/t",
                                          "resolvedDependencies": [{"digest": {"sha256": d}} for d in inputs]},
                      "runDetails": {"builder": {"id": "https://ci.example"}}},
    }).encode()


def build_graph(depth: int, width: int, fanin: int) -> tuple[Path, str, int]:
    """A ledger holding the graph; returns (home, artifact digest, node count)."""
    home = Path(tempfile.mkdtemp(prefix="provledger-bench-chain-"))
    settings = Settings.from_env({"PROVLEDGER_HOME": str(home)})
    log = setup.init_store(settings)
    engine = make_engine(settings.database_url)
    sessions = make_session_factory(engine)
    key = generate_private_key()
    registry.add_key(sessions, log, setup.load_admin_key(settings), "ci", key.public_key, [Grant((SLSA,), ("pkg/*/*",))], now=1)
    envelopes = []
    for layer in range(depth, 0, -1):  # bottom layer first
        for i in range(width):
            below = [node_digest(layer + 1, (i + k) % width) for k in range(fanin)] if layer < depth else []
            envelopes.append(json.dumps(sign_envelope(statement(layer, i, below), IN_TOTO_PAYLOAD_TYPE, [key])))
    top = json.dumps(sign_envelope(statement(0, 0, [node_digest(1, i) for i in range(width)]), IN_TOTO_PAYLOAD_TYPE, [key]))
    envelopes.append(top)
    for lo in range(0, len(envelopes), 2000):
        for r in append_batch(sessions, envelopes[lo : lo + 2000], log, now=2):
            assert not isinstance(r, Exception), r
    engine.dispose()
    return home, node_digest(0, 0), len(envelopes)


def measure(home: Path, artifact: str, repeat: int) -> dict[str, float]:
    settings = Settings.from_env({"PROVLEDGER_HOME": str(home)})
    engine = make_engine(settings.database_url)
    sessions = make_session_factory(engine)
    total, reach, load, walk = [], [], [], []
    links = verdict = None
    with sessions() as session:
        for _ in range(repeat + 1):
            t0 = time.perf_counter()
            doc = chain_service.chain(session, f"sha256:{artifact}", now=10)
            total.append(time.perf_counter() - t0)
            links, verdict = len(doc["links"]), doc["verdict"]
            alg, value = parse_digest(f"sha256:{artifact}")
            t1 = time.perf_counter()
            indexes = chain_service.reachable(session, alg, value, at=10**9)
            t2 = time.perf_counter()
            records = chain_service.load_records(session, indexes)
            state = load_state(session)
            t3 = time.perf_counter()
            evaluate_chain((alg, value), records, state, as_of_time=10)
            t4 = time.perf_counter()
            reach.append(t2 - t1)
            load.append(t3 - t2)
            walk.append(t4 - t3)
    engine.dispose()
    # the first run is a warm-up
    return {"links": links, "verdict": verdict, "total": median(total[1:]), "reach": median(reach[1:]),
            "load": median(load[1:]), "walk": median(walk[1:])}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    print(f"machine: {machine()}")
    print("backend: SQLite (file, WAL); times are medians of warm runs")
    shapes = [
        # (depth, width, fan-in): ~1,000 nodes in different shapes
        (1, 999, 0), (10, 100, 1), (10, 100, 3), (100, 10, 3), (100, 10, 10), (999, 1, 1),
        # growth with depth (width 1) and with fan-in (depth 10, width 100)
        (250, 1, 1), (500, 1, 1), (2000, 1, 1),
        (10, 100, 10), (10, 100, 30),
        (20, 100, 3), (40, 100, 3),
    ]
    print(f"{'depth':>6} {'width':>6} {'fan-in':>6} {'nodes':>6} {'edges':>7} {'links':>6} {'verdict':>8} "
          f"{'total ms':>9} {'reach ms':>9} {'load ms':>8} {'walk ms':>8}")
    rows = []
    for depth, width, fanin in shapes:
        home, artifact, nodes = build_graph(depth, width, fanin)
        edges = (depth - 1) * width * fanin + width
        m = measure(home, artifact, args.repeat)
        rows.append((depth, width, fanin, nodes, m))
        print(f"{depth:>6} {width:>6} {fanin:>6} {nodes:>6} {edges:>7} {m['links']:>6} {m['verdict']:>8} "
              f"{m['total'] * 1e3:>9.1f} {m['reach'] * 1e3:>9.1f} {m['load'] * 1e3:>8.1f} {m['walk'] * 1e3:>8.1f}", flush=True)
    thousand = [m["total"] for d, w, f, n, m in rows if 990 <= n <= 1010]
    print(f"\n1,000-node graphs: worst {max(thousand) * 1e3:.1f} ms, best {min(thousand) * 1e3:.1f} ms (target <= 100 ms)")
    line = {d: m["total"] for d, w, f, n, m in rows if w == 1}
    if 250 in line and 2000 in line:
        print(f"depth x8 (250 -> 2000 links in a line): time x{line[2000] / line[250]:.1f}")
    fan = {f: m["total"] for d, w, f, n, m in rows if d == 10 and w == 100}
    if 1 in fan and 30 in fan:
        print(f"fan-in x30 (1 -> 30 inputs per node, same 1,000 nodes): time x{fan[30] / fan[1]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
