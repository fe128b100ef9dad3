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
from ledger.errors import LedgerError

__all__ = ["build_parser", "main"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # bad usage is exit 2, one sentence on stderr
        self.print_usage(sys.stderr)
        print(f"provledger: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    from ledger.cli import commands as c  # noqa: PLC0415 - keep `--help` fast

    p = _Parser(prog="provledger", description="A supply-chain provenance ledger with offline receipts.")
    p.add_argument("--version", action="version", version=f"provledger {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    s = sub.add_parser("init", help="create or upgrade the database and the log key (idempotent)")
    s.set_defaults(func=c.cmd_init)

    s = sub.add_parser("log-key", help="print the log's C2SP verifier key")
    s.set_defaults(func=c.cmd_log_key)

    s = sub.add_parser("keygen", help="write a signing key (PKCS#8 PEM) and its public key (PATH.pub)")
    s.add_argument("--out", required=True, metavar="PATH")
    s.add_argument("--algorithm", choices=["ed25519", "ecdsa-p256"], default="ed25519")
    s.set_defaults(func=c.cmd_keygen)


    tokens = sub.add_parser("tokens", help="API tokens for the HTTP API").add_subparsers(
        dest="tokens_command", required=True, metavar="ACTION", parser_class=_Parser
    )
    s = tokens.add_parser("create", help="create a bearer token (printed once, stored hashed)")
    s.add_argument("--name", required=True)
    s.add_argument("--scope", required=True, choices=["submit", "admin"])
    s.set_defaults(func=c.cmd_tokens_create)

    s = sub.add_parser("sign", help="sign an in-toto Statement into a DSSE envelope (stdout)")
    s.add_argument("--key", required=True, metavar="PATH", help="PKCS#8 PEM private key")
    s.add_argument("statement", metavar="STATEMENT.json")
    s.set_defaults(func=c.cmd_sign)

    s = sub.add_parser("submit", help="append a DSSE envelope; prints its receipt")
    s.add_argument("envelope", metavar="ENVELOPE.json")
    s.add_argument("--server", metavar="URL", help="submit over HTTP instead of to the local store")
    s.add_argument("--token", metavar="T", help="bearer token for --server (or PROVLEDGER_TOKEN)")
    s.set_defaults(func=c.cmd_submit)

    s = sub.add_parser("import", help="bulk-append envelopes (files of one envelope, or .jsonl with one per line)")
    s.add_argument("files", nargs="+", metavar="FILE")
    s.add_argument("--workers", type=int, default=None, help="verification processes (default: one per core)")
    s.add_argument("--batch", type=int, default=2000, help="entries per transaction and checkpoint")
    s.set_defaults(func=c.cmd_import)

    s = sub.add_parser("receipt", help="the receipt of an entry against the latest checkpoint")
    s.add_argument("index", type=int, metavar="INDEX")
    s.set_defaults(func=c.cmd_receipt)

    s = sub.add_parser("verify-receipt", help="verify a receipt offline (no database, no network)")
    s.add_argument("receipt", metavar="RECEIPT.json")
    s.add_argument("--log-key", required=True, metavar="VKEY", help="the log's verifier key string")
    s.add_argument("--public-key", action="append", default=[], metavar="PEM",
                   help="require a signature by this key (repeatable)")
    s.add_argument("--witness", action="extend", nargs="+", default=[], metavar="VKEY",
                   help="a witness's verifier key (repeatable): apply a k-of-n witness policy")
    s.add_argument("--threshold", type=int, metavar="K",
                   help="how many distinct --witness witnesses must cosign (default: all)")
    s.set_defaults(func=c.cmd_verify_receipt)

    s = sub.add_parser("checkpoint", help="print the latest signed checkpoint")
    s.set_defaults(func=c.cmd_checkpoint)

    s = sub.add_parser("prove-consistency", help="a consistency proof between two tree sizes (JSON)")
    s.add_argument("--old", type=int, required=True, metavar="M")
    s.add_argument("--new", type=int, metavar="N", help="default: the latest tree size")
    s.set_defaults(func=c.cmd_prove_consistency)

    s = sub.add_parser("audit", help="re-measure the whole ledger; exit 1 on any problem")
    s.add_argument("--json", action="store_true")
    s.add_argument("--workers", action="store_true", help="run on the Celery workers")
    s.set_defaults(func=c.cmd_audit)

    s = sub.add_parser("serve", help="serve the HTTP API (refuses to start on a failed integrity check)")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--workers", type=int, default=1, help="WSGI worker processes (default 1)")
    s.add_argument("--threads", type=int, default=16, help="threads per worker process")
    s.set_defaults(func=c.cmd_serve)

    s = sub.add_parser("worker", help="a Celery worker for this ledger")
    s.add_argument("celery_args", nargs=argparse.REMAINDER, help="options for celery worker, e.g. --concurrency 2 --beat")
    s.set_defaults(func=c.cmd_worker)

    s = sub.add_parser("demo", help="a fresh demo ledger with a realistic supply chain, served")
    s.add_argument("--home", default="var/demo", help="where to create it (default var/demo)")
    s.add_argument("--port", type=int, default=8000)
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
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except LedgerError as exc:
        print(f"provledger: {exc.diagnostics()}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
