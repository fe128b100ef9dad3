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

from dataclasses import replace

from ledger.cli.args import given
from ledger.cli.files import read_at_most
from ledger.cli.terminal import safe
from ledger.attestation import KINDS, Appraisal, TdxCollateral, appraise
from ledger.attestation.policy_document import PolicyDocument, default_document, parse_policy_document
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
        type=given,
        metavar="FILE",
        action="extend",
        nargs="+",
        default=[],
        help="certificate or CRL file(s), PEM or DER (repeatable)",
    )
    verify.add_argument("--at", type=given, metavar="T", help="appraise at this RFC 3339 time (default: now)")
    verify.add_argument("--nonce", metavar="HEX", help="expected report data / nonce / extraData")
    verify.add_argument("--allow-debug", action="store_true", help="accept debug guests")
    verify.add_argument(
        "--policy", type=given, metavar="FILE",
        help="appraisal policy document (JSON, schema appraisal-policy.v1; default: the built-in policy)",
    )
    verify.add_argument(
        "--collateral", type=given, metavar="DIR",
        help="TDX: a folder of Intel collateral (TCB Info, QE Identity, issuer chains, CRLs)",
    )
    verify.add_argument("--tcb-info", type=given, metavar="FILE", help="TDX: Intel TCB Info JSON (PCS tcb response)")
    verify.add_argument("--qe-identity", type=given, metavar="FILE", help="TDX: Intel QE Identity JSON (PCS qe/identity response)")
    verify.add_argument("--json", action="store_true", help="print the appraisal as JSON")
    verify.set_defaults(func=run)
    set_policy = actions.add_parser(
        "set-policy",
        help="record a TEE appraisal policy document for its environment (an admin key event)",
    )
    set_policy.add_argument("file", metavar="FILE", help="policy document (JSON, appraisal-policy v1)")
    set_policy.set_defaults(func=run_set_policy)
    add_collateral = actions.add_parser(
        "add-collateral",
        help="record Intel TDX collateral (TCB Info, QE Identity, issuer chain, CRLs) as an admin key event",
    )
    add_collateral.add_argument("files", metavar="FILE", nargs="*", help="collateral files")
    add_collateral.add_argument("--collateral", type=given, metavar="DIR", help="a folder holding only collateral files")
    add_collateral.set_defaults(func=run_add_collateral)
    return attest


def run_set_policy(args: argparse.Namespace) -> int:
    """``attest set-policy FILE``: parse strictly, then append the admin-signed ``tee-policy`` event."""
    from ledger.cli.commands import _out, now, open_store  # noqa: PLC0415 - needs the store
    from ledger.services import registry, setup  # noqa: PLC0415

    try:
        document = _read(args.file, "policy")
    except _UsageError as exc:
        print(f"error: {safe(str(exc))}", file=sys.stderr)
        return EXIT_MALFORMED
    parsed = parse_policy_document(document)
    with open_store() as st:
        admin = setup.load_admin_key(st.settings)
        result = registry.set_tee_policy(st.sessions, st.log, admin, document, now=now())
    _out(f"TEE appraisal policy for environment {parsed.environment!r} recorded (key event at entry {result.receipt['index']})")
    return 0


def run_add_collateral(args: argparse.Namespace) -> int:
    """``attest add-collateral``: append the admin-signed ``tdx-collateral`` event."""
    from ledger.cli.commands import _out, now, open_store  # noqa: PLC0415 - needs the store
    from ledger.services import registry, setup  # noqa: PLC0415

    try:
        paths = list(args.files)
        if args.collateral:
            folder = Path(args.collateral)
            if not folder.is_dir():
                raise _UsageError(f"--collateral {args.collateral} is not a folder")
            paths += [str(p) for p in sorted(folder.iterdir()) if p.is_file() and not p.name.startswith(".")]
        if not paths or len(paths) > MAX_COLLATERAL_FILES:
            raise _UsageError(f"give 1 to {MAX_COLLATERAL_FILES} collateral files")
        blobs = [_read(p, "collateral") for p in paths]
    except _UsageError as exc:
        print(f"error: {safe(str(exc))}", file=sys.stderr)
        return EXIT_MALFORMED
    for path, blob in zip(paths, blobs, strict=True):
        try:
            TdxCollateral.from_files([blob])
        except MalformedError as exc:
            raise MalformedError(f"collateral file {path}: {exc}") from exc
    with open_store() as st:
        admin = setup.load_admin_key(st.settings)
        result = registry.add_tdx_collateral(st.sessions, st.log, admin, blobs, now=now())
    _out(f"TDX collateral ({len(blobs)} file(s)) recorded (key event at entry {result.receipt['index']})")
    return 0


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


#: the most an evidence, endorsement, collateral or policy file may hold
MAX_INPUT_FILE_BYTES = 64 * 1024 * 1024


def _read(path: str, what: str) -> bytes:
    try:
        data = read_at_most(path, MAX_INPUT_FILE_BYTES)  # a device or pipe that never ends: refused at the limit
    except OSError as exc:
        msg = f"cannot read the {what} file {path}: {exc.strerror or exc}"
        raise _UsageError(msg) from exc
    if len(data) > MAX_INPUT_FILE_BYTES:
        raise _UsageError(f"the {what} file {path} is larger than the limit of {MAX_INPUT_FILE_BYTES} bytes")
    return data


#: a collateral folder holds a handful of files; more is a wrong folder
MAX_COLLATERAL_FILES = 64


def _collateral(args: argparse.Namespace) -> TdxCollateral | None:
    blobs: list[bytes] = []
    if args.collateral:
        folder = Path(args.collateral)
        if not folder.is_dir():
            msg = f"--collateral {args.collateral} is not a folder"
            raise _UsageError(msg)
        files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
        if len(files) > MAX_COLLATERAL_FILES:
            msg = f"--collateral {args.collateral} holds more than {MAX_COLLATERAL_FILES} files"
            raise _UsageError(msg)
        blobs.extend((str(p), _read(str(p), "collateral")) for p in files)
    for path, what in ((args.tcb_info, "TCB Info"), (args.qe_identity, "QE Identity")):
        if path:
            blobs.append((path, _read(path, what)))
    if not blobs:
        return None
    if args.evidence_type != "tdx":
        msg = "--collateral, --tcb-info and --qe-identity apply to --type tdx only"
        raise _UsageError(msg)
    collateral = TdxCollateral()
    for path, blob in blobs:
        try:
            collateral = collateral.merged(TdxCollateral.from_files([blob]))
        except MalformedError as exc:
            msg = f"collateral file {path}: {exc}"
            raise MalformedError(msg) from exc
    if args.tcb_info and not collateral.tcb_infos:
        msg = f"--tcb-info {args.tcb_info} is not a TCB Info document"
        raise MalformedError(msg)
    if args.qe_identity and not collateral.qe_identities:
        msg = f"--qe-identity {args.qe_identity} is not a QE Identity document"
        raise MalformedError(msg)
    return collateral


def _policy_document(args: argparse.Namespace) -> PolicyDocument:
    if not args.policy:
        return default_document()
    return parse_policy_document(_read(args.policy, "policy"))


def _print_safe(text: str) -> None:
    print(safe(text))


def _print_human(appraisal: Appraisal, kind: str, document: PolicyDocument | None = None) -> None:
    _print_safe(f"{appraisal.verdict}: {kind} evidence")
    if document is not None:
        _print_safe(f"  policy: environment {document.environment!r}")
    for check in appraisal.checks:
        _print_safe(f"  [{'ok' if check.ok else 'FAIL'}] {check.name}: {check.reason}")
    for name in ("measurement", "report_data", "debug"):
        _print_safe(f"  {name}: {appraisal.claims.get(name)}")


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
        document = _policy_document(args)
        policy = document.policy_for(args.evidence_type, expected_report_data=nonce)
        if args.allow_debug:
            policy = replace(policy, allow_debug=True)
        collateral = _collateral(args)
        appraisal = appraise(
            args.evidence_type, evidence, endorsements=endorsements, now=now, policy=policy,
            collateral=collateral,
        )
    except _UsageError as exc:
        print(f"error: {safe(str(exc))}", file=sys.stderr)
        return EXIT_MALFORMED
    except MalformedError as exc:
        print(f"error: malformed {args.evidence_type} input: {safe(exc.diagnostics())}", file=sys.stderr)
        return EXIT_MALFORMED
    if args.json:
        out = appraisal.to_json()
        if args.policy:
            out["policy"] = {"environment": document.environment, "document": document.document}
        print(json.dumps(out, indent=2, sort_keys=False))
    else:
        _print_human(appraisal, args.evidence_type, document if args.policy else None)
    return EXIT_ACCEPTED if appraisal else EXIT_REFUSED
