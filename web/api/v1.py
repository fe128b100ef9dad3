"""/api/v1: the JSON API (see ../shared/GUIDE.md, Contracts: HTTP API).

Order of checks on writes: authentication (401, in a short session closed before the body is
read), then the media type (415, from the headers), then size (413), then parsing (400), then
verification (422), then trust (403). The request's own database session opens only once the
body is in hand.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

from flask import Blueprint, Response, jsonify, request

from ledger.records.dsse import MAX_ENVELOPE_BYTES
from ledger.errors import LedgerError, MalformedError, TooLargeError, UnavailableError
from ledger.records.leaf import decode_leaf
from ledger.services import append, browse, receipts
from ledger.services.deployment import appraisal_of
from ledger.services.cosign import cosigned_notes, latest_cosigned_note
from ledger.untrusted.json import parse_json
from ledger.trust.chain import parse_digest
from ledger.services.token_cache import TokenCache
from web.extension import get_session, ledger
from web.api.strict import int_arg, require_json
from web.openapi import OPENAPI

__all__ = ["bp"]

bp = Blueprint("api_v1", __name__, url_prefix="/api/v1")

MAX_BATCH_ENVELOPES = 10_000
MAX_PAGE = 1000


def _token_cache() -> TokenCache:
    """The app's token checker (ledger.services.token_cache)."""
    from flask import current_app  # noqa: PLC0415

    cache = current_app.extensions.get("provledger_token_cache")
    if cache is None:
        cache = current_app.extensions.setdefault("provledger_token_cache", TokenCache())
    return cache


def _require_token(scope: str = "submit") -> None:
    """401 unless the bearer token is live and grants ``scope``. It is checked in a session of
    its own, closed before the body is read: no database connection waits on a slow upload."""
    header = request.headers.get("Authorization", "")
    token = header[7:].strip() if header[:7].lower() == "bearer " else None
    # checked on every request without the ORM (ledger.services.token_cache): revocation is at once
    if not _token_cache().check(ledger().sessions, token, scope):
        raise _Unauthorized("a valid, unrevoked bearer token with scope %r is required" % scope)


class _Unauthorized(LedgerError):
    code = "unauthorized"
    http_status = 401
    exit_code = 3


def _read_body(limit: int) -> bytes:
    """The request body, refused with 413 (naming the limit) before reading past it."""
    length = request.content_length
    if length is not None and length > limit:
        raise TooLargeError(f"the request is {length} bytes, over the limit of {limit} bytes")
    body = request.stream.read(limit + 1)
    if len(body) > limit:
        raise TooLargeError(f"the request is over the limit of {limit} bytes")
    return body


def _writes_allowed() -> None:
    state = ledger().integrity.report()
    if state is not None:
        raise UnavailableError(
            f"writes are stopped: the ledger failed its integrity check (first bad index {state.get('first_bad_index')})"
        )


def _limits() -> tuple[int, int]:
    from flask import current_app  # noqa: PLC0415

    return (
        int(current_app.config.get("MAX_ENVELOPE_BYTES", MAX_ENVELOPE_BYTES)),
        int(current_app.config["MAX_REQUEST_BYTES"]),
    )


@bp.post("/entries")
def post_entry() -> tuple[Response, int]:
    _require_token()
    require_json()
    envelope_limit, request_limit = _limits()
    body = _read_body(min(envelope_limit, request_limit))
    _writes_allowed()
    ext = ledger()
    session = get_session()
    prepared = append.prepare(session, body, now=int(time.time()), limit=envelope_limit)
    session.rollback()
    (result,) = ext.sequencer.submit([prepared])
    if isinstance(result, LedgerError):  # refused at integration (a key event's prev, or the store refused it); its neighbours were not
        ext.count("entries_refused")
        raise result
    ext.count("entries_created" if result.created else "entries_duplicate")
    return jsonify(result.receipt), 201 if result.created else 200


@bp.post("/entries/batch")
def post_batch() -> tuple[Response, int]:
    _require_token()
    require_json()
    envelope_limit, request_limit = _limits()
    body = _read_body(request_limit)
    _writes_allowed()
    doc = parse_json(body, what="the batch")
    envelopes = doc.get("envelopes") if isinstance(doc, dict) else None
    if not isinstance(envelopes, list):
        raise MalformedError('a batch is {"envelopes": [...]}')
    if len(envelopes) > MAX_BATCH_ENVELOPES:
        raise TooLargeError(f"a batch holds at most {MAX_BATCH_ENVELOPES} envelopes, got {len(envelopes)}")
    ext = ledger()
    session = get_session()
    # Each item must be a JSON object (an envelope or a bundle); any other item is refused alone.
    objects = iter(append.prepare_batch(
        session, [e for e in envelopes if isinstance(e, dict)], now=int(time.time()), limit=envelope_limit,
        checked=True,  # parse_json held the whole body to its rules
        pace=ext.sequencer.pace,  # make way for this process's group commits
    ))
    session.rollback()
    prepared = [
        next(objects) if isinstance(e, dict) else MalformedError(f"batch item {i} is not a JSON object (a DSSE envelope or a Sigstore bundle)")
        for i, e in enumerate(envelopes)
    ]
    ready = [p for p in prepared if isinstance(p, append.Prepared)]
    done = iter(ext.sequencer.submit(ready))
    results: list[Any] = []
    counts = {"entries_created": 0, "entries_duplicate": 0, "entries_refused": 0}
    for item in prepared:
        if isinstance(item, append.Prepared):
            item = next(done)
        if isinstance(item, LedgerError):
            counts["entries_refused"] += 1
            results.append({"error": {"code": item.code, "message": item.diagnostics()}})
        else:
            appended = item
            counts["entries_created" if appended.created else "entries_duplicate"] += 1
            results.append(appended.receipt)
    for name, n in counts.items():  # once per batch: the shared counters take a lock per call
        if n:
            ext.count(name, n)
    return jsonify({"results": results}), 200


def _entry_json(session: Any, index: int) -> dict[str, Any]:
    row = browse.get_entry(session, index)
    leaf = decode_leaf(row.data)
    out: dict[str, Any] = {
        "index": row.idx,
        "leaf_hash": row.leaf_hash.hex(),
        "chain_hash": row.chain_hash.hex(),
        "integrated_time": row.integrated_time,
        # a Sigstore bundle with a message signature carries no envelope (and no statement)
        "envelope": leaf.envelope.document if leaf.envelope is not None else None,
        "statement": json.loads(leaf.envelope.payload) if leaf.envelope is not None else None,
    }
    if leaf.bundle is not None:
        out["bundle"] = leaf.bundle
        out["signer"] = leaf.signer
    appraisal = appraisal_of(session, index)  # deployments: the stored TEE appraisal
    if appraisal is not None:
        out["appraisal"] = appraisal
    return out


@bp.get("/entries/<int:index>")
def get_entry(index: int) -> Response:
    return jsonify(_entry_json(get_session(), index))


@bp.get("/entries")
def list_entries() -> Response:
    subject = request.args.get("subject")
    if not subject or ":" not in subject:
        raise MalformedError("give ?subject=<algorithm>:<hex digest>, e.g. sha256:…")
    algorithm, digest = parse_digest(subject)
    after = int_arg("after") if "after" in request.args else -1
    limit = min(int_arg("limit", 100, minimum=1), MAX_PAGE)
    session = get_session()
    indexes = browse.entry_indexes_by_subject(session, algorithm, digest, after=after, limit=limit)
    return jsonify(
        {
            "entries": [_entry_json(session, i) for i in indexes],
            "next": indexes[-1] if len(indexes) == limit else None,
        }
    )


@bp.get("/receipt/<int:index>")
def get_receipt(index: int) -> Response:
    witnesses = ledger().witnesses
    policy = witnesses.policy if witnesses is not None else None
    return jsonify(receipts.receipt(get_session(), index, witness_policy=policy))


@bp.get("/checkpoint")
def get_checkpoint() -> Response:
    note = latest_cosigned_note(get_session())
    return Response(note, mimetype="text/plain", headers={"Cache-Control": "no-cache"})


@bp.get("/checkpoints")
def get_checkpoints() -> Response:
    after = int_arg("after") if "after" in request.args else -1
    limit = min(int_arg("limit", 100, minimum=1), MAX_PAGE)
    session = get_session()
    page = browse.list_checkpoints(session, after=after, limit=limit)
    notes = cosigned_notes(session, [(c.tree_size, c.note) for c in page])
    return jsonify(
        {
            "checkpoints": [{"tree_size": c.tree_size, "note": n} for c, n in zip(page, notes, strict=True)],
            "next": page[-1].tree_size if len(page) == limit else None,
        }
    )


def _b64(hashes: list[bytes]) -> list[str]:
    return [base64.b64encode(h).decode("ascii") for h in hashes]


@bp.get("/proof/inclusion")
def get_inclusion_proof() -> Response:
    index, tree_size = int_arg("index"), int_arg("tree_size", minimum=1)
    proof = receipts.inclusion_proof(get_session(), index, tree_size)
    return jsonify({"index": index, "tree_size": tree_size, "hashes": _b64(proof)})


@bp.get("/proof/consistency")
def get_consistency_proof() -> Response:
    old, new = int_arg("old"), int_arg("new")
    proof = receipts.consistency_proof(get_session(), old, new)
    return jsonify({"old_size": old, "new_size": new, "hashes": _b64(proof)})


@bp.get("/openapi.json")
def openapi() -> Response:
    return jsonify(OPENAPI)


