"""The command implementations. Each returns an exit code; errors are LedgerErrors."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from ledger.cli.files import read_bounded, read_lines_bounded, read_up_to, write_new_key
from ledger.cli.terminal import safe
from ledger.records import keys as keylib
from ledger.config import MAX_PROCESSES, Settings
from ledger.db import store
from ledger.db.engine import make_engine, make_session_factory
from ledger.records.dsse import MAX_ENVELOPE_BYTES, sign_envelope
from ledger.errors import (
    ConflictError,
    LedgerError,
    MalformedError,
    TooLargeError,
    UnavailableError,
    VerificationError,
)
from ledger.services.cosign import cosigned_note, witness_config_from_env
from ledger.services import append, audit, receipts, registry, setup
from ledger.services.log import LogIdentity, load_log_identity
from ledger.records.statement import IN_TOTO_PAYLOAD_TYPE, parse_statement
from ledger.tlog.witness_policy import verify_receipt_with_witnesses
from ledger.untrusted.json import parse_json


def _out(text: str) -> None:
    text = safe(text)
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


def _read_file(path: str, what: str, limit: int = MAX_ENVELOPE_BYTES) -> bytes:
    return read_bounded(path, what, limit)


def now() -> int:
    return int(time.time())


@dataclass
class Store:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    log: LogIdentity


@contextmanager
def open_store(settings: Settings | None = None) -> Iterator[Store]:
    """The configured store, checked to be initialised; database failures become exit 3."""
    settings = settings or Settings.from_env()
    log = load_log_identity(settings)
    engine = make_engine(settings.database_url)
    try:
        setup.check_initialised(engine)
        yield Store(settings, engine, make_session_factory(engine), log)
    except OperationalError as exc:
        raise UnavailableError(f"the database failed: {exc.orig}") from exc
    finally:
        engine.dispose()


# ------------------------------------------------------------------------------ set-up


def cmd_init(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    log = setup.init_store(settings)
    _out(f"store: {settings.database_url}")
    _out(f"log key: {settings.log_key_path} (origin {log.origin})")
    _out(log.vkey)
    return 0


def cmd_log_key(args: argparse.Namespace) -> int:
    _out(load_log_identity(Settings.from_env()).vkey)
    return 0


def cmd_keygen(args: argparse.Namespace) -> int:
    out = Path(args.out)
    pub = Path(str(out) + ".pub")
    for p in (out, pub):
        if p.exists():
            raise ConflictError(f"{p} already exists; refusing to overwrite a key (choose another --out)")
    key = keylib.generate_private_key(args.algorithm)
    write_new_key(out, key.to_pem(), "the key")
    try:
        pub.write_bytes(key.public_key.to_pem())
    except OSError as exc:
        raise MalformedError(f"cannot write the public key to {pub}: {exc.strerror or exc} (choose another --out)") from exc
    _out(f"private key: {out}")
    _out(f"public key: {pub}")
    _out(key.key_id)
    return 0


def cmd_tokens_create(args: argparse.Namespace) -> int:
    with open_store() as st, st.sessions() as session, session.begin():
        token = registry.create_token(session, args.name, args.scope, now=now())
    print(f"token {args.name!r} with scope {args.scope} (shown once; store it now):", file=sys.stderr)
    _out(token)
    return 0


def _utc(ts: int | None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts)) if ts is not None else "never"


def cmd_tokens_list(args: argparse.Namespace) -> int:
    with open_store() as st, st.sessions() as session:
        tokens = registry.list_tokens(session)
    if args.json:
        _out(json.dumps([t.to_json() for t in tokens], indent=2))
        return 0
    _out(f"{'NAME':<24} {'SCOPE':<7} {'CREATED':<20} {'LAST USED':<20} STATUS")
    for t in tokens:
        status = f"revoked {_utc(t.revoked_at)}" if t.revoked_at is not None else "live"
        _out(f"{t.name:<24} {t.scope:<7} {_utc(t.created_at):<20} {_utc(t.last_used_at):<20} {status}")
    return 0


def cmd_tokens_revoke(args: argparse.Namespace) -> int:
    with open_store() as st, st.sessions() as session, session.begin():
        count = registry.revoke_token(session, args.name, now=now())
    _out(f"revoked {count} token(s) named {args.name!r}; requests with them now get 401")
    return 0


# ------------------------------------------------------------------------------ records


def cmd_sign(args: argparse.Namespace) -> int:
    key = keylib.load_private_key(_read_file(args.key, "private key"))
    payload = _read_file(args.statement, "statement")
    parse_statement(payload)  # the file's bytes go in unchanged, once they are a valid statement
    _out(json.dumps(sign_envelope(payload, IN_TOTO_PAYLOAD_TYPE, [key]), indent=2))
    return 0


def cmd_submit(args: argparse.Namespace) -> int:
    body = _read_file(args.envelope, "envelope", limit=MAX_ENVELOPE_BYTES)
    if args.server is not None:
        receipt = _submit_http(args.server, args.token or os.environ.get("PROVLEDGER_TOKEN"), body)
    else:
        with open_store() as st:
            (result,) = append.append_batch(st.sessions, [body], st.log, now=now())
        if isinstance(result, LedgerError):
            raise result
        receipt = result.receipt
        if not result.created:
            print(f"duplicate: the envelope is already entry {receipt['index']}", file=sys.stderr)
    _out(json.dumps(receipt, indent=2))
    return 0


_HTTP_ERRORS = {400: MalformedError, 413: MalformedError, 422: VerificationError}


def _submit_http(server: str, token: str | None, body: bytes) -> dict[str, Any]:
    from ledger.client import MAX_ERROR_BYTES, MAX_RESPONSE_BYTES  # noqa: PLC0415 - the client's own bounds
    from ledger.errors import NotTrustedError  # noqa: PLC0415

    if not token:
        raise MalformedError("--server needs --token (or PROVLEDGER_TOKEN)")
    req = urllib.request.Request(
        server.rstrip("/") + "/api/v1/entries",
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:  # noqa: S310 - the operator's URL
            answer = resp.read(MAX_RESPONSE_BYTES + 1)  # a receipt is a few KB: a server that never stops is refused
            if len(answer) > MAX_RESPONSE_BYTES:
                raise UnavailableError(f"the server's answer is over the limit of {MAX_RESPONSE_BYTES} bytes")
            return parse_json(answer, what="the server's answer")
    except urllib.error.HTTPError as exc:
        try:
            message = parse_json(exc.read(MAX_ERROR_BYTES), what="the error")["error"]["message"]
        except (MalformedError, KeyError, TypeError):
            message = exc.reason
        if exc.code == 401:
            raise VerificationError(
                f"the server refused the token (401: {message}): check --token or PROVLEDGER_TOKEN "
                "(an admin creates one with `provledger tokens create --name NAME --scope submit`)"
            ) from exc
        error = {403: NotTrustedError}.get(exc.code) or _HTTP_ERRORS.get(exc.code, UnavailableError)
        raise error(f"the server refused the envelope ({exc.code}): {message}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise UnavailableError(f"cannot reach {server}: {getattr(exc, 'reason', exc)}") from exc


def _envelopes_from(paths: list[str]) -> Iterator[bytes | LedgerError]:
    for path in paths:
        if path.endswith(".jsonl"):
            yield from read_lines_bounded(path, MAX_ENVELOPE_BYTES)
        else:
            data = read_up_to(path, "envelope", MAX_ENVELOPE_BYTES)
            # one too big is refused alone, as a line of a .jsonl file is: the others go on
            yield data if len(data) <= MAX_ENVELOPE_BYTES else TooLargeError(
                f"envelope {path} is larger than the limit of {MAX_ENVELOPE_BYTES} bytes"
            )


def cmd_import(args: argparse.Namespace) -> int:
    from ledger.services.bulk import import_envelopes  # noqa: PLC0415

    def progress(summary: Any) -> None:
        print(
            f"\rimport: {summary.created} appended, {summary.duplicates} duplicates, {summary.refused} refused",
            end="",
            file=sys.stderr,
            flush=True,
        )

    with open_store() as st:
        summary = import_envelopes(
            st.sessions, _envelopes_from(args.files), st.log, workers=args.workers, batch_size=args.batch, progress=progress
        )
    print(file=sys.stderr)
    for position, error in sorted(summary.errors, key=lambda e: e[0]):
        print(f"refused envelope {position}: {error.diagnostics()}", file=sys.stderr)
    _out(f"{summary.created} appended, {summary.duplicates} duplicates, {summary.refused} refused; tree size {summary.tree_size}")
    return 1 if summary.refused else 0


def cmd_receipt(args: argparse.Namespace) -> int:
    with open_store() as st, st.sessions() as session:
        witnesses = witness_config_from_env()
        policy = witnesses.policy if witnesses is not None else None
        _out(json.dumps(receipts.receipt(session, args.index, witness_policy=policy), indent=2))
    return 0


def cmd_verify_receipt(args: argparse.Namespace) -> int:
    data = _read_file(args.receipt, "receipt", limit=16 * 1024 * 1024)
    expected = [keylib.load_public_key(_read_file(p, "public key")) for p in args.public_key]
    witnessed = verify_receipt_with_witnesses(
        data, args.log_key, witness_vkeys=args.witness, threshold=args.threshold, public_keys=expected
    )
    result = witnessed.receipt
    cosigned = f", cosigned by {', '.join(witnessed.witnesses)}" if witnessed.witnesses else ""
    _out(
        f"OK: entry {result.index} is in {result.checkpoint.origin} at tree size {result.checkpoint.size}, "
        f"signed by {', '.join(result.signer_key_ids)}{cosigned}"
    )
    for note in result.notes:  # what was not (and cannot be) checked offline, and how to check it
        _out(note)
    return 0


def cmd_checkpoint(args: argparse.Namespace) -> int:
    with open_store() as st, st.sessions() as session:
        cp = store.latest_checkpoint(session)
        if cp is None:
            raise UnavailableError("the store has no checkpoint yet: run `provledger init`")
        sys.stdout.write(cosigned_note(session, cp.tree_size, cp.note))
    return 0


def cmd_prove_consistency(args: argparse.Namespace) -> int:
    import base64  # noqa: PLC0415

    with open_store() as st, st.sessions() as session:
        new = args.new if args.new is not None else store.current_size(session)
        hashes = receipts.consistency_proof(session, args.old, new)
    _out(json.dumps({"old_size": args.old, "new_size": new, "hashes": [base64.b64encode(h).decode() for h in hashes]}, indent=2))
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    from ledger.cli.worker import DEFAULT_WAIT, audit_with_workers, progress_bar  # noqa: PLC0415

    if args.processes is not None and (not args.signatures or not 1 <= args.processes <= MAX_PROCESSES):
        raise MalformedError(f"--processes takes a number from 1 to {MAX_PROCESSES} and goes with --signatures")
    if args.wait is not None and not args.workers:
        raise MalformedError("--wait goes with --workers (how long to wait for a worker to pick the audit up)")
    progress = progress_bar() if not args.json and sys.stderr.isatty() else None
    if args.workers:
        # Shards on the Celery workers (Redis), or on an embedded worker when no Redis is set.
        wait = DEFAULT_WAIT if args.wait is None else args.wait
        report: Any = audit_with_workers(Settings.from_env(), progress, wait=wait)
    elif args.signatures:
        from ledger.services.shards import audit_signatures  # noqa: PLC0415

        with open_store() as st:
            report = audit_signatures(
                st.sessions, st.log, database_url=st.settings.database_url, processes=args.processes, progress=progress
            )
    else:
        with open_store() as st, st.sessions() as session:
            # hashes on every core (complete subtrees re-measured in forked processes), then,
            # unless --hashes, every table beside the leaves rebuilt from the leaf bytes
            check = audit.audit_hashes if args.hashes else audit.audit
            report = check(session, st.log, progress=progress, workers=os.cpu_count() or 1)
    if args.json:
        _out(json.dumps(report.to_json(), indent=2))
    elif report.ok:
        signatures = f", {report.signatures_checked} signatures" if args.workers or args.signatures else ""
        _out(f"OK: {report.tree_size} entries{signatures}, {report.checkpoints_checked} checkpoints re-measured")
    else:
        for p in report.problems:
            print(f"problem at {p.index}: {p.kind}: {p.message}", file=sys.stderr)
        print(f"provledger: the ledger is damaged; first bad index {report.first_bad_index}", file=sys.stderr)
    return 0 if report.ok else 1


# ------------------------------------------------------------------------------ server


def check_port_free(host: str, port: int) -> None:
    """Refuse, in one sentence and before printing anything, to serve on a port already taken."""
    import errno  # noqa: PLC0415
    import socket  # noqa: PLC0415

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise UnavailableError(
                    f"port {port} on {host} is already in use (another provledger serve?): stop it or choose another --port"
                ) from exc
            raise UnavailableError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc


def cmd_serve(args: argparse.Namespace) -> int:
    from web.server import serve  # noqa: PLC0415 - the composition root imports web lazily

    check_port_free(args.host, args.port)
    return serve(
        Settings.from_env(), host=args.host, port=args.port, workers=args.workers, threads=args.threads,
        access_log=getattr(args, "access_log", False),
    )


def cmd_worker(args: argparse.Namespace) -> int:
    from ledger.cli.worker import run_worker  # noqa: PLC0415

    return run_worker(args.celery_args)


def cmd_demo(args: argparse.Namespace) -> int:
    from ledger.cli.demo import run_demo  # noqa: PLC0415

    if not args.no_serve:
        check_port_free("127.0.0.1", args.port)
    return run_demo(Path(args.home), port=args.port, serve_it=not args.no_serve)


__all__ = [name for name in dir() if name.startswith("cmd_")]
