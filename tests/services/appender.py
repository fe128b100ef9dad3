"""A submitter process for the crash and concurrency tests (not a test module).

    python tests/services/appender.py KEY.pem BATCH_SIZE [BATCHES] [--receipts]

Appends batches of freshly signed records to the store named by PROVLEDGER_* (forever when
BATCHES is absent) and prints one JSON line per acknowledged record, flushed, only after its
batch has committed: {"index", "leaf_hash" (hex)[, "receipt"]}.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sys
import time
from itertools import count
from pathlib import Path

from ledger.config import Settings
from ledger.db.engine import make_engine, make_session_factory
from ledger.records.dsse import sign_envelope
from ledger.records.keys import load_private_key
from ledger.services.append import Appended, append_batch
from ledger.services.log import load_log_identity
from ledger.records.statement import IN_TOTO_PAYLOAD_TYPE


def statement(n: int) -> bytes:
    name = f"proc-{os.getpid()}-{n}.tar"
    return json.dumps(
        {
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{"name": name, "digest": {"sha256": hashlib.sha256(name.encode()).hexdigest()}}],
            "predicateType": "https://slsa.dev/provenance/v1",
            "predicate": {},
        }
    ).encode()


def main(argv: list[str]) -> int:
    receipts = "--receipts" in argv
    args = [a for a in argv if not a.startswith("--")]
    key = load_private_key(Path(args[0]).read_bytes())
    batch_size = int(args[1])
    batches = int(args[2]) if len(args) > 2 else None
    settings = Settings.from_env()
    log = load_log_identity(settings)
    engine = make_engine(settings.database_url)
    sessions = make_session_factory(engine)
    numbers = count()
    done = 0
    while batches is None or done < batches:
        envelopes = [sign_envelope(statement(next(numbers)), IN_TOTO_PAYLOAD_TYPE, [key]) for _ in range(batch_size)]
        for result in append_batch(sessions, envelopes, log, now=int(time.time())):
            if not isinstance(result, Appended):
                print(f"appender: {result!r}", file=sys.stderr)
                return 1
            entry = base64.b64decode(result.receipt["entry"])
            line = {"index": result.receipt["index"], "leaf_hash": hashlib.sha256(b"\x00" + entry).hexdigest()}
            if receipts:
                line["receipt"] = result.receipt
            sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()
        done += 1
    engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
