"""``provledger keys …``, ``identities …``, ``chain`` and ``search``: the trust policy and the chain of trust.

Key commands sign a key event with the administrator key (``admin.key`` in PROVLEDGER_HOME)
and append it to the local store: the key history is in the ledger. ``chain`` exits 0 when the
chain is trusted and 1 otherwise (stale, missing or untrusted links), like every policy check.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from typing import Any

from ledger.cli.commands import _out, _read_file, now, open_store
from ledger.trust.policy import parse_time
from ledger.errors import MalformedError
from ledger.records.keys import load_public_key
from ledger.trust.policy import IDENTITY_ALGORITHM, Grant, Identity, format_time
from ledger.trust.predicates import KEY_EVENT
from ledger.cli.args import given, index, index_or_minus_one, signed_index
from ledger.services import chain as chain_service
from ledger.services import registry, setup
from ledger.services.trust import load_state

__all__ = ["add_parser"]


def add_parser(sub: Any) -> None:
    """Register ``keys``, ``identities``, ``chain`` and ``search`` on an argparse subparsers object."""
    parser_class = getattr(sub, "_parser_class", argparse.ArgumentParser)  # the caller's (exit 2 on bad usage)
    keys = sub.add_parser("keys", help="signer keys, their grants and thresholds (key events in the ledger)").add_subparsers(
        dest="keys_command", required=True, metavar="ACTION", parser_class=parser_class
    )
    s = keys.add_parser("add", help="register a signer key with its grants (fail closed: no grant, no trust)")
    s.add_argument("--name", required=True, help="the principal the key belongs to (thresholds count principals)")
    s.add_argument("--public-key", required=True, metavar="PEM", help="path to the SPKI PEM public key")
    _grant_options(s, required=True)
    s.set_defaults(func=cmd_keys_add)

    s = keys.add_parser("add-tee-root", help="register a non-vendor TEE root (a TPM EK/AK CA) in the key history")
    s.add_argument("--name", required=True, help="who the root belongs to")
    s.add_argument("--certificate", required=True, metavar="FILE", help="PEM (one or more certificates) or DER")
    s.add_argument("--review-by", type=given, metavar="T", help="RFC 3339 time after which its deployments are stale until re-affirmed (default: none)")
    s.set_defaults(func=cmd_keys_add_tee_root)

    s = keys.add_parser("import-tee-roots", help="register the TEE trust folder's roots not yet in the key history")
    s.add_argument("--dir", type=given, metavar="DIR", help="the folder (default: PROVLEDGER_TEE_TRUST_DIR, else $PROVLEDGER_HOME/tee-trust)")
    s.add_argument("--name", default="TEE trust folder", help="who the roots belong to (default: 'TEE trust folder')")
    s.set_defaults(func=cmd_keys_import_tee_roots)

    s = keys.add_parser("list", help="list registered keys")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_keys_list)

    s = keys.add_parser("show", help="one key: grants, status and its key-event history")
    s.add_argument("key_id", metavar="KEYID")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_keys_show)

    s = keys.add_parser("revoke", help="stop trusting a key's records from T on (and everything downstream)")
    s.add_argument("key_id", metavar="KEYID")
    s.add_argument("--compromised-since", type=given, metavar="T", help="RFC 3339 time (default: now)")
    s.add_argument("--reason", help="why (kept in the key event)")
    s.set_defaults(func=cmd_keys_revoke)

    s = keys.add_parser("reaffirm", help="re-affirm a key's grants until a new review-by date")
    s.add_argument("key_id", metavar="KEYID")
    s.add_argument("--review-by", required=True, metavar="T", help="RFC 3339 time")
    s.set_defaults(func=cmd_keys_reaffirm)

    s = keys.add_parser("rotate", help="replace a key by a new one (same principal and grants unless --allow)")
    s.add_argument("key_id", metavar="KEYID")
    s.add_argument("--public-key", required=True, metavar="PEM", help="the new key's SPKI PEM")
    _grant_options(s, required=False)
    s.set_defaults(func=cmd_keys_rotate)

    s = keys.add_parser("threshold", help="require N distinct principals for a predicate type")
    s.add_argument("--predicate-type", required=True, metavar="GLOB")
    s.add_argument("--count", required=True, type=signed_index, metavar="N")
    s.set_defaults(func=cmd_keys_threshold)

    identities = sub.add_parser(
        "identities", help="keyless (Sigstore certificate) signers and their grants (key events in the ledger)"
    ).add_subparsers(dest="identities_command", required=True, metavar="ACTION", parser_class=parser_class)
    s = identities.add_parser(
        "add",
        help="register a keyless signer: certificate SAN glob, OIDC issuer and (for CI) source repository",
        description="A GitHub reusable workflow's SAN is the same for every repository that calls it: "
        "pin --source-repo as well to trust one repository's builds only.",
    )
    s.add_argument("--name", required=True, help="the principal (thresholds count principals)")
    s.add_argument("--san", required=True, type=given, metavar="SAN_GLOB", help="certificate SAN; * matches within one / segment")
    s.add_argument("--issuer", required=True, type=given, metavar="URL", help="exact OIDC issuer, e.g. https://token.actions.githubusercontent.com")
    s.add_argument("--source-repo", type=given, metavar="URL", help="exact source repository (Fulcio extension .1.12), e.g. https://github.com/acme/widget")
    _grant_options(s, required=True)
    s.set_defaults(func=cmd_identities_add)

    s = identities.add_parser("list", help="list registered identities (revoke / reaffirm them with `keys` by their id)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_identities_list)

    s = sub.add_parser("chain", help="the chain of trust of an artifact, link by link")
    s.add_argument("digest", metavar="DIGEST", help="sha256:<hex>")
    s.add_argument("--at", type=index, metavar="INDEX", help="as the ledger stood at this entry index")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_chain)

    s = sub.add_parser(
        "search",
        help="find entries by free text (as the UI's search box) or by digest, subject name, signer, predicate type, time",
        epilog="examples:\n  provledger search appliance          # names, predicate types, host ids, signers containing it\n"
        "  provledger search 4bafe825           # a digest prefix (8+ hex digits)\n"
        "  provledger search --name 'acme/bios/*' --since 2026-01-01T00:00:00Z",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    s.add_argument("query", nargs="?", metavar="QUERY",
                   help="free text, read as the UI's search box reads it: a digest or digest prefix (8+ hex), "
                   "`signer:NAME`, or words matched inside subject names, predicate types, host ids and signer names")
    s.add_argument("--digest", metavar="sha256:HEX")
    s.add_argument("--name", metavar="PREFIX_OR_GLOB",
                   help="a subject-name prefix, or a glob per / segment such as 'acme/*/fw'")
    s.add_argument("--signer", metavar="KEYID_OR_PRINCIPAL")
    s.add_argument("--predicate-type", metavar="URI_OR_GLOB")
    s.add_argument("--since", type=given, metavar="T")
    s.add_argument("--until", type=given, metavar="T")
    s.add_argument("--after", type=index_or_minus_one, default=-1, metavar="INDEX", help="keyset page: entries after this index")
    s.add_argument("--limit", type=index, default=100)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_search)


def _grant_options(s: argparse.ArgumentParser, *, required: bool) -> None:
    s.add_argument("--allow", required=required, nargs="+", type=given, metavar="PREDICATE_TYPE_GLOB")
    s.add_argument("--subject", nargs="+", type=given, metavar="NAME_GLOB", help="subject-name globs, per / segment (default: any)")
    s.add_argument("--not-before", type=given, metavar="T")
    s.add_argument("--not-after", type=given, metavar="T")
    s.add_argument("--review-by", type=given, metavar="T")


def _grant(args: argparse.Namespace) -> Grant:
    def t(value: str | None) -> int | None:
        return parse_time(value) if value else None

    return Grant(
        predicate_types=tuple(args.allow),
        subjects=tuple(args.subject) if args.subject else None,
        not_before=t(args.not_before),
        not_after=t(args.not_after),
        review_by=t(args.review_by),
    )


def cmd_keys_add(args: argparse.Namespace) -> int:
    key = load_public_key(_read_file(args.public_key, "public key"))
    grant = _grant(args)
    with open_store() as st:
        admin = setup.load_admin_key(st.settings)
        result = registry.add_key(st.sessions, st.log, admin, args.name, key, [grant], now=now())
    _out(f"registered {args.name} (key event at entry {result.receipt['index']}): may sign {grant.describe()}")
    _out(key.key_id)
    return 0


def cmd_identities_add(args: argparse.Namespace) -> int:
    identity = Identity(san=args.san, issuer=args.issuer, source_repository=args.source_repo)
    grant = _grant(args)
    with open_store() as st:
        admin = setup.load_admin_key(st.settings)
        result = registry.add_identity(st.sessions, st.log, admin, args.name, identity, [grant], now=now())
    _out(f"registered {args.name} (key event at entry {result.receipt['index']}): {identity.describe()} may sign {grant.describe()}")
    _out(identity.id)
    return 0


def cmd_identities_list(args: argparse.Namespace) -> int:
    with open_store() as st:
        listing = [k for k in _listing(st) if k["algorithm"] == IDENTITY_ALGORITHM]
    if args.json:
        _out(json.dumps(listing, indent=2))
        return 0
    for k in listing:
        ident = k["identity"]
        repo = ident.get("source_repository", "any repository")
        allow = " | ".join(",".join(g["predicate_types"]) for g in k["grants"])
        _out(f"{k['key_id']}  {k['principal']}  {k['status']}  {ident['san']}  {ident['issuer']}  {repo}  {allow}")
    return 0


def _listing(st: Any) -> list[dict[str, Any]]:
    from ledger.services.trust import signer_listing  # noqa: PLC0415

    with st.sessions() as session:
        return signer_listing(session, now=now())


def cmd_keys_list(args: argparse.Namespace) -> int:
    with open_store() as st:
        listing = _listing(st)
    if args.json:
        _out(json.dumps(listing, indent=2))
        return 0
    for k in listing:
        grants = " | ".join(
            ",".join(g["predicate_types"]) + (f" for {','.join(g['subjects'])}" if g["subjects"] else "")
            + (f" review-by {g['review_by']}" if g["review_by"] else "") + f" ({g['state']})"
            for g in k["grants"]
        )
        status = f"{k['state']} (since {k['stale_since']}: re-affirm it)" if k["state"] == "stale" and k["stale_since"] else k["state"]
        _out(f"{k['key_id']}  {k['principal']}  {k['algorithm']}  {status}  {grants}")
    return 0


def cmd_keys_show(args: argparse.Namespace) -> int:
    with open_store() as st:
        with st.sessions() as session:
            state = load_state(session)
            key = state.keys.get(args.key_id)
            if key is None:
                from ledger.errors import NotFoundError  # noqa: PLC0415

                raise NotFoundError(f"no key {args.key_id} is registered")
            history, _ = chain_service.search(session, digest=f"sha256:{args.key_id}", predicate_type=KEY_EVENT, limit=1000)
    doc = {**key.to_json(), "history": [{"index": h["index"], "integrated_time": format_time(h["integrated_time"])} for h in history]}
    if args.json:
        _out(json.dumps(doc, indent=2))
    else:
        for name, value in doc.items():
            _out(f"{name}: {json.dumps(value) if isinstance(value, list | dict) else value}")
    return 0


def cmd_keys_add_tee_root(args: argparse.Namespace) -> int:
    from cryptography.hazmat.primitives.serialization import Encoding  # noqa: PLC0415

    from ledger.errors import MalformedError  # noqa: PLC0415

    blob = _read_file(args.certificate, "certificate")
    from ledger.untrusted.x509 import load_der_certificate, load_pem_certificates  # noqa: PLC0415

    try:
        certs = load_pem_certificates(blob) if b"-----BEGIN" in blob else [load_der_certificate(blob)]
    except MalformedError as exc:
        raise MalformedError(f"{args.certificate} is not a certificate: {exc}") from exc
    with open_store() as st:
        admin = setup.load_admin_key(st.settings)
        for cert in certs:
            result = registry.add_tee_root(
                st.sessions, st.log, admin, args.name, cert.public_bytes(Encoding.DER), now=now(),
                review_by=parse_time(args.review_by) if args.review_by else None,
            )
            _out(f"registered TEE root {cert.subject.rfc4514_string()} (key event at entry {result.receipt['index']})")
            _out(hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest())
    return 0


def cmd_keys_import_tee_roots(args: argparse.Namespace) -> int:
    from pathlib import Path  # noqa: PLC0415

    from ledger.services.deployment import load_tpm_roots, trust_dir  # noqa: PLC0415

    folder = Path(args.dir) if args.dir else trust_dir()
    with open_store() as st:
        admin = setup.load_admin_key(st.settings)
        done = registry.import_tee_roots(st.sessions, st.log, admin, load_tpm_roots(folder), name=args.name, now=now())
    for fingerprint, result in done:
        _out(f"registered TEE root {fingerprint} (key event at entry {result.receipt['index']})")
    _out(f"{len(done)} root(s) imported from {folder}")
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    since = parse_time(args.compromised_since) if args.compromised_since else None
    with open_store() as st:
        admin = setup.load_admin_key(st.settings)
        result = registry.revoke_key(st.sessions, st.log, admin, args.key_id, now=now(), compromised_since=since, reason=args.reason)
    _out(f"revoked {args.key_id} (key event at entry {result.receipt['index']}); records from {format_time(since) or 'now'} on are not trusted")
    return 0


def cmd_keys_reaffirm(args: argparse.Namespace) -> int:
    review_by = parse_time(args.review_by)
    with open_store() as st:
        admin = setup.load_admin_key(st.settings)
        result = registry.reaffirm_key(st.sessions, st.log, admin, args.key_id, review_by=review_by, now=now())
    _out(f"re-affirmed {args.key_id} until {format_time(review_by)} (key event at entry {result.receipt['index']})")
    return 0


def cmd_keys_rotate(args: argparse.Namespace) -> int:
    key = load_public_key(_read_file(args.public_key, "public key"))
    grants = [_grant(args)] if args.allow else None
    with open_store() as st:
        admin = setup.load_admin_key(st.settings)
        result = registry.rotate_key(st.sessions, st.log, admin, args.key_id, key, now=now(), grants=grants)
    _out(f"rotated {args.key_id} to {key.key_id} (key event at entry {result.receipt['index']})")
    _out(key.key_id)
    return 0


def cmd_keys_threshold(args: argparse.Namespace) -> int:
    if args.count < 1:
        from ledger.errors import MalformedError  # noqa: PLC0415

        raise MalformedError("--count must be at least 1")
    with open_store() as st:
        admin = setup.load_admin_key(st.settings)
        result = registry.set_threshold(st.sessions, st.log, admin, args.predicate_type, args.count, now=now())
    _out(f"{args.predicate_type} now needs {args.count} distinct principals (key event at entry {result.receipt['index']})")
    return 0


def cmd_chain(args: argparse.Namespace) -> int:
    with open_store() as st, st.sessions() as session:
        doc = chain_service.chain(session, args.digest, at=args.at)
    if args.json:
        _out(json.dumps(doc, indent=2))
    elif not any(link.get("index") is not None for link in doc["links"]):
        _out(f"{doc['artifact']}: missing: no record about it is in the ledger"
             f"{' as of index ' + str(args.at) if args.at is not None else ''}, so nothing vouches for it")
    else:
        _out(f"{doc['artifact']}: {doc['verdict']}")
        for link in doc["links"]:
            where = f"entry {link['index']}" if link["index"] is not None else "(no record)"
            signer = f" signed by {link['signer']}" if link["signer"] else ""
            deps = f" ← {link['depends_on']}" if link["depends_on"] else ""
            _out(f"  [{link['verdict']:>9}] {where} {link['kind']} {link['subject']}{signer}{deps}")
            for reason in link["reasons"]:
                _out(f"              {reason}")
            why = link.get("why") or {}
            if link["verdict"] in ("trusted", "stale") and why.get("principals"):
                bits = [f"{why.get('k')} of {why.get('n')} principals ({', '.join(why['principals'])})"]
                bits += [f"grant {g}" for g in (why.get("grants") or {}).values()][:2]
                bits += [f"{name.replace('_', '-')} {why[name]}" for name in ("review_by", "not_after") if why.get(name)]
                _out(f"              why: {'; '.join(bits)}")
        w, r = doc["weakest_link"], doc["root"]
        because = f"; {w['weakest_because']}" if w.get("weakest_because") else ""
        _out(f"weakest link: {'entry ' + str(w['index']) if w['index'] is not None else w['subject']} ({w['verdict']}{because})")
        _out(f"root: {'entry ' + str(r['index']) if r['index'] is not None else r['subject']} ({r['kind']})")
    return 0 if doc["verdict"] == "trusted" else 1


def _cmd_find(args: argparse.Namespace) -> int:
    """``search QUERY``: the same reading of the query, and so the same entries, as the UI's box."""
    from ledger.services.search import search  # noqa: PLC0415

    if not 1 <= args.limit <= 1000:
        raise MalformedError("--limit must be between 1 and 1000")
    with open_store() as st, st.sessions() as session:
        found = search(session, args.query, after=args.after, limit=args.limit)
    rows = found.results
    if args.json:
        _out(json.dumps({"query": args.query, "meaning": found.meaning, "next": found.next_after, "entries": [
            {"index": r.index, "integrated_time": r.integrated_time, "predicate_type": r.predicate_type,
             "key_id": r.key_id, "signer": r.signer,
             "subjects": [{"algorithm": a, "digest": d, "name": n} for a, d, n in r.subjects]} for r in rows]}, indent=2))
        return 0
    _out(f"read as: {'; '.join(found.meaning)}")
    for r in rows:
        _out(f"{r.index}  {format_time(r.integrated_time)}  {r.predicate_type}  {', '.join(r.subject_names)}  by {r.signer or r.key_id[:12]}")
    if not rows:
        _out("no entries found")
    if found.next_after is not None:
        _out(f"more: --after {found.next_after}")
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    if args.query is not None:
        if any(v is not None for v in (args.digest, args.name, args.signer, args.predicate_type, args.since, args.until)):
            raise MalformedError("give either a free-text QUERY or the --digest/--name/--signer/--predicate-type/--since/--until filters, not both")
        return _cmd_find(args)
    with open_store() as st, st.sessions() as session:
        entries, after = chain_service.search(
            session,
            digest=args.digest,
            name=args.name,
            signer=args.signer,
            predicate_type=args.predicate_type,
            since=parse_time(args.since) if args.since else None,
            until=parse_time(args.until) if args.until else None,
            after=args.after,
            limit=args.limit,
        )
    if args.json:
        _out(json.dumps({"entries": entries, "next": after}, indent=2))
        return 0
    for e in entries:
        names = ", ".join(s["name"] or s["digest"] for s in e["subjects"])
        signers = ", ".join(s["principal"] or s["key_id"][:12] for s in e["signers"])
        _out(f"{e['index']}  {format_time(e['integrated_time'])}  {e['kind']}  {names}  by {signers}")
    if after is not None:
        _out(f"more: --after {after}")
    return 0
