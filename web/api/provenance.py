"""/api/v1 provenance routes: the chain of trust of an artifact, search, and the signers.

Reads only: no token needed (like the other GET routes of the API).
"""

from __future__ import annotations

import time

from flask import Blueprint, Response, jsonify, request

from ledger.errors import MalformedError
from ledger.trust.policy import parse_time
from ledger.services import chain as chain_service
from ledger.services.trust import load_state, signer_listing
from web.extension import get_session

__all__ = ["bp"]

bp = Blueprint("api_provenance", __name__, url_prefix="/api/v1")


def _int(name: str, default: int | None = None, *, minimum: int = 0) -> int | None:
    raw = request.args.get(name)
    if raw is None:
        return default
    if not raw.lstrip("-").isdigit() or int(raw) < minimum:
        raise MalformedError(f"the query parameter {name} must be an integer >= {minimum}")
    return int(raw)


def _time(name: str) -> int | None:
    raw = request.args.get(name)
    return parse_time(raw) if raw else None


@bp.get("/artifacts/<string:digest>/chain")
def get_chain(digest: str) -> Response:
    """``?at=INDEX``: as the ledger stood at that entry index."""
    return jsonify(chain_service.chain(get_session(), digest, at=_int("at")))


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
