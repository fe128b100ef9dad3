"""``provledger``: the command line, and the composition root.

Exit codes: 0 success; 1 a verification, policy or integrity failure; 2 malformed input or bad
usage; 3 an operational failure (database or server unreachable, store not initialised).
Errors go to stderr as one sentence.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ledger import __version__
from ledger.cli.args import count, given, index, port, processes, signed_index
from ledger.cli.terminal import safe
from ledger.errors import LedgerError

__all__ = ["build_parser", "main"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # bad usage is exit 2, one sentence on stderr
        self.print_usage(sys.stderr)
        print(f"provledger: error: {message}", file=sys.stderr)
        raise SystemExit(2)


class _WorkerHelp(argparse.Action):
    """``provledger worker --help``: ours, then Celery's worker options (they all pass through)."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, default: str = argparse.SUPPRESS,
                 help: str | None = None) -> None:  # noqa: A002 - argparse's name
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:
        from ledger.cli.worker import celery_worker_help  # noqa: PLC0415 - imports Celery

        parser.print_help()
        print("\nCelery's worker options (all accepted, unchanged):\n")
        print(celery_worker_help())
        parser.exit()


def _split_worker_args(argv: list[str]) -> tuple[list[str], list[str]]:
    """``worker`` hands everything after it to Celery (only ``-h``/``--help`` is ours); a leading
    ``--`` is dropped (Celery would read what follows it as configuration)."""
    if not argv or argv[0] != "worker":
        return argv, []
    rest = argv[1:]
    if rest[:1] == ["--"]:
        return ["worker"], rest[1:]
    if any(a in ("-h", "--help") for a in rest):
        return ["worker", "--help"], []
    return ["worker"], rest


def build_parser() -> argparse.ArgumentParser:
    from ledger.cli import commands as c  # noqa: PLC0415 - keep `--help` fast

    p = _Parser(prog="provledger", description="A supply-chain provenance ledger with offline receipts.")
    p.add_argument("--version", action="version", version=f"provledger {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    s = sub.add_parser("init", help="create or upgrade the database and the log key (idempotent)")
    s.set_defaults(func=c.cmd_init)

    s = sub.add_parser("log-key", help="print the log's C2SP verifier key")
    s.set_defaults(func=c.cmd_log_key)

    s = sub.add_parser(
        "keygen",
        help="write a signing key (PKCS#8 PEM, mode 0600) and its public key (PATH.pub)",
        epilog="example:\n  provledger keygen --out \"$PROVLEDGER_HOME/keys/ci.pem\"   # then: keys add --public-key …/ci.pem.pub",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    s.add_argument("--out", required=True, metavar="PATH",
                   help="where to write the private key (mode 0600; refuses to overwrite); the public key goes to "
                   "PATH.pub. Keep keys out of the working tree: under $PROVLEDGER_HOME/keys/, as README does")
    s.add_argument("--algorithm", choices=["ed25519", "ecdsa-p256"], default="ed25519",
                   help="the signature algorithm (default: ed25519)")
    s.set_defaults(func=c.cmd_keygen)


    tokens = sub.add_parser("tokens", help="API tokens for the HTTP API").add_subparsers(
        dest="tokens_command", required=True, metavar="ACTION", parser_class=_Parser
    )
    s = tokens.add_parser("create", help="create a bearer token (printed once, stored hashed)")
    s.add_argument("--name", required=True, help="the token's name, unique (used by `tokens revoke`)")
    s.add_argument("--scope", required=True, choices=["submit", "admin"])
    s.set_defaults(func=c.cmd_tokens_create)
    s = tokens.add_parser("list", help="the tokens: names, scopes, created, last used, revoked (never the secret)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=c.cmd_tokens_list)
    s = tokens.add_parser("revoke", help="revoke the live tokens named NAME (they get 401; their admin sessions end)")
    s.add_argument("name", metavar="NAME")
    s.set_defaults(func=c.cmd_tokens_revoke)

    s = sub.add_parser("sign", help="sign an in-toto Statement into a DSSE envelope (stdout)")
    s.add_argument("--key", required=True, metavar="PATH", help="PKCS#8 PEM private key")
    s.add_argument("statement", metavar="STATEMENT.json")
    s.set_defaults(func=c.cmd_sign)

    s = sub.add_parser("submit", help="append a DSSE envelope; prints its receipt")
    s.add_argument("envelope", metavar="ENVELOPE.json")
    s.add_argument("--server", type=given, metavar="URL", help="submit over HTTP instead of to the local store")
    s.add_argument("--token", type=given, metavar="T", help="bearer token for --server (or PROVLEDGER_TOKEN)")
    s.set_defaults(func=c.cmd_submit)

    s = sub.add_parser("import", help="bulk-append envelopes (files of one envelope, or .jsonl with one per line)")
    s.add_argument("files", nargs="+", metavar="FILE")
    s.add_argument("--workers", type=processes, default=None, help="verification processes (default: one per core)")
    s.add_argument("--batch", type=count, default=2000, help="entries per transaction and checkpoint (1 to 1,000,000)")
    s.set_defaults(func=c.cmd_import)

    s = sub.add_parser("receipt", help="the receipt of an entry against the latest checkpoint")
    s.add_argument("index", type=index, metavar="INDEX")
    s.set_defaults(func=c.cmd_receipt)

    s = sub.add_parser("verify-receipt", help="verify a receipt offline (no database, no network)")
    s.add_argument("receipt", metavar="RECEIPT.json")
    s.add_argument("--log-key", required=True, type=given, metavar="VKEY", help="the log's verifier key string")
    s.add_argument("--public-key", action="append", default=[], metavar="PEM",
                   help="require a signature by this key (repeatable)")
    s.add_argument("--witness", action="extend", nargs="+", type=given, default=[], metavar="VKEY",
                   help="a witness's verifier key (repeatable): apply a k-of-n witness policy")
    s.add_argument("--threshold", type=signed_index, metavar="K",
                   help="how many distinct --witness witnesses must cosign (default: all)")
    s.set_defaults(func=c.cmd_verify_receipt)

    s = sub.add_parser("checkpoint", help="print the latest signed checkpoint")
    s.set_defaults(func=c.cmd_checkpoint)

    s = sub.add_parser("prove-consistency", help="a consistency proof between two tree sizes (JSON)")
    s.add_argument("--old", type=index, required=True, metavar="M")
    s.add_argument("--new", type=index, metavar="N", help="default: the latest tree size")
    s.set_defaults(func=c.cmd_prove_consistency)

    s = sub.add_parser(
        "audit",
        help="re-measure the whole ledger; exit 1 on any problem",
        description="Re-measure the whole ledger; exit 1 naming the first bad index. Without options: every "
        "leaf hash, the hash chain, every interior hash, every checkpoint (signature and root), the sizes "
        "and the trust state, in one streaming pass. --signatures and --workers check all of that and "
        "also re-verify every DSSE signature in every leaf; --hashes checks only the hashes.",
    )
    s.add_argument("--json", action="store_true")
    mode = s.add_mutually_exclusive_group()
    mode.add_argument("--hashes", action="store_true",
                      help="hash level only: leaves, chain, interior hashes, checkpoints, sizes; not the trust "
                      "state or the other tables rebuilt from the leaves (a quick check of the bytes)")
    mode.add_argument("--signatures", action="store_true",
                      help="also re-verify every signature, on every core of this machine (no Redis needed)")
    mode.add_argument("--workers", action="store_true",
                      help="also re-verify every signature, sharded on the Celery workers (`provledger worker`)")
    s.add_argument("--processes", type=index, metavar="N", help="with --signatures: processes (default: one per core, at most 256)")
    s.add_argument("--wait", type=float, metavar="SECONDS", default=None,
                   help="with --workers: give up (exit 3, nothing recorded) if no worker picks the audit up "
                   "within SECONDS (default 30)")
    s.set_defaults(func=c.cmd_audit)

    s = sub.add_parser("serve", help="serve the HTTP API (refuses to start on a failed integrity check)")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=port, default=8000)
    s.add_argument("--workers", type=index, default=None, help="WSGI worker processes (default: one per core, at most 256)")
    s.add_argument("--threads", type=index, default=16, help="threads per worker process (at most 1,024)")
    s.add_argument("--access-log", action="store_true", help="log one line per request on stderr (default: off, a line per request costs throughput)")
    s.set_defaults(func=c.cmd_serve)

    s = sub.add_parser(
        "worker",
        help="a Celery worker for this ledger (every Celery worker option passes through)",
        usage="provledger worker [CELERY WORKER OPTIONS ...]",
        description="A Celery worker for this ledger: shard audits, checkpoint publishing, scheduled audits. "
        "Every option is handed unchanged to Celery's worker command on the `workers` app, as "
        "`celery -A workers worker` takes it: e.g. `provledger worker --concurrency 4`, "
        "`provledger worker --beat` (the scheduler too), `-Q QUEUES`, `--loglevel DEBUG`, `-n NAME`. "
        "It needs PROVLEDGER_REDIS_URL to share work with other machines; without it the worker runs "
        "embedded in this process and takes only -c/--concurrency, -B/--beat and -l/--loglevel.",
        add_help=False,
    )
    s.add_argument("-h", "--help", action=_WorkerHelp, help="show this help and Celery's worker options")
    s.set_defaults(func=c.cmd_worker, celery_args=[])

    s = sub.add_parser("demo", help="a fresh demo ledger with a realistic supply chain, served")
    s.add_argument("--home", default="var/demo", help="where to create it (default var/demo)")
    s.add_argument("--port", type=port, default=8000)
    s.add_argument("--no-serve", action="store_true", help="build the demo ledger and exit")
    s.set_defaults(func=c.cmd_demo)

    from ledger.cli import attest  # noqa: PLC0415

    attest.add_parser(sub)
    from ledger.cli import witness  # noqa: PLC0415

    witness.add_parser(sub)
    from ledger.cli import provenance  # noqa: PLC0415

    provenance.add_parser(sub)
    from ledger.cli import verify  # noqa: PLC0415

    verify.add_parser(sub)
    from ledger.cli.help import complete_help  # noqa: PLC0415

    complete_help(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    own, celery_args = _split_worker_args(list(sys.argv[1:] if argv is None else argv))
    args = parser.parse_args(own)
    if celery_args:
        args.celery_args = celery_args
    try:
        return int(args.func(args) or 0)
    except LedgerError as exc:
        print(f"provledger: {safe(exc.diagnostics())}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `provledger search … | head`: the reader has what it wanted
        import os  # noqa: PLC0415

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
