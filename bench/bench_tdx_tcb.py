"""TDX appraisal cost with and without the TCB status (Intel TCB Info + QE Identity collateral).

Uses the real go-tdx-guest SPR E4 quote and the sample collateral from ../shared/vectors
(override with PROVLEDGER_VECTORS), judged at 2023-06-20 as the collateral requires. Prints
medians of several rounds, the ratio, and the cost of an appraisal job's JSON round trip (what a
batch appraised on the workers adds per deployment, before the queue's own latency).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from ledger.attestation import Policy, TdxCollateral, appraise

ROUNDS = 5
N = 300


def _rate(n: int, fn) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return n / (time.perf_counter() - start)


def main() -> int:
    root = Path(os.environ.get("PROVLEDGER_VECTORS", Path(__file__).resolve().parents[2] / "shared" / "vectors"))
    d = root / "tee/samples/tdx/go-tdx-guest"
    if not d.is_dir():
        print(f"skipped: vectors not found at {root} (set PROVLEDGER_VECTORS)")
        return 0
    quote = (d / "tdx_prod_quote_SPR_E4.dat").read_bytes()
    files = [(d / n).read_bytes() for n in ("sample_tcbInfo_response", "sample_qeIdentity_response",
                                            "tcbInfoIssuerChain.pem", "pckcrl", "rootcrl.der")]
    now = datetime(2023, 6, 20, tzinfo=UTC)
    policy = Policy()

    def plain() -> None:
        assert appraise("tdx", quote, now=now, policy=policy).verdict == "accept"

    def with_collateral() -> None:
        collateral = TdxCollateral.from_files(files)  # parsed per quote, as a submission does
        appraisal = appraise("tdx", quote, now=now, policy=policy, collateral=collateral)
        assert appraisal.check("tcb_info").ok and appraisal.claims["tcb_status"] != "not evaluated"

    job = {"evidence": quote.hex(), "collateral": [f.hex() for f in files]}

    def job_round_trip() -> None:
        json.loads(json.dumps(job))

    rows = []
    for name, fn in (("TDX quote, no collateral", plain), ("TDX quote + TCB Info/QE Identity/CRLs", with_collateral),
                     ("appraisal job JSON round trip", job_round_trip)):
        fn()  # warm the certificate caches
        rows.append((name, statistics.median(_rate(N, fn) for _ in range(ROUNDS))))
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs; medians of {ROUNDS} rounds of {N}")
    print(f"{'case':<44}{'per s':>10}{'ms each':>10}")
    for name, rate in rows:
        print(f"{name:<44}{rate:>10.0f}{1000 / rate:>10.3f}")
    print(f"TCB status costs {rows[0][1] / rows[1][1]:.2f}x the plain appraisal")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
