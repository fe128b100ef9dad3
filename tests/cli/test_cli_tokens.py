"""`provledger tokens list|revoke` (issue 10, done-when 5): names, scopes, created, last used,
never the secret; a revoked token gets 401 and its admin sessions end."""

from __future__ import annotations

import json

from ledger.services.registry import authenticate, use_token
from web.app import create_app


def _create(cli, name: str, scope: str) -> str:  # noqa: F811
    code, out, _ = cli("tokens", "create", "--name", name, "--scope", scope)
    assert code == 0
    return out.strip().splitlines()[-1]


def test_list_shows_names_scopes_dates_and_never_the_secret(cli):  # noqa: F811
    ci = _create(cli, "ci", "submit")
    root = _create(cli, "root", "admin")
    assert use_token(cli.store.sessions, ci, "submit", now=1_760_000_000) is not None
    code, out, _ = cli("tokens", "list")
    assert code == 0
    assert ci not in out and root not in out and "plt_" not in out
    lines = out.strip().splitlines()
    assert lines[0].split() == ["NAME", "SCOPE", "CREATED", "LAST", "USED", "STATUS"]
    ci_line = next(line for line in lines if line.startswith("ci "))
    assert "submit" in ci_line and "2025-10-09T08:53:20Z" in ci_line and ci_line.endswith("live")
    root_line = next(line for line in lines if line.startswith("root "))
    assert "admin" in root_line and "never" in root_line
    code, out, _ = cli("tokens", "list", "--json")
    listed = json.loads(out)
    assert [t["name"] for t in listed] == ["ci", "root"]
    assert set(listed[0]) == {"name", "scope", "created_at", "last_used_at", "revoked_at"}
    assert listed[0]["last_used_at"] == 1_760_000_000 and listed[1]["last_used_at"] is None


def test_revoke_gives_401_and_is_listed(cli):  # noqa: F811
    ci = _create(cli, "ci", "submit")
    keep = _create(cli, "other", "submit")
    app = create_app({"SETTINGS": cli.store.settings, "TESTING": True, "WITNESSES": None})
    try:
        client = app.test_client()
        auth = {"Authorization": f"Bearer {ci}", "Content-Type": "application/json"}
        assert client.post("/api/v1/entries", data=b"{}", headers=auth).status_code == 400  # authenticated
        code, out, _ = cli("tokens", "revoke", "ci")
        assert code == 0 and "revoked 1" in out
        response = client.post("/api/v1/entries", data=b"{}", headers=auth)
        assert response.status_code == 401 and response.get_json()["error"]["code"] == "unauthorized"
        with cli.store.sessions() as session:
            assert authenticate(session, ci, "submit") is None
            assert authenticate(session, keep, "submit") is not None
    finally:
        app.extensions["provledger"].sequencer.stop()
        app.extensions["provledger"].engine.dispose()
    _, out, _ = cli("tokens", "list")
    assert "revoked" in next(line for line in out.splitlines() if line.startswith("ci "))


def test_revoking_an_unknown_or_already_revoked_name_fails(cli):  # noqa: F811
    _create(cli, "ci", "submit")
    assert cli("tokens", "revoke", "ci")[0] == 0
    code, _, err = cli("tokens", "revoke", "ci")
    assert code != 0 and "no live token named 'ci'" in err
    code, _, err = cli("tokens", "revoke", "nobody")
    assert code != 0 and "nobody" in err


def test_bad_token_names_are_refused(cli):  # noqa: F811
    for bad in ("", "   ", "a\nb", "x" * 256):
        code, _, err = cli("tokens", "create", "--name", bad, "--scope", "submit")
        assert code == 2 and "token name" in err, (bad, err)
