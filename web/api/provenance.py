"""/api/v1 provenance routes: the chain of trust of an artifact, search, and the signers.

Reads only: no token needed (like the other GET routes of the API).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import time

from flask import Blueprint, Response, jsonify, request

from ledger.errors import MalformedError
from ledger.trust.policy import parse_time
from ledger.services import chain as chain_service
from ledger.services.trust import load_state, signer_listing
from ledger.services.verdict_bundles import verdict_bundle_json
from ledger.trust.bundle import VERDICT_BUNDLE_MEDIA_TYPE
from web.api.strict import int_arg
from web.extension import get_session, ledger

__all__ = ["bp"]

bp = Blueprint("api_provenance", __name__, url_prefix="/api/v1")


def _int(name: str, default: int | None = None, *, minimum: int = 0) -> int | None:
    if request.args.get(name) is None:
        return default
    return int_arg(name, minimum=minimum)


def _time(name: str) -> int | None:
    """An RFC 3339 query parameter; absent is None, empty is a 400 (the document says date-time)."""
    raw = request.args.get(name)
    if raw is None:
        return None
    if not raw:
        raise MalformedError(f"{name} must not be empty: give an RFC 3339 time (2026-01-31T00:00:00Z) or leave it out")
    return parse_time(raw)


@bp.get("/artifacts/<string:digest>/chain")
def get_chain(digest: str) -> Response:
    """``?at=INDEX``: as the ledger stood at that entry index."""
    return jsonify(chain_service.chain(get_session(), digest, at=_int("at")))


@bp.get("/artifacts/<string:digest>/bundle")
def get_verdict_bundle(digest: str) -> Response:
    """The verdict bundle (``?at=INDEX``: as of that entry): everything needed to re-derive the
    verdict offline. It carries no verdict. Its bytes depend only on the checkpoint it is made
    against (and its cosignatures), so it is cached per checkpoint: a strong ETag of its bytes."""
    at = _int("at")  # ASCII digits only, bounded: anything else is a 400
    ext = ledger()
    witnesses = ext.witnesses.policy if ext.witnesses is not None else None
    doc = verdict_bundle_json(get_session(), ext.log, digest, at=at, witness_policy=witnesses)
    body = json.dumps(doc, separators=(",", ":")).encode("utf-8")
    etag = hashlib.sha256(body).hexdigest()[:32]
    headers = {
        "ETag": f'"{etag}"',
        # a new checkpoint (or cosignature) makes a new bundle: revalidate, cheaply, by ETag
        "Cache-Control": "public, max-age=0, must-revalidate",
        "X-Checkpoint-Size": doc["trust_head"].split("\n")[2],
        "Vary": "Accept-Encoding",
    }
    gzipped = "gzip" in request.accept_encodings
    if gzipped:  # another representation, another strong ETag
        headers["ETag"] = f'"{etag}-gz"'
    if request.if_none_match.contains(etag) or request.if_none_match.contains(f"{etag}-gz"):
        return Response(status=304, headers=headers)
    if gzipped:
        # base64 inside base64 compresses about 4:1 (a 2.3 MB bundle travels as 0.5 MB)
        headers["Content-Encoding"] = "gzip"
        body = gzip.compress(body, 6, mtime=0)
    return Response(body, mimetype=VERDICT_BUNDLE_MEDIA_TYPE, headers=headers)


@bp.get("/search")
def get_search() -> Response:
    """``digest``, ``name`` (prefix or per-segment glob), ``signer`` (key id or principal),
    ``predicate_type`` (exact or glob), ``since``/``until`` (RFC 3339), ``after``, ``limit``."""
    entries, after = chain_service.search(
        get_session(),
        digest=request.args.get("digest"),
        name=request.args.get("name"),
        signer=request.args.get("signer"),
        predicate_type=request.args.get("predicate_type"),
        since=_time("since"),
        until=_time("until"),
        after=_int("after", -1, minimum=-1),  # type: ignore[arg-type]
        limit=_int("limit", 100, minimum=1),  # type: ignore[arg-type]
    )
    return jsonify({"entries": entries, "next": after})


@bp.get("/signers")
def get_signers() -> Response:
    state = load_state(get_session())
    return jsonify(
        {
            "root": state.root_key_id,
            "thresholds": [{"predicate_type": p, "threshold": n, "index": i} for p, (n, i) in sorted(state.thresholds.items())],
            "signers": signer_listing(get_session(), now=int(time.time())),
        }
    )
