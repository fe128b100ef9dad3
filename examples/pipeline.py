#!/usr/bin/env python3
"""A release pipeline's provenance step: hash the artifact, sign an SLSA v1 statement about it,
submit it to the ledger, check the receipt offline, and print the artifact's chain verdict.

Every input is named here; nothing is assumed from the caller's shell:

    python examples/pipeline.py ARTIFACT [--subject NAME] [--base-digest SHA256_HEX]

    PROVLEDGER_URL          the ledger's base URL                 (default http://127.0.0.1:8000)
    PROVLEDGER_TOKEN        a submit token: provledger tokens create --name ci --scope submit
    PROVLEDGER_LOG_KEY      the log's verifier key, obtained once from the ledger's operator
                            (provledger log-key): the receipt is checked against it, not the server
    PROVLEDGER_SIGNING_KEY  the pipeline's private key (default $PROVLEDGER_HOME/keys/ci.pem)

Exit status: 0 the record is in the ledger and the artifact's chain is trusted; 1 otherwise.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from pathlib import Path

from ledger.client import LedgerClient, sign_statement, statement
from ledger.errors import LedgerError
from ledger.records.keys import load_private_key

SLSA_V1 = "https://slsa.dev/provenance/v1"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("artifact", type=Path, help="the file the pipeline built")
    parser.add_argument("--subject", help="the artifact's name in the ledger (default myorg/app/<file name>)")
    parser.add_argument("--base-digest", metavar="SHA256_HEX", help="the digest of the base image it was built from, if any")
    args = parser.parse_args()

    server = os.environ.get("PROVLEDGER_URL", "http://127.0.0.1:8000")
    token = os.environ.get("PROVLEDGER_TOKEN")
    log_vkey = os.environ.get("PROVLEDGER_LOG_KEY")
    home = Path(os.environ.get("PROVLEDGER_HOME", "var"))
    key_path = Path(os.environ.get("PROVLEDGER_SIGNING_KEY", home / "keys" / "ci.pem"))
    missing = [name for name, value in (("PROVLEDGER_TOKEN", token), ("PROVLEDGER_LOG_KEY", log_vkey)) if not value]
    if missing:
        print(f"pipeline: set {' and '.join(missing)} first (see the top of {__file__})", file=sys.stderr)
        return 2

    digest = sha256_file(args.artifact)
    subject = args.subject or f"myorg/app/{args.artifact.name}"
    dependencies = [{"uri": "oci://registry.example/base", "digest": {"sha256": args.base_digest}}] if args.base_digest else []
    stmt = statement([(subject, digest)], SLSA_V1, {
        "buildDefinition": {"buildType": "https://ci.example/release/v1", "externalParameters": {},
                            "resolvedDependencies": dependencies},
        "runDetails": {"builder": {"id": "https://ci.example"}},
    })
    try:
        key = load_private_key(key_path.read_bytes())
        client = LedgerClient(server, token=token)
        receipt = client.submit(sign_statement(stmt, [key]))
        LedgerClient.verify(receipt, log_vkey)  # offline: inclusion proof and signed checkpoint
        verdict = client.chain(f"sha256:{digest}")["verdict"]
    except (LedgerError, OSError) as exc:
        print(f"pipeline: {exc}", file=sys.stderr)
        return 1
    print(f"sha256:{digest} is entry {receipt['index']}; receipt verified; chain verdict: {verdict}")
    return 0 if verdict == "trusted" else 1


if __name__ == "__main__":
    sys.exit(main())
