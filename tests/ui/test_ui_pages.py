"""The auditor pages through Flask's test client: every route, every error page, the security
headers, escaping of hostile records (pages and SVG), search paging, proofs and the admin login."""

from __future__ import annotations

import base64
import json
import re
import stat
from pathlib import Path

import pytest

from ledger import merkle
from ledger.db import store as dbstore
from ledger.services.registry import authenticate, create_token
from ledger.verify import verify_receipt
from tests.fixtures import PREDICATE, make_statement, sign
from tests.ui.conftest import close_app, make_app
from tests.ui.ui_seed import HOSTILE, XSS_ATTR, XSS_PREDICATE, XSS_SCRIPT, XSS_SIGNER, fixture_chain, register, seed
from ledger.db import browse as queries
from web.ui import chains, graph
from web.ui.security import CONTENT_SECURITY_POLICY, load_secret_key

TEMPLATES = Path(__file__).resolve().parents[2] / "web" / "ui" / "templates"


def _html(response, status: int = 200) -> str:
    assert response.status_code == status, response.get_data(as_text=True)[:2000]
    assert response.mimetype == "text/html"
    text = response.get_data(as_text=True)
    assert "Traceback" not in text and 'File "' not in text
    return text


def _pages(seeded) -> list[str]:
    return [
        "/",
        f"/search?q=sha256:{seeded.build_digest}",
        "/search?q=ci-pipeline",
        "/entries/0",
        f"/entries/{seeded.xss_index}",
        f"/artifacts/sha256:{seeded.build_digest}",
        f"/artifacts/sha256:{seeded.xss_digest}",
        "/signers",
        "/checkpoints",
        "/checkpoints?old=1&new=3",
        "/audits",
        "/login",
    ]


# ------------------------------------------------------------------------------ every route, both backends


def test_every_page_renders_on_both_backends(store):
    seeded = seed(store)
    app = make_app(store, TESTING=True)
    try:
        client = app.test_client()
        for url in _pages(seeded):
            text = _html(client.get(url))
            assert "<main" in text and "</html>" in text
    finally:
        close_app(app)


def test_security_headers_on_pages_errors_static_and_api(client, seeded):
    for url in [*_pages(seeded), "/no-such-page", "/entries/999", "/ui/static/ui.css", "/api/v1/checkpoint", "/healthz"]:
        with client.get(url) as response:
            assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY, url
            assert response.headers["X-Content-Type-Options"] == "nosniff"
            assert response.headers["X-Frame-Options"] == "DENY"
    csp = CONTENT_SECURITY_POLICY
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp


def test_templates_have_no_inline_script_style_or_safe_filter():
    for path in TEMPLATES.glob("*.html"):
        text = path.read_text()
        assert "|safe" not in text.replace(" ", ""), path.name
        assert "style=" not in text and "<style" not in text, path.name
        assert re.search(r"<script(?![^>]*\bsrc=)", text) is None, path.name
        assert re.search(r"\son[a-z]+=", text) is None, path.name


# ------------------------------------------------------------------------------ overview


def test_overview_shows_size_checkpoint_key_rate_integrity_and_recent(client, seeded):
    store = seeded.store
    size, _, _, note = store.state()
    text = _html(client.get("/"))
    assert f'<p class="figure" id="tree-size">{size:,}</p>' in text
    assert note.splitlines()[0] in text and store.log.vkey in text
    assert "entries in the last hour" in text
    assert "OK" in text and "Compromised" not in text
    for index in range(size - 1, size - 4, -1):
        assert f'href="/entries/{index}"' in text


def test_ingestion_rate_counts_by_integrated_time(sqlite_store):
    sqlite_store.clock = 0  # the key's registration comes first, at time 1
    key = register(sqlite_store, "builder", [PREDICATE])
    for t in (1000, 1000, 2000, 3000, 3000, 3000, 4000):
        sqlite_store.append_ok([sign(key)], now=t)
    with sqlite_store.sessions() as session:
        size = dbstore.current_size(session)
        first = size - 7
        found = [queries.first_index_at_or_after(session, size, t) - first for t in (1000, 1001, 2000, 3000, 3500, 4000, 4001)]
    assert found == [0, 2, 2, 3, 6, 6, 7]


def test_compromise_shows_as_a_banner_on_every_page(app, seeded):
    app.extensions["provledger"].integrity.flag({"first_bad_index": 3, "message": "entry 3 <b>changed</b>"})
    client = app.test_client()
    for url in [*_pages(seeded), "/no-such-page", "/entries/999"]:
        text = client.get(url).get_data(as_text=True)
        assert 'class="banner banner-danger" role="alert"' in text, url
        assert "at index 3" in text and "entry 3 &lt;b&gt;changed&lt;/b&gt;" in text


# ------------------------------------------------------------------------------ search


@pytest.mark.parametrize("form", ["sha256:{d}", "{d}", "SHA256:{D}", "  sha256:{d}  "])
def test_search_by_digest_in_any_spelling(client, seeded, form):
    q = form.format(d=seeded.build_digest, D=seeded.build_digest.upper())
    text = _html(client.get("/search", query_string={"q": q}))
    build = seeded.indexes[seeded.build_name]
    assert f'href="/entries/{build}"' in text and f'href="/entries/{build + 1}"' in text  # the build and its SBOM
    assert f'href="/artifacts/sha256:{seeded.build_digest}"' in text


def test_search_by_subject_name_signer_key_id_and_predicate_type(client, seeded):
    part = seeded.indexes["acme/boards/rev-c/0042"]
    assert f'href="/entries/{part}"' in _html(client.get("/search?q=acme/boards/rev-c/0042"))
    by_name = _html(client.get("/search?q=hardware-vendor"))
    assert f'href="/entries/{part}"' in by_name
    key_id = seeded.keys["hardware-vendor"].key_id
    assert f'href="/entries/{part}"' in _html(client.get(f"/search?q={key_id}"))
    only_signed = _html(client.get(f"/search?q=signer:{key_id}"))
    assert only_signed.count('<th scope="row"><a href="/entries/') == 2  # the chip and the board
    events = _html(client.get(f"/search?q=key:{key_id}"))  # the key's history: its key events
    assert events.count('<th scope="row"><a href="/entries/') == 1
    by_type = _html(client.get("/search", query_string={"q": "https://cyclonedx.org/bom"}))
    assert by_type.count('href="/entries/') == 1
    nothing = _html(client.get("/search?q=no-such-thing"))
    assert 'id="no-results"' in nothing


def test_search_pages_with_keyset_after(client, seeded):
    store = seeded.store
    key = register(store, "bulk-builder", [PREDICATE])
    first = store.size()
    store.append_ok([sign(key, make_statement("same-name.tar.gz", digest=f"{i:064x}")) for i in range(30)])
    seen: list[int] = []
    url = "/search?q=same-name.tar.gz"
    pages = 0
    while url:
        text = _html(client.get(url))
        seen += [int(i) for i in re.findall(r'<th scope="row"><a href="/entries/(\d+)">', text)]
        nxt = re.search(r'<a rel="next" href="([^"]+)">', text)
        url = nxt.group(1).replace("&amp;", "&") if nxt else ""
        pages += 1
    assert pages == 2 and seen == list(range(first, first + 30))
    assert "after=" in client.get("/search?q=same-name.tar.gz").get_data(as_text=True)


@pytest.mark.parametrize("query", ["after=abc", "after=-1", "after=99999999999999999999", "q=" + "x" * 1025])
def test_bad_search_parameters_are_an_html_400(client, query):
    text = _html(client.get("/search?q=a&" + query if not query.startswith("q=") else "/search?" + query), 400)
    assert "400" in text


# ------------------------------------------------------------------------------ entries and receipts


def test_entry_page_shows_statement_signer_grant_hashes_and_verify_block(client, seeded):
    store = seeded.store
    index = seeded.indexes[seeded.build_name]
    with store.sessions() as session:
        row = dbstore.get_entry(session, index)
    text = _html(client.get(f"/entries/{index}"))
    assert row.leaf_hash.hex() in text and row.chain_hash.hex() in text
    assert "https://slsa.dev/provenance/v1" in text and "resolvedDependencies" in text
    assert "ci-pipeline" in text and "https://slsa.dev/provenance/*" in text and "a grant covers this predicate type" in text
    assert "appliance/*/*/*" in text  # the grant's subject scope
    assert f"provledger verify-receipt receipt-{index}.json --log-key &#39;{store.log.vkey}&#39;" in text
    assert f'href="/entries/{index}/receipt.json" download="receipt-{index}.json"' in text


def test_receipt_download_verifies_offline(client, seeded):
    response = client.get("/entries/2/receipt.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert response.headers["Content-Disposition"] == 'attachment; filename="receipt-2.json"'
    receipt = json.loads(response.data)
    verify_receipt(receipt, seeded.store.log.vkey)
    assert receipt["index"] == 2


def test_missing_entry_and_receipt_are_html_404(client):
    assert "there is no entry at index 999" in _html(client.get("/entries/999"), 404)
    _html(client.get("/entries/999/receipt.json"), 404)
    # numbers in paths are ASCII digits within 2**63 - 1 (issue 10): anything else is a 400
    assert "ASCII digits" in _html(client.get("/entries/99999999999999999999999"), 400)
    _html(client.get("/entries/%D9%A1"), 400)
    _html(client.get("/entries/abc"), 404)


def test_revoked_signer_is_shown_on_its_entry(client, seeded):
    text = _html(client.get(f"/search?q={seeded.revoked_digest}"))
    index = int(re.search(r'href="/entries/(\d+)"', text).group(1))
    assert "compromised since" in _html(client.get(f"/entries/{index}"))


# ------------------------------------------------------------------------------ artifacts and the drawing


def test_artifact_page_reads_a_verdict_with_graph_and_table(client, seeded):
    text = _html(client.get(f"/artifacts/sha256:{seeded.build_digest}"))
    assert 'id="chain-verdict"' in text and "trusted" in text
    assert "<svg" in text and 'role="img"' in text and '<table id="links-table">' in text
    assert "<caption>" in text and 'scope="col"' in text


def test_artifact_revoked_key_is_untrusted_and_unknown_is_missing(client, seeded):
    revoked = _html(client.get(f"/artifacts/sha256:{seeded.revoked_digest}"))
    assert re.search(r'id="chain-verdict"><span class="verdict verdict-untrusted">', revoked)
    unknown = _html(client.get("/artifacts/sha256:" + "0" * 64))
    assert re.search(r'id="chain-verdict"><span class="verdict verdict-missing">', unknown)


def test_artifact_as_of_an_earlier_index(client, seeded):
    build = seeded.indexes[seeded.build_name]
    before = _html(client.get(f"/artifacts/sha256:{seeded.build_digest}?at={build - 1}"))
    assert f"as of index {build - 1}" in before and "verdict-missing" in before
    assert "verdict-trusted" in _html(client.get(f"/artifacts/sha256:{seeded.build_digest}?at={build}"))
    assert "there is no index 999" in _html(client.get(f"/artifacts/sha256:{seeded.build_digest}?at=999"), 404)
    _html(client.get(f"/artifacts/sha256:{seeded.build_digest}?at=-1"), 400)


def test_artifact_digest_is_normalised_or_refused(client, seeded):
    response = client.get(f"/artifacts/{seeded.build_digest.upper()}?at=1")
    assert response.status_code == 301
    assert response.headers["Location"].endswith(f"/artifacts/sha256:{seeded.build_digest}?at=1")
    for bad in ["not-a-digest", "sha256:xyz", "sha256:" + "g" * 64, "%3Cscript%3E"]:
        assert "400" in _html(client.get(f"/artifacts/{bad}"), 400)


def test_artifact_page_draws_the_chain_service_answer(client, seeded, monkeypatch):
    chain = fixture_chain(f"sha256:{seeded.build_digest}")
    monkeypatch.setattr(chains, "chain_for", lambda session, alg, digest, at: (chain, False))
    text = _html(client.get(f"/artifacts/sha256:{seeded.build_digest}"))
    assert "Provisional" not in text
    svg = text[text.index("<svg") : text.index("</svg>")]
    for word in ("TRUSTED", "STALE", "UNTRUSTED", "MISSING", "WEAKEST LINK", "ROOT"):
        assert word in svg
    for label in ("attested by", "runs", "targets", "built from"):
        assert f">{label}</text>" in svg
    assert re.search(r'class="node verdict-untrusted kind-\w+ weakest"', svg) and "hardware part #0" in svg
    # the hostile subject and reason are text, in the drawing and in the table
    assert XSS_SCRIPT not in text and XSS_ATTR not in text and "<img" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in svg
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text[text.index('id="links-table"') :]


# ------------------------------------------------------------------------------ hostile records render inert


def test_hostile_record_is_escaped_on_every_page_it_appears_on(client, seeded):
    urls = [
        "/",
        f"/search?q=sha256:{seeded.xss_digest}",
        "/search?q=" + XSS_SCRIPT,
        "/search?q=" + XSS_ATTR.replace("&", "%26"),
        f"/entries/{seeded.xss_index}",
        f"/artifacts/sha256:{seeded.xss_digest}",
        "/signers",
    ]
    for url in urls:
        text = _html(client.get(url, query_string=None))
        for hostile in HOSTILE:
            assert hostile not in text, (url, hostile)
    entry = _html(client.get(f"/entries/{seeded.xss_index}"))
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in entry
    assert "&lt;img src=x onerror=alert(5)&gt;" in _html(client.get("/signers"))
    assert "&lt;/pre&gt;&lt;script&gt;alert(6)" in entry  # a key of the predicate, pretty-printed
    by_type = _html(client.get("/search", query_string={"q": XSS_PREDICATE}))
    assert f'href="/entries/{seeded.xss_index}"' in by_type and XSS_PREDICATE not in by_type
    by_signer = _html(client.get("/search", query_string={"q": XSS_SIGNER}))
    assert f'href="/entries/{seeded.xss_index}"' in by_signer


def test_svg_escapes_every_text():
    chain = fixture_chain("sha256:" + "1" * 64)
    chain["links"][0]["subject"] = '</text></svg><script>alert(7)</script>'
    chain["links"][0]["signer"] = '"><a href="javascript:alert(8)">'
    svg = str(graph.render_svg(chain))
    assert "<script" not in svg and '"><a href' not in svg and 'href="javascript' not in svg
    assert "&lt;/text&gt;&lt;/svg&gt;&lt;scri" in svg  # the subject, cut to fit its box, as text
    assert "&#34;&gt;&lt;a href=&#34;javascript:alert(8)&#34;&gt;" in svg  # the signer, in the tooltip
    assert svg.count("<svg") == 1 and svg.endswith("</svg>")


# ------------------------------------------------------------------------------ the graph layout


def test_layout_levels_follow_dependencies_and_survive_cycles():
    chain = fixture_chain("sha256:" + "1" * 64)
    placed = graph.layout(chain)
    level = {n.link["index"]: n.level for n in placed.nodes}
    assert level[9] == 0 and level[8] == 1 and level[5] == 1
    assert level[1] > level[8] and level[0] > level[1] and level[4] > level[5]
    assert {n.link["index"] for n in placed.nodes if n.weakest} == {4}
    assert {n.link["index"] for n in placed.nodes if n.root} == {0}
    assert len(placed.edges) == 7  # the cycle's back edge (SBOM -> build) is drawn too
    boxes = {(n.x, n.y) for n in placed.nodes}
    assert len(boxes) == len(placed.nodes)  # no two boxes on top of each other


def test_layout_of_empty_large_and_pure_cycle_chains():
    assert graph.layout({"links": []}).nodes == []
    assert "<svg" in graph.render_svg({"artifact": "sha256:x", "links": []})
    big = {"links": [{"index": i, "kind": "build", "subject": f"s{i}", "verdict": "trusted", "depends_on": [i + 1]} for i in range(500)]}
    placed = graph.layout(big)
    assert len(placed.nodes) == graph.MAX_NODES and placed.truncated == 500 - graph.MAX_NODES
    ring = {"links": [{"index": i, "kind": "build", "subject": f"r{i}", "verdict": "stale", "depends_on": [(i + 1) % 3]} for i in range(3)]}
    assert sorted(n.level for n in graph.layout(ring).nodes) == [0, 1, 2]
    odd = {"links": [{"index": 1, "verdict": "weird", "depends_on": [1, 77, "x"]}, "not a link"]}
    assert "UNTRUSTED" in str(graph.render_svg(odd))  # unknown verdicts are shown as the worst


# ------------------------------------------------------------------------------ signers, checkpoints, audits


def test_signers_page_lists_principals_keys_grants_and_revocations(client, seeded):
    text = _html(client.get("/signers"))
    for name in ("hardware-vendor", "firmware-vendor", "ci-pipeline", "leaked-builder"):
        assert f">{name}</h2>" in text
    assert f'id="key-{seeded.revoked_key_id}"' in text and "revoked" in text
    assert "https://provenance-ledger.dev/hardware-part/v1" in text
    key_id = seeded.keys["hardware-vendor"].key_id
    assert f'href="/search?q=signer:{key_id}"' in text and f'href="/search?q=key:{key_id}"' in text
    assert 'id="root-key"' in text


def test_checkpoints_page_pages_and_proves_consistency(client, seeded):
    store = seeded.store
    key = register(store, "builder", [PREDICATE])
    for _ in range(30):
        store.append_ok([sign(key)])
    text = _html(client.get("/checkpoints"))
    nxt = re.search(r'<a rel="next" href="/checkpoints\?after=(\d+)">', text)
    assert nxt is not None
    second = _html(client.get(f"/checkpoints?after={nxt.group(1)}"))
    first_sizes = set(re.findall(r'<tr id="cp-(\d+)">', text))
    second_sizes = set(re.findall(r'<tr id="cp-(\d+)">', second))
    assert first_sizes and second_sizes and not first_sizes & second_sizes
    size = store.size()
    proof_page = _html(client.get(f"/checkpoints?old=3&new={size}"))
    proof = json.loads(re.search(r'<pre class="json" id="consistency-proof"><code>(.*?)</code>', proof_page, re.S).group(1).replace("&#34;", '"'))
    with store.sessions() as session:
        old_root = dbstore.checkpoint_of_size(session, 3).root_hash
        new_root = dbstore.checkpoint_of_size(session, size).root_hash
    merkle.verify_consistency(3, size, [base64.b64decode(h) for h in proof["hashes"]], old_root, new_root)


@pytest.mark.parametrize("query,status", [("old=5&new=2", 400), ("old=1", 400), ("old=1&new=999", 404), ("old=x&new=2", 400), ("after=-3", 400)])
def test_bad_consistency_requests_are_html_errors(client, query, status):
    _html(client.get(f"/checkpoints?{query}"), status)


def test_audits_page_shows_start_up_state_and_runs(client, seeded):
    text = _html(client.get("/audits"))
    assert "No problem found" in text
    from ledger.db import models  # noqa: PLC0415

    run_model = getattr(models, "AuditRun", None)
    if run_model is None:
        assert "keeps no record of audit runs" in text
        return
    assert "No audit has been run" in text
    with seeded.store.sessions() as session, session.begin():
        session.add(run_model(state="running", source="api", requested_at=1_750_000_000, started_at=1_750_000_001,
                              tree_size=8, shard_level=1, shard_count=4, progress=4, origin="o", vkey="v"))
        session.add(run_model(state="done", source="cli", requested_at=1_750_000_100, finished_at=1_750_000_200,
                              tree_size=8, shard_level=1, shard_count=4, progress=8, origin="o", vkey="v",
                              result=json.dumps({"ok": False, "tree_size": 8, "first_bad_index": 5,
                                                 "problems": [{"index": 5, "kind": "leaf", "message": "<b>bad</b>"}]})))
    text = _html(client.get("/audits"))
    assert 'value="4"' in text and "50%" in text and "first bad index 5" in text and "&lt;b&gt;bad&lt;/b&gt;" in text
    assert "1 audit(s) running" in _html(client.get("/"))


# ------------------------------------------------------------------------------ errors


def test_unknown_paths_are_html_for_pages_and_json_for_the_api(client):
    assert "404 Not found" in _html(client.get("/no/such/page"), 404)
    api = client.get("/api/v1/no-such")
    assert api.status_code == 404 and api.get_json()["error"]["code"] == "not_found"
    api = client.get("/api/v1/entries/999")
    assert api.status_code == 404 and api.get_json()["error"]["code"] == "not_found"
    assert client.get("/healthz").mimetype != "text/html"


def test_method_not_allowed_is_an_html_page(client):
    _html(client.put("/"), 405)


def test_a_server_error_shows_no_trace(seeded, monkeypatch):
    app = make_app(seeded.store)  # not TESTING: errors are handled, not raised into the test
    try:
        def boom(*_a, **_k):
            raise RuntimeError("secret internals /etc/passwd")

        monkeypatch.setattr(queries, "recent_entries", boom)
        response = app.test_client().get("/")
        text = _html(response, 500)
        assert "secret internals" not in text and "RuntimeError" not in text
        assert "the server failed to handle the request" in text
        monkeypatch.setattr(dbstore, "get_entry", boom)
        api = app.test_client().get("/api/v1/entries/0")
        assert api.status_code == 500 and api.get_json()["error"]["code"] == "internal_error"
    finally:
        close_app(app)


# ------------------------------------------------------------------------------ admin: login, CSRF, actions


def _csrf(text: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', text).group(1)


def _token(store, scope: str) -> str:
    with store.sessions() as session, session.begin():
        return create_token(session, f"{scope}-ui", scope, now=store.clock)


def test_admin_pages_need_an_admin_login(client, seeded):
    response = client.get("/admin")
    assert response.status_code == 302 and "/login" in response.headers["Location"]
    page = _html(client.get("/login"))
    submit = _token(seeded.store, "submit")
    refused = client.post("/login", data={"csrf_token": _csrf(page), "token": submit})
    assert "not a valid admin token" in _html(refused, 403)
    wrong = client.post("/login", data={"csrf_token": _csrf(page), "token": "plt_nope"})
    _html(wrong, 403)
    assert client.get("/admin").status_code == 302


def test_every_post_needs_the_csrf_token(client, seeded):
    admin = _token(seeded.store, "admin")
    assert "CSRF" in _html(client.post("/login", data={"token": admin}), 400)
    _html(client.get("/login"))
    assert "CSRF" in _html(client.post("/login", data={"token": admin, "csrf_token": "forged"}), 400)
    assert client.get("/admin").status_code == 302  # not logged in by any of those


def _login(client, store) -> str:
    page = _html(client.get("/login"))
    response = client.post("/login", data={"csrf_token": _csrf(page), "token": _token(store, "admin")})
    assert response.status_code == 302 and response.headers["Location"].endswith("/admin")
    admin = _html(client.get("/admin"))
    assert "Signed in as administrator" in admin
    return _csrf(admin)


def test_admin_creates_a_token_and_signs_out(client, seeded):
    store = seeded.store
    csrf = _login(client, store)
    # without the CSRF token the action is refused and nothing changes
    _html(client.post("/admin/tokens", data={"name": "ci", "scope": "submit"}), 400)
    created = _html(client.post("/admin/tokens", data={"csrf_token": csrf, "name": "ci <b>", "scope": "submit"}))
    token = re.search(r'<pre class="vkey" id="new-token">([^<]+)</pre>', created).group(1)
    assert "ci &lt;b&gt;" in created
    with store.sessions() as session:
        assert authenticate(session, token, "submit") is not None
    _html(client.post("/admin/tokens", data={"csrf_token": csrf, "name": "x", "scope": "root"}), 400)
    _html(client.post("/admin/tokens", data={"csrf_token": csrf, "name": "", "scope": "submit"}), 400)
    assert client.post("/logout", data={"csrf_token": csrf}).status_code == 302
    assert client.get("/admin").status_code == 302
    assert client.post("/admin/tokens", data={"csrf_token": csrf, "name": "late", "scope": "admin"}).status_code in (302, 400)


def test_admin_revokes_and_reaffirms_keys_as_ledger_entries(client, seeded):
    store = seeded.store
    csrf = _login(client, store)
    victim = seeded.keys["firmware-vendor"].key_id
    size = store.size()
    for bad in ({"key_id": victim, "compromised_since": "yesterday"}, {"key_id": "<b>"}, {"key_id": victim}):
        if "compromised_since" in bad or bad["key_id"] != victim:
            _html(client.post("/admin/keys/revoke", data={"csrf_token": csrf, **bad}), 400)
    _html(client.post("/admin/keys/reaffirm", data={"csrf_token": csrf, "key_id": victim, "review_by": "soon"}), 400)
    hidden = _html(client.post("/admin/keys/revoke", data={"csrf_token": csrf, "key_id": victim, "reason": "lost\u202e laptop"}), 400)
    assert "U+202E" in hidden and "\u202e" not in hidden  # a reason with a hidden character, named, not echoed
    assert store.size() == size  # refused forms append nothing
    done = _html(client.post("/admin/keys/reaffirm", data={"csrf_token": csrf, "key_id": victim, "review_by": "2030-01-01T00:00:00Z"}))
    assert f"key {victim} is re-affirmed until 2030-01-01T00:00:00Z (ledger entry {size})" in done
    done = _html(client.post("/admin/keys/revoke", data={"csrf_token": csrf, "key_id": victim, "compromised_since": "2025-01-01T00:00:00Z"}))
    assert f"key {victim} is revoked (ledger entry {size + 1})" in done
    assert store.size() == size + 2
    signers = _html(client.get("/signers"))
    row = signers[signers.index(f'id="key-{victim}"') :]
    assert "revoked" in row[: row.index("</tr>")] and f"entry {size + 1}" in row[: row.index("</tr>")]
    _html(client.post("/admin/keys/revoke", data={"csrf_token": csrf, "key_id": "0" * 64}), 404)
    assert store.size() == size + 2


# ------------------------------------------------------------------------------ the session secret


def test_secret_key_is_generated_once_with_mode_0600(tmp_path):
    first = load_secret_key(tmp_path / "home", {})
    path = tmp_path / "home" / "secret.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and len(first) >= 32
    assert load_secret_key(tmp_path / "home", {}) == first
    assert load_secret_key(tmp_path / "home", {"PROVLEDGER_SECRET_KEY": "from-env" * 5}) == "from-env" * 5
    path.write_text("short\n")
    with pytest.raises(RuntimeError):
        load_secret_key(tmp_path / "home", {})


def test_static_files_are_served(client):
    with client.get("/ui/static/ui.css") as css:
        assert css.status_code == 200 and b".chain-graph" in css.data
    with client.get("/ui/static/ui.js") as js:
        assert js.status_code == 200 and b"clipboard" in js.data

