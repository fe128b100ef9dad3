"""``provledger verify ARTIFACT``: may I deploy this? From the local store, a server, or a bundle.

All three paths end in the same offline check (``ledger.trust.bundle_verify``): the verdict
bundle is verified against the log key and the verdict is recomputed from its bytes. The local
store and a server only differ in where the bundle comes from.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from ledger.cli.args import given, signed_index
from ledger.cli.files import read_bounded
from ledger.cli.terminal import safe
from ledger.errors import MalformedError, NotFoundError
from ledger.trust.bundle import (
    MAX_VERDICT_BUNDLE_BYTES,
    Expectations,
    VerdictBundle,
    format_verdict_bundle,
    parse_artifact_digest,
    parse_verdict_bundle,
)
from ledger.trust.bundle_verify import verify_verdict_bundle

__all__ = ["add_parser", "artifact_digest", "cmd_verify"]

#: files at least this big show hashing progress on stderr
PROGRESS_BYTES = 256 * 1024 * 1024
_READ = 4 * 1024 * 1024

HELP = """\
ARTIFACT is a file (its SHA-256 is computed while reading it) or sha256:<64 hex>.

Where the verdict comes from (each path verifies a verdict bundle and recomputes the verdict
from its bytes; nothing the source says about trust is believed):
  (default)                 the local store (PROVLEDGER_HOME / PROVLEDGER_DATABASE_URL)
  --server URL --log-key K  a ledger over HTTP: GET /api/v1/artifacts/<digest>/bundle
  --bundle FILE --log-key K a verdict bundle file, offline (no network, no database)

The log key K is the vkey string `provledger log-key` prints: <origin>+<hex id>+<base64 key>.
A verdict bundle is JSON {"media_type": "application/vnd.provledger.verdict-bundle.v1+json",
"subject", "at", "checkpoint", "trust_head", "root_of_trust", "entries": [{"index", "entry",
"inclusion"}]} (README: "Verify an artifact").

A bundle judges as of its checkpoint: an old one (or a server replaying one) verifies as of then.
With --witness and --max-age SECONDS, K witnesses must have cosigned the checkpoint that recently.

Exit status: 0 trusted (and every expectation met); 1 anything else (untrusted, stale, missing,
cyclic, a proof or signature that fails, an expectation not met); 2 bad usage or a malformed
bundle; 3 the server or database cannot be reached.

example (a deploy gate):
  provledger verify dist/app.tar.gz --server https://ledger.example \\
      --log-key "$LEDGER_LOG_KEY" --expect-predicate https://slsa.dev/provenance/v1 \\
      --expect-signer ci --bundle-out verdict-bundle.json
"""


def add_parser(sub: Any) -> None:
    s = sub.add_parser(
        "verify",
        help="may I deploy this artifact? verify its chain of trust (local store, --server or --bundle)",
        description="Judge an artifact's chain of trust from a verdict bundle the verifier checks itself.",
        epilog=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    s.add_argument("artifact", metavar="ARTIFACT", help="a file, or sha256:<64 hex>")
    source = s.add_mutually_exclusive_group()
    source.add_argument("--server", type=given, metavar="URL", help="ask this ledger over HTTP (needs --log-key)")
    source.add_argument("--bundle", type=given, metavar="FILE", help="verify this verdict bundle offline (needs --log-key)")
    s.add_argument("--log-key", type=given, metavar="VKEY", help="the log's verifier key string (default: the local log's)")
    s.add_argument("--witness", action="extend", nargs="+", type=given, default=[], metavar="VKEY",
                   help="a witness's verifier key (repeatable): the checkpoint must be cosigned")
    s.add_argument("--threshold", type=signed_index, metavar="K", help="how many distinct --witness witnesses (default: all)")
    s.add_argument("--max-age", type=signed_index, metavar="SECONDS",
                   help="K witnesses must have cosigned the checkpoint this recently (refuses replayed old bundles)")
    s.add_argument("--bundle-out", type=given, metavar="FILE", help="write the verdict bundle that was verified here")
    s.add_argument("--at", type=signed_index, metavar="INDEX", help="judge as the ledger stood at this entry index")
    s.add_argument("--expect-predicate", type=given, metavar="TYPE", help="a trusted record about the artifact has this predicate type (glob)")
    s.add_argument("--expect-signer", type=given, metavar="PRINCIPAL", help="a trusted record about the artifact is signed by this principal (or key id)")
    s.add_argument("--require-deployment", action="store_true", help="a trusted deployment (verified TEE evidence) of the artifact exists")
    s.add_argument("--json", action="store_true", help="print the result as JSON")
    s.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS", help="how long to wait for --server")
    s.set_defaults(func=cmd_verify)


def artifact_digest(artifact: str, *, progress: bool = True) -> str:
    """``sha256:<hex>`` of ARTIFACT: a digest as given, or a file's SHA-256 (streamed)."""
    if not artifact:  # Path("") is the current folder
        raise MalformedError("ARTIFACT is empty: give a file or sha256:<64 hex>")
    if artifact.lower().startswith("sha256:") and not os.path.exists(artifact):
        return parse_artifact_digest(artifact)
    path = Path(artifact)
    try:
        size = path.stat().st_size
        digest = hashlib.sha256()
        done = 0
        show = progress and size >= PROGRESS_BYTES
        last_shown = -1
        with path.open("rb") as f:
            while chunk := f.read(_READ):
                digest.update(chunk)
                done += len(chunk)
                percent = done * 100 // size if size else 100
                if show and percent // 5 != last_shown:
                    last_shown = percent // 5
                    print(f"hashing {artifact}: {percent}% of {size >> 20} MiB", file=sys.stderr, flush=True)
    except FileNotFoundError:
        raise MalformedError(f"{artifact} is neither sha256:<64 hex> nor a file that exists") from None
    except IsADirectoryError:
        raise MalformedError(f"{artifact} is a directory: give a file or sha256:<64 hex>") from None
    except OSError as exc:
        raise MalformedError(f"cannot read {artifact}: {exc.strerror or exc}") from exc
    return f"sha256:{digest.hexdigest()}"


def _witness_policy(args: argparse.Namespace) -> tuple[tuple[Any, ...], int]:
    from ledger.tlog.witness_policy import parse_witness_policy  # noqa: PLC0415

    policy = parse_witness_policy(list(args.witness), args.threshold)
    return ((), 0) if policy is None else (policy.verifiers, policy.threshold)


def _read_bundle(path: str) -> bytes:
    return read_bounded(path, "the verdict bundle", MAX_VERDICT_BUNDLE_BYTES, over="is over the limit of")


def _local_bundle(digest: str, at: int | None) -> tuple[VerdictBundle, str]:
    from ledger.cli.commands import open_store  # noqa: PLC0415
    from ledger.services.verdict_bundles import build_verdict_bundle  # noqa: PLC0415

    with open_store() as st, st.sessions() as session:
        return build_verdict_bundle(session, st.log, digest, at=at), st.log.vkey


def _missing(digest: str, why: str) -> dict[str, Any]:
    return {"artifact": digest, "verdict": "missing", "weakest_link": None, "root": None, "links": [],
            "ok": False, "expectations": [], "reasons": [why]}


def _write(path: str, raw: bytes) -> None:
    try:
        Path(path).write_bytes(raw)
    except OSError as exc:
        raise MalformedError(f"cannot write the verdict bundle to {path}: {exc.strerror or exc}") from exc


def _where(link: dict[str, Any] | None) -> str:
    if not link:
        return "none"
    where = f"entry {link['index']}" if link.get("index") is not None else "no entry"
    signer = f", signed by {link['signer']}" if link.get("signer") else ""
    return f"{where} {link['kind']} {link['subject']}{signer} ({link['verdict']})"


def _why_text(why: dict[str, Any]) -> str:
    """Why a trusted link is trusted, and its margin, in one line."""
    parts = []
    if why.get("principals"):
        parts.append(f"signed by {', '.join(map(str, why['principals']))}")
    if why.get("k") is not None and why.get("n") is not None:
        parts.append(f"{why['k']} principal(s) counted, {why['n']} needed")
    for name in ("review_by", "not_after"):
        if why.get(name):
            parts.append(f"{name.replace('_', '-')} {why[name]}")
    if isinstance(why.get("margin_seconds"), int):
        parts.append(f"margin {why['margin_seconds'] // 86400} days")
    if why.get("root"):
        parts.append(f"TEE root {why['root']}")
    return "; ".join(parts) or "trusted"


def _print_human(doc: dict[str, Any]) -> None:
    def out(text: str) -> None:
        sys.stdout.write(safe(text))

    out(f"{doc['artifact']}: {doc['verdict'].upper()}{'' if doc['ok'] or doc['verdict'] != 'trusted' else ' (an expectation is not met)'}\n")
    for why in doc.get("reasons", ()):
        out(f"  {why}\n")
    if doc.get("root") is not None:
        out(f"root: {_where(doc['root'])}\n")
        weakest = doc["weakest_link"]
        out(f"weakest link: {_where(weakest)}\n")
        why = weakest.get("reasons") or []
        if not why and isinstance(weakest.get("why"), dict):
            why = [_why_text(weakest["why"])]
        for reason in why:
            out(f"  why: {reason}\n")
        out("links:\n")
        for link in doc["links"]:
            deps = f" <- {link['depends_on']}" if link.get("depends_on") else ""
            out(f"  [{link['verdict']:>9}] {_where(link).rsplit(' (', 1)[0]}{deps}\n")
            for reason in link.get("reasons") or ():
                out(f"              {reason}\n")
    for e in doc.get("expectations", ()):
        out(f"expect {e['name']}: {'met' if e['ok'] else 'NOT MET'}: {e['reason']}\n")
    ev = doc.get("evidence")
    if ev:
        cp = ev["checkpoint"]
        cosigned = f", cosigned by {', '.join(ev['witnesses'])}" if ev["witnesses"] else ""
        out(
            f"checked: checkpoint of {cp['origin']} at size {cp['size']}{cosigned}; {ev['entries']} inclusion proofs; "
            f"{ev['signatures']} signatures; key history complete ({ev['key_events']} key events, last at entry "
            f"{ev['key_event_head']})\n"
        )


def cmd_verify(args: argparse.Namespace) -> int:
    if (args.server is not None or args.bundle is not None) and args.log_key is None:
        raise MalformedError("--server and --bundle need --log-key VKEY (the log's verifier key: `provledger log-key`)")
    if args.at is not None and args.at < 0:
        raise MalformedError("--at must be a non-negative entry index")
    if args.threshold is not None and not args.witness:
        raise MalformedError("--threshold needs --witness keys")
    if args.max_age is not None and (not args.witness or args.max_age < 0):
        raise MalformedError("--max-age needs --witness keys (only cosignatures carry a time) and a non-negative number")
    digest = artifact_digest(args.artifact)
    witnesses, threshold = _witness_policy(args)
    expectations = Expectations(args.expect_predicate, args.expect_signer, bool(args.require_deployment))
    log_key = args.log_key
    raw: bytes | None = None
    try:
        if args.bundle is not None:
            raw = _read_bundle(args.bundle)
            bundle = parse_verdict_bundle(raw)
        elif args.server is not None:
            from ledger.client import LedgerClient  # noqa: PLC0415

            raw = LedgerClient(args.server, timeout=args.timeout).verdict_bundle(digest, at=args.at)
            bundle = parse_verdict_bundle(raw)
        else:
            bundle, local_key = _local_bundle(digest, args.at)
            log_key = log_key or local_key
    except NotFoundError as exc:
        if args.at is not None and "no entry at index" in str(exc):
            raise
        doc = _missing(digest, exc.diagnostics())
        _out_doc(doc, args.json)
        return 1
    if args.bundle_out is not None:
        _write(args.bundle_out, raw if raw is not None else json.dumps(format_verdict_bundle(bundle)).encode("utf-8"))
    result = verify_verdict_bundle(
        bundle, digest, log_key, witness_verifiers=witnesses, threshold=threshold, expectations=expectations,
        at=args.at, max_age=args.max_age,
    )
    _out_doc(result.to_json(), args.json)
    return 0 if result.ok else 1


def _out_doc(doc: dict[str, Any], as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    else:
        _print_human(doc)
