"""``provledger witness``: run an independent witness (c2sp.org/tlog-witness).

``witness keygen --name NAME [--out PATH]`` writes the witness key and prints its cosignature
verifier key (the one logs and verifiers configure) last. ``witness serve --log-vkey VKEY…``
cosigns checkpoints of those logs at ``POST /add-checkpoint``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ledger.cli.args import given, port
from ledger.cli.files import write_new_key
from ledger.config import Settings
from ledger.errors import MalformedError
from ledger.tlog.note import Ed25519CosignatureSigner, generate_signer, is_valid_key_name
from ledger.tlog.witness import FileStateStore, Witness, load_cosigner

__all__ = ["add_parser", "cmd_keygen", "cmd_serve"]

DEFAULT_PORT = 8001


def _home() -> Path:
    return Settings.from_env().home


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``witness keygen`` and ``witness serve``; returns the ``witness`` parser."""
    witness = subparsers.add_parser(
        "witness", help="run an independent witness that cosigns checkpoints"
    )
    actions = witness.add_subparsers(dest="witness_command", metavar="ACTION", required=True)

    s = actions.add_parser(
        "keygen", help="write a witness key (0600); prints its cosignature vkey last"
    )
    s.add_argument("--name", required=True, help="the witness's name, e.g. witness.example.com")
    s.add_argument("--out", type=given, metavar="PATH", help="default: $PROVLEDGER_HOME/witness.key")
    s.set_defaults(func=cmd_keygen)

    s = actions.add_parser("serve", help="serve POST /add-checkpoint for the given logs")
    s.add_argument(
        "--log-vkey",
        required=True,
        action="append",
        metavar="VKEY",
        help="a log's verifier key (repeatable); the log's origin is the key's name",
    )
    s.add_argument(
        "--key", type=given, metavar="PATH", help="witness key (default: $PROVLEDGER_HOME/witness.key)"
    )
    s.add_argument(
        "--state", type=given, metavar="PATH", help="state file (default: $PROVLEDGER_HOME/witness-state.json)"
    )
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=port, default=DEFAULT_PORT)
    s.set_defaults(func=cmd_serve)
    return witness


def cmd_keygen(args: argparse.Namespace) -> int:
    if not is_valid_key_name(args.name):
        raise MalformedError(f"witness name {args.name!r} must be non-empty with no space or '+'")
    path = Path(args.out) if args.out is not None else _home() / "witness.key"
    signer = generate_signer(args.name)
    write_new_key(path, (signer.skey + "\n").encode("ascii"), "the witness key")
    cosigner: Ed25519CosignatureSigner = load_cosigner(path)
    print(f"wrote {path}")
    print(cosigner.vkey)
    return 0


def build_witness(args: argparse.Namespace) -> Witness:
    key = Path(args.key) if args.key is not None else _home() / "witness.key"
    state = Path(args.state) if args.state is not None else _home() / "witness-state.json"
    store = FileStateStore(state)
    store.load()  # refuse to start on a damaged state file (fail closed)
    return Witness.from_vkeys(load_cosigner(key), args.log_vkey, store)


def cmd_serve(args: argparse.Namespace) -> int:
    witness = build_witness(args)
    from web.witness import serve_witness  # noqa: PLC0415 - the composition root imports web lazily

    return serve_witness(witness, host=args.host, port=args.port)
