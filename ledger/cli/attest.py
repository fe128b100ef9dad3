"""``provledger attest verify``: appraise TEE evidence standalone (no database, no network).

Exit codes (GUIDE.md): 0 accepted, 1 refused (a check failed), 2 malformed input or bad usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ledger.attestation import KINDS, Appraisal, Policy, appraise
from ledger.errors import MalformedError

__all__ = ["add_parser", "run"]

EXIT_ACCEPTED, EXIT_REFUSED, EXIT_MALFORMED = 0, 1, 2


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``attest verify`` on an argparse subparsers object; returns the ``attest`` parser."""
    attest = subparsers.add_parser("attest", help="TEE attestation evidence")
    actions = attest.add_subparsers(dest="attest_command", metavar="COMMAND", required=True)
    verify = actions.add_parser(
        "verify",
        help="appraise TEE evidence standalone",
        description="Verify TEE evidence to the pinned vendor root and apply the default policy. "
        "Exit 0 accepted, 1 refused, 2 malformed input or bad usage.",
    )
    verify.add_argument("--type", dest="evidence_type", required=True, choices=KINDS)
    verify.add_argument("evidence", metavar="EVIDENCE", help="evidence file")
    verify.add_argument(
        "--endorsement",
        metavar="FILE",
        action="extend",
        nargs="+",
        default=[],
        help="certificate or CRL file(s), PEM or DER (repeatable)",
    )
    verify.add_argument("--at", metavar="T", help="appraise at this RFC 3339 time (default: now)")
    verify.add_argument("--nonce", metavar="HEX", help="expected report data / nonce / extraData")
    verify.add_argument("--allow-debug", action="store_true", help="accept debug guests")
    verify.add_argument("--json", action="store_true", help="print the appraisal as JSON")
    verify.set_defaults(func=run)
    return attest


class _UsageError(Exception):
    pass


def _parse_time(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        msg = f"--at {text!r} is not an RFC 3339 time"
        raise _UsageError(msg) from None
    if value.tzinfo is None:
        msg = f"--at {text!r} has no time zone offset (RFC 3339 requires one, e.g. Z)"
        raise _UsageError(msg)
    return value


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        msg = f"cannot read the {what} file {path}: {exc.strerror or exc}"
        raise _UsageError(msg) from exc


def _print_human(appraisal: Appraisal, kind: str) -> None:
    print(f"{appraisal.verdict}: {kind} evidence")
    for check in appraisal.checks:
        print(f"  [{'ok' if check.ok else 'FAIL'}] {check.name}: {check.reason}")
    for name in ("measurement", "report_data", "debug"):
        print(f"  {name}: {appraisal.claims.get(name)}")


def run(args: argparse.Namespace) -> int:
    """Run ``attest verify``; returns the exit code."""
    try:
        now = _parse_time(args.at) if args.at else datetime.now(UTC)
        nonce = None
        if args.nonce is not None:
            try:
                nonce = bytes.fromhex(args.nonce)
            except ValueError:
                msg = f"--nonce {args.nonce!r} is not hex"
                raise _UsageError(msg) from None
        evidence = _read(args.evidence, "evidence")
        endorsements = [_read(path, "endorsement") for path in args.endorsement]
        policy = Policy(allow_debug=args.allow_debug, expected_report_data=nonce)
        appraisal = appraise(
            args.evidence_type, evidence, endorsements=endorsements, now=now, policy=policy
        )
    except _UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_MALFORMED
    except MalformedError as exc:
        print(f"error: malformed {args.evidence_type} input: {exc.diagnostics()}", file=sys.stderr)
        return EXIT_MALFORMED
    if args.json:
        print(json.dumps(appraisal.to_json(), indent=2, sort_keys=False))
    else:
        _print_human(appraisal, args.evidence_type)
    return EXIT_ACCEPTED if appraisal else EXIT_REFUSED
