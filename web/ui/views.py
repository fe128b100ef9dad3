"""The auditor pages: server-rendered, read-only for everyone, admin actions behind a login.

Every value that came from a submitter reaches the browser through Jinja's autoescaping (or
``markupsafe.escape`` in the SVG drawing); nothing here marks submitter data safe.
"""

from __future__ import annotations

import base64
import logging
import json
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, abort, current_app, g, redirect, render_template, request, session as cookie, url_for

from ledger.errors import IntegrityError, MalformedError, NotFoundError
from ledger.records.leaf import decode_leaf
from ledger.untrusted.json import parse_decimal
from ledger.services import receipts, registry
from ledger.services import sessions as admin_sessions
from ledger.services.sessions import AdminLogin
from ledger.trust.states import grant_state, key_state
from ledger.trust.policy import KeyState
from ledger.services import browse
from ledger.services import setup as ledger_setup
from ledger.services.deployment import appraisals_of
from ledger.services.search import SearchResult, normalise_digest
from ledger.services.search import search as search_entries
from ledger.services.trust import key_rows, load_keys
from web.extension import get_session, ledger, write_session
import web.ui.chains as chains
import web.ui.graph as graph
from web.ui.security import check_csrf, csrf_token

__all__ = ["bp"]

log = logging.getLogger(__name__)

bp = Blueprint(
    "ui",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/ui/static",
)

PAGE = 25
RECENT = 10
#: Indexes and sizes are 63-bit in the store; larger numbers are refused, not overflowed.
MAX_INT = 2**63 - 1
#: A statement larger than this is shown cut, with a link to the full JSON.
MAX_STATEMENT_CHARS = 200_000
HOUR, DAY = 3600, 86400


# ------------------------------------------------------------------------------ helpers


def _int_arg(name: str, *, minimum: int = 0) -> int | None:
    raw = request.args.get(name, "").strip()
    if raw == "":
        return None
    try:
        return parse_decimal(raw, what=name, minimum=minimum, maximum=MAX_INT)
    except MalformedError:  # ASCII digits only: "١" is not a number here
        raise MalformedError(f"{name} must be a whole number of at least {minimum}") from None


def _utc(ts: int | None) -> str:
    if ts is None:
        return ""
    try:
        return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):  # beyond the years a datetime holds
        return f"{ts} s since the epoch"


def _parse_rfc3339(value: str) -> int:
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise MalformedError(f"{value!r} is not an RFC 3339 time (e.g. 2026-01-31T12:00:00Z)") from exc
    if parsed.tzinfo is None:
        raise MalformedError(f"{value!r} has no time zone (add Z for UTC)")
    return int(parsed.timestamp())


def _shell_quote(text: str) -> str:
    """Single-quoted for a POSIX shell, whatever the text holds."""
    return "'" + text.replace("'", "'\"'\"'") + "'"


@bp.app_template_filter("utc")
def utc_filter(ts: int | None) -> str:
    return _utc(ts)


def _admin_name() -> str | None:
    """The signed-in administrator's token name, only while the server-side session is live."""
    if "admin_name" not in cookie:
        return None
    try:
        found = _admin()
    except Exception:  # noqa: BLE001 - an error page must render even when the store fails
        return None
    return found.token_name if found is not None else None


@bp.app_context_processor
def _page_context() -> dict[str, Any]:
    """What every page (error pages included) needs: the integrity state and the login."""
    try:
        ext = ledger()
        integrity = ext.integrity
        origin = ext.log.origin
    except (KeyError, RuntimeError):
        integrity, origin = None, ""
    return {
        "integrity": integrity,
        "compromised": integrity.report() if integrity is not None else None,
        "origin": origin,
        "admin_name": _admin_name(),
        "csrf_token": csrf_token,
    }


@bp.before_request
def _csrf() -> None:
    check_csrf()


@bp.get("/favicon.ico")
def favicon() -> Response:
    """Browsers ask for /favicon.ico whatever the page says: the same icon, not a 404."""
    return redirect(url_for("ui.static", filename="favicon.svg"), code=301)


# ------------------------------------------------------------------------------ overview


@bp.get("/")
def overview() -> str:
    session = get_session()
    ext = ledger()
    size = browse.tree_size(session)
    checkpoint = browse.latest_checkpoint(session)
    now = int(time.time())
    rate = {
        "hour": browse.entries_since(session, size, now - HOUR),
        "day": browse.entries_since(session, size, now - DAY),
    }
    return render_template(
        "overview.html",
        size=size,
        checkpoint=checkpoint,
        vkey=ext.log.vkey,
        rate=rate,
        recent=browse.recent_entries(session, RECENT),
        running_audits=_running_audits(session),
    )


def _running_audits(session: Any) -> list[dict[str, Any]]:
    runs = browse.audit_runs(session, limit=5)
    return [r for r in runs or [] if r["state"] in ("queued", "running")]


# ------------------------------------------------------------------------------ search


@bp.get("/search")
def search() -> str:
    q = request.args.get("q", "").strip()
    after = _int_arg("after")
    found = search_entries(get_session(), q, after=after, limit=PAGE) if q else SearchResult()
    return render_template(
        "search.html",
        q=q,
        after=after,
        results=found.results,
        next_after=found.next_after,
        meaning=found.meaning,
        digest=found.digest,
    )


# ------------------------------------------------------------------------------ entries


def _check_index(index: int) -> None:
    if index > MAX_INT:
        raise NotFoundError(f"there is no entry at index {index}")


@bp.get("/entries/<int:index>")
def entry(index: int) -> str:
    _check_index(index)
    session = get_session()
    row = browse.get_entry(session, index)
    try:
        leaf = decode_leaf(row.data)
    except MalformedError as exc:
        raise IntegrityError(f"entry {index} does not decode: {exc}", first_bad_index=index) from exc
    if leaf.envelope is None:  # a Sigstore bundle with a message signature: show the bundle
        statement_text = json.dumps(leaf.bundle, indent=2, ensure_ascii=False)
    else:
        payload = leaf.envelope.payload
        try:
            statement_text = json.dumps(json.loads(payload), indent=2, ensure_ascii=False)
        except (UnicodeDecodeError, ValueError):
            statement_text = payload.decode("utf-8", errors="replace")
    cut = len(statement_text) > MAX_STATEMENT_CHARS
    if cut:
        statement_text = statement_text[:MAX_STATEMENT_CHARS]
    (summary,) = browse.summaries(session, [index]) or [None]
    registered = load_keys(session, [k.key_id for k in leaf.signers])
    signers = [_signer_view(k.key_id, k.algorithm, registered.get(k.key_id), row.predicate_type) for k in leaf.signers]
    signatures = [
        {"keyid": s.keyid, "sig": base64.b64encode(s.sig).decode("ascii")}
        for s in (leaf.envelope.signatures if leaf.envelope is not None else ())
    ]
    vkey = ledger().log.vkey
    size = browse.tree_size(session)
    appraisal = appraisals_of(session, [index]).get(index)
    return render_template(
        "entry.html",
        appraisal=appraisal,
        index=index,
        row=row,
        summary=summary,
        leaf=leaf,
        statement_text=statement_text,
        statement_cut=cut,
        signers=signers,
        signatures=signatures,
        size=size,
        vkey=vkey,
        receipt_name=f"receipt-{index}.json",
        verify_command=f"provledger verify-receipt receipt-{index}.json --log-key {_shell_quote(vkey)}",
    )


@bp.get("/entries/<int:index>/receipt.json")
def entry_receipt(index: int) -> Response:
    _check_index(index)
    receipt = receipts.receipt(get_session(), index)
    body = json.dumps(receipt, indent=2) + "\n"
    return Response(
        body,
        mimetype="application/json",
        headers={"Content-Disposition": f'attachment; filename="receipt-{index}.json"'},
    )


# ------------------------------------------------------------------------------ artifacts


@bp.get("/artifacts/<string:digest>")
def artifact(digest: str) -> str | Response:
    parsed = normalise_digest(digest)
    if parsed is None:
        raise MalformedError("an artifact is named by its digest: sha256:<64 hex digits> (or another algorithm:hex)")
    algorithm, value = parsed
    canonical = f"{algorithm}:{value}"
    if canonical != digest:
        query = request.query_string.decode("ascii", errors="replace")
        return redirect(url_for("ui.artifact", digest=canonical) + (f"?{query}" if query else ""), code=301)
    session = get_session()
    size = browse.tree_size(session)
    at = _int_arg("at")
    if at is not None and at >= size:
        raise NotFoundError(f"there is no index {at}: the ledger has {size} entries (0 to {size - 1})")
    chain, provisional = chains.chain_for(session, algorithm, value, at=at)
    links = [l for l in chain.get("links") or [] if isinstance(l, dict)]
    for link in links:
        link.setdefault("reasons", [])
        link.setdefault("depends_on", [])
    return render_template(
        "artifact.html",
        digest=canonical,
        chain=chain,
        links=links,
        verdict=graph.verdict_of(chain),
        svg=graph.render_svg(chain),
        kind_name=graph.kind_name,
        verdict_of=graph.verdict_of,
        default_reason=graph.default_reason,
        at=at,
        size=size,
        provisional=provisional,
        truncated=max(len(links) - graph.MAX_NODES, 0),
    )


# ------------------------------------------------------------------------------ signers


def _grant_view(grant: Any, now: int, key_status: str) -> dict[str, Any]:
    return {
        "predicate_types": list(grant.predicate_types),
        "subjects": list(grant.subjects) if grant.subjects is not None else None,
        "not_before": grant.not_before,
        "not_after": grant.not_after,
        "review_by": grant.review_by,
        "state": grant_state(grant, now, key_status),  # the core's vocabulary, as keys list and the API say
    }


def _key_view(key: KeyState, now: int) -> dict[str, Any]:
    return {
        "key_id": key.key_id,
        "principal": key.principal,
        "algorithm": key.algorithm,
        "status": key.status,
        "state": key_state(key, now),
        "grants": [_grant_view(g, now, key.status) for g in key.grants],
        "registered_index": key.registered_index,
        "registered_at": key.registered_at,
        "last_event_index": key.last_event_index,
        "revoked_index": key.revoked_index,
        "revoked_at": key.revoked_at,
        "compromised_since": key.compromised_since,
        "replaced_by": key.replaced_by,
        "replaces": key.replaces,
        "retired_at": key.retired_at,
    }


def _signer_view(key_id: str, algorithm: str, registered: Any, predicate_type: str) -> dict[str, Any]:
    if registered is None:
        return {"key_id": key_id, "algorithm": algorithm, "key": None, "covers": False}
    key = _key_view(registered.state, int(time.time()))
    covers = any(g.covers_type(predicate_type) for g in registered.state.grants)
    return {"key_id": key_id, "algorithm": algorithm, "key": key, "covers": covers}


@bp.get("/signers")
def signers() -> str:
    session = get_session()
    now = int(time.time())
    rows = key_rows(session)
    keys = sorted((_key_view(k, now) for k in rows.keys), key=lambda k: (k["principal"], k["registered_index"]))
    principals: dict[str, list[dict[str, Any]]] = {}
    for k in keys:
        principals.setdefault(k["principal"], []).append(k)
    root_key_id = None
    if rows.root is not None:
        from ledger.records.keys import public_key_from_der  # noqa: PLC0415

        root_key_id = public_key_from_der(rows.root).key_id
    thresholds = [{"pattern": p, "threshold": n, "index": i} for p, n, i in rows.thresholds]
    return render_template("signers.html", principals=principals, keys=keys, root_key_id=root_key_id, thresholds=thresholds, now=now)


# ------------------------------------------------------------------------------ checkpoints


@bp.get("/checkpoints")
def checkpoints() -> str:
    session = get_session()
    after = _int_arg("after")
    old, new = _int_arg("old"), _int_arg("new")
    page = browse.list_checkpoints(session, after=-1 if after is None else after, limit=PAGE + 1)
    next_after = page[PAGE - 1].tree_size if len(page) > PAGE else None
    size = browse.tree_size(session)
    proof = None
    if old is not None or new is not None:
        if old is None or new is None:
            raise MalformedError("a consistency proof needs both sizes: old and new")
        if old > new:
            raise MalformedError(f"the old size ({old}) must not be larger than the new size ({new})")
        if new > size:
            raise NotFoundError(f"tree size {new} is larger than the ledger ({size} entries)")
        hashes = receipts.consistency_proof(session, old, new)
        roots = browse.checkpoint_roots(session, [old, new])
        proof = {
            "old_size": old,
            "new_size": new,
            "hashes": [base64.b64encode(h).decode("ascii") for h in hashes],
            "old_root": roots[old].hex() if old in roots else None,
            "new_root": roots[new].hex() if new in roots else None,
            "json": json.dumps(
                {"old_size": old, "new_size": new, "hashes": [base64.b64encode(h).decode("ascii") for h in hashes]},
                indent=2,
            ),
        }
    return render_template(
        "checkpoints.html",
        checkpoints=page[:PAGE],
        after=after,
        next_after=next_after,
        size=size,
        old=old,
        new=new,
        proof=proof,
    )


# ------------------------------------------------------------------------------ audits


@bp.get("/audits")
def audits() -> str:
    session = get_session()
    before = _int_arg("before", minimum=1)
    runs = browse.audit_runs(session, before=before, limit=PAGE + 1)
    next_before = None
    if runs is not None and len(runs) > PAGE:
        runs = runs[:PAGE]
        next_before = runs[-1]["id"]
    return render_template("audits.html", runs=runs, next_before=next_before, size=browse.tree_size(session))


# ------------------------------------------------------------------------------ admin


def _admin() -> AdminLogin | None:
    """The live server-side session behind this cookie (looked up on every request: logout,
    expiry and revoking the token end it at once)."""
    if "admin_login" in g:
        return g.admin_login  # type: ignore[no-any-return]
    sid = cookie.get("sid")
    found = admin_sessions.admin_of_session(get_session(), sid, now=int(time.time())) if sid is not None else None
    if found is None and ("sid" in cookie or "admin_name" in cookie):
        cookie.pop("sid", None)
        cookie.pop("admin_name", None)
    g.admin_login = found
    return found


def _require_admin() -> AdminLogin:
    row = _admin()
    if row is None:
        abort(redirect(url_for("ui.login", next=request.path)))
    return row  # type: ignore[return-value]


def _client() -> str:
    return request.remote_addr or "unknown"


@bp.route("/login", methods=["GET", "POST"])
def login() -> str | Response | tuple[str, int]:
    if request.method == "POST":
        ext = ledger()
        clock = time.time()  # with its fraction: the throttle's waits are of real time
        now = int(clock)
        client = _client()
        wait = ext.login_throttle.retry_after(client, now=clock)
        if wait > 0:
            log.warning("admin login from %s refused unchecked: throttled for %d s more", client, wait)
            page = render_template("login.html", failed=False, throttled=wait)
            return page, 429, {"Retry-After": str(wait)}  # type: ignore[return-value]
        token = request.form.get("token", "").strip()
        session = write_session()
        row = registry.authenticate(session, token, "admin") if 0 < len(token) <= 256 else None
        if row is None or row.scope != "admin":
            failures = ext.login_throttle.failed(client, now=clock)
            log.warning("failed admin login from %s (%d in a row)", client, failures)
            return render_template("login.html", failed=True), 403
        ext.login_throttle.succeeded(client)
        lifetime = int(current_app.config.get("ADMIN_SESSION_SECONDS", admin_sessions.DEFAULT_SESSION_SECONDS))
        sid = admin_sessions.open_session(session, row.id, now=now, lifetime=lifetime)
        name = row.name
        session.commit()
        log.info("admin login from %s with token %r", client, name)
        cookie.clear()
        cookie["sid"] = sid
        cookie["admin_name"] = name
        csrf_token()  # a new session: a new CSRF token
        return redirect(url_for("ui.admin"))
    return render_template("login.html", failed=False)


@bp.post("/logout")
def logout() -> Response:
    sid = cookie.get("sid")
    if sid is not None:
        session = write_session()
        admin_sessions.end_session(session, sid, now=int(time.time()))
        session.commit()
    cookie.clear()
    return redirect(url_for("ui.overview"))


def _admin_page(**extra: Any) -> str:
    session = get_session()
    keys = [k for k in key_rows(session).keys if k.status != "revoked"]
    keys.sort(key=lambda k: (k.principal, k.key_id))
    tokens = registry.list_tokens(session)
    context = {"keys": keys, "tokens": tokens, "created": None, "message": None, "admin_key": _admin_key_available()}
    context.update(extra)
    return render_template("admin.html", **context)


def _admin_key_available() -> bool:
    return ledger_setup.admin_key_path(ledger().settings).is_file()


def _key_event(action: Callable[..., Any]) -> int:
    """Sign a key event with the administrator key on this server and append it; its index."""
    ext = ledger()
    admin_key = ledger_setup.load_admin_key(ext.settings)
    appended = action(ext.sessions, ext.log, admin_key)
    return int(appended.receipt["index"])


@bp.get("/admin")
def admin() -> str:
    _require_admin()
    return _admin_page()


@bp.post("/admin/tokens")
def admin_create_token() -> str:
    _require_admin()
    name = request.form.get("name", "").strip()
    scope = request.form.get("scope", "")
    if not name or len(name) > 255:
        raise MalformedError("a token needs a name of 1 to 255 characters")
    session = write_session()
    token = registry.create_token(session, name, scope, now=int(time.time()))
    session.commit()
    return _admin_page(created={"name": name, "scope": scope, "token": token})


@bp.post("/admin/tokens/revoke")
def admin_revoke_token() -> str:
    login = _require_admin()
    name = request.form.get("name", "")
    if not name or len(name) > 255:
        raise MalformedError("choose a token to revoke")
    session = write_session()
    count = registry.revoke_token(session, name, now=int(time.time()))
    session.commit()
    log.info("admin %r revoked %d token(s) named %r", login.token_name, count, name)
    if name == login.token_name:
        g.pop("admin_login", None)
    return _admin_page(message=f"token {name!r} is revoked ({count}); requests with it now get 401")


def _form_key_id() -> str:
    key_id = request.form.get("key_id", "").strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", key_id):
        raise MalformedError("choose a key (its id is 64 hex digits)")
    return key_id


@bp.post("/admin/keys/revoke")
def admin_revoke_key() -> str:
    _require_admin()
    key_id = _form_key_id()
    since_text = request.form.get("compromised_since", "").strip()
    since = _parse_rfc3339(since_text) if since_text else None
    reason = request.form.get("reason", "").strip()[:500] or None
    now = int(time.time())
    index = _key_event(lambda s, log, key: registry.revoke_key(s, log, key, key_id, now=now, compromised_since=since, reason=reason))
    message = f"key {key_id} is revoked (ledger entry {index})" + (f"; compromised since {_utc(since)}" if since is not None else "")
    return _admin_page(message=message, message_index=index)


@bp.post("/admin/keys/reaffirm")
def admin_reaffirm_key() -> str:
    _require_admin()
    key_id = _form_key_id()
    review_by = _parse_rfc3339(request.form.get("review_by", ""))
    now = int(time.time())
    index = _key_event(lambda s, log, key: registry.reaffirm_key(s, log, key, key_id, review_by=review_by, now=now))
    return _admin_page(message=f"key {key_id} is re-affirmed until {_utc(review_by)} (ledger entry {index})", message_index=index)
