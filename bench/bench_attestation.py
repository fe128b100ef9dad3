"""SEV-SNP report verification throughput: with the certificate chain cached, and cold.

Uses the real virtee/sev Milan report and VCEK from ../shared/vectors (override with
PROVLEDGER_VECTORS); prints medians of several rounds and the machine. Target: ≥ 500/s cached.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from ledger.attestation import Policy, appraise, clear_caches

ROUNDS = 5
CACHED_N = 2000
COLD_N = 100
TARGET_PER_S = 500


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _rate(n: int, fn) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return n / (time.perf_counter() - start)


def main() -> int:
    root = Path(os.environ.get("PROVLEDGER_VECTORS", Path(__file__).resolve().parents[2] / "shared" / "vectors"))
    tee = root / "tee"
    report_path = tee / "samples/sev-snp/virtee-sev/report_milan.bin"
    if not report_path.is_file():
        print(f"skipped: vectors not found at {root} (set PROVLEDGER_VECTORS)")
        return 0
    report = report_path.read_bytes()
    endorsements = [
        (tee / "samples/sev-snp/virtee-sev/vcek_milan.der").read_bytes(),
        (tee / "roots/amd/ask_ark_milan.pem").read_bytes(),
    ]
    now = datetime(2024, 1, 1, tzinfo=UTC)
    policy = Policy()

    def verify() -> None:
        appraisal = appraise("sev-snp", report, endorsements=endorsements, now=now, policy=policy)
        assert appraisal.verdict == "accept", appraisal.failed

    def verify_cold() -> None:
        clear_caches()
        verify()

    verify()  # warm the caches
    cached = statistics.median(_rate(CACHED_N, verify) for _ in range(ROUNDS))
    cold = statistics.median(_rate(COLD_N, verify_cold) for _ in range(ROUNDS))

    print(f"machine: {_cpu()}, {os.cpu_count()} CPUs; Python {sys.version.split()[0]} "
          f"({platform.python_implementation()}); one process")
    print(f"{'case':<44}{'reports/s':>12}{'ms/report':>12}")
    print(f"{'SEV-SNP, chain cached (LRU on DER pairs)':<44}{cached:>12.0f}{1000 / cached:>12.3f}")
    print(f"{'SEV-SNP, cold (caches cleared each time)':<44}{cold:>12.0f}{1000 / cold:>12.3f}")
    print(f"cached/cold ratio: {cached / cold:.1f}x; target ≥ {TARGET_PER_S}/s cached: "
          f"{'met' if cached >= TARGET_PER_S else 'NOT met'}")
    return 0 if cached >= TARGET_PER_S else 1


if __name__ == "__main__":
    raise SystemExit(main())
