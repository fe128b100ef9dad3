"""A key event's principal and reason are shown to people (``keys list``, ``chain``, the UI):
one holding a control or invisible format character is refused where it enters the ledger
(400 / exit 2) and nothing is appended; an event already in a log is read as it is (the fold is
unchanged) and the command line shows it escaped."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ledger.cli import main as cli_main
from ledger.db import store as db_store
from ledger.errors import MalformedError
from ledger.records.keys import generate_private_key
from ledger.records.statement import check_plain_text
from ledger.services import registry
from ledger.services.registry import create_token, key_event_envelope, next_prev
from ledger.trust.policy import Grant, KeyEvent
from ledger.trust.predicates import SLSA_V1
from tests.provenance import helpers

HOSTILE = [
    "ci\x1b[2K\rroot",  # rewrites the terminal line
    "ci\nroot",
    "ci\x00",
    "ci\x85",  # C1 next line
    "ci\u202eyek",  # right-to-left override
    "c\u200bi",  # zero width space
    "ci\ufeff",
]


def _size(store: Any) -> int:
    with store.sessions() as session:
        return db_store.current_size(session)


@pytest.mark.parametrize("text", HOSTILE, ids=repr)
def test_check_plain_text_names_the_character(text: str) -> None:
    with pytest.raises(MalformedError, match=r"U\+[0-9A-F]{4}"):
        check_plain_text(text, where="predicate.principal")


def test_plain_text_passes() -> None:
    for text in ("ci", "ACME TPM CA", "Zoë Müller (release)", "構築", "key compromised: laptop stolen 2026-01-02"):
        check_plain_text(text, where="predicate.principal")


@pytest.mark.parametrize("text", HOSTILE, ids=repr)
def test_hostile_principal_or_reason_is_refused_and_nothing_lands(sqlite_store: Any, text: str) -> None:
    trust = helpers.Trust(sqlite_store)
    good = trust.add("ci", Grant((SLSA_V1,)))
    before = _size(sqlite_store)
    with pytest.raises(MalformedError, match="predicate.principal"):
        trust.add(text, Grant((SLSA_V1,)))
    with pytest.raises(MalformedError, match="predicate.reason"):
        registry.revoke_key(sqlite_store.sessions, sqlite_store.log, trust.admin, good.key_id, now=sqlite_store.tick(), reason=text)
    assert _size(sqlite_store) == before
    trust.revoke(good)  # the state was not touched: the next event still follows the last one
    assert _size(sqlite_store) == before + 1


def test_hostile_principal_over_http_is_a_400(sqlite_store: Any) -> None:
    from web.app import create_app  # noqa: PLC0415

    trust = helpers.Trust(sqlite_store)
    with sqlite_store.sessions() as session, session.begin():
        token = create_token(session, "t", "submit", now=1)
    with sqlite_store.sessions() as session:
        prev = next_prev(session)
    key = generate_private_key()
    event = KeyEvent(action="register", key_id=key.key_id, principal="ci\x1b]0;pwned\x07", public_key=key.public_key.spki_der,
                     grants=(Grant((SLSA_V1,)),), issued_at=sqlite_store.tick(), prev=prev)
    before = _size(sqlite_store)
    client = create_app({"SETTINGS": sqlite_store.settings, "TESTING": True}).test_client()
    r = client.post("/api/v1/entries", json=key_event_envelope(trust.admin, event), headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 400, r.json
    assert r.json["error"]["code"] == "malformed" and "U+001B" in r.json["error"]["message"]
    assert "\x1b" not in r.get_data(as_text=True)
    assert _size(sqlite_store) == before


def test_keys_add_with_a_control_character_in_its_name_exits_2(sqlite_store: Any, tmp_path: Path, monkeypatch: Any, capsys: Any) -> None:
    for name, value in sqlite_store.env.items():
        if name.startswith("PROVLEDGER_"):
            monkeypatch.setenv(name, value)
    key = tmp_path / "k.pem"
    assert cli_main.main(["keygen", "--out", str(key)]) == 0
    capsys.readouterr()
    code = cli_main.main(["keys", "add", "--name", "ci\x1b[31m", "--public-key", f"{key}.pub", "--allow", SLSA_V1])
    out, err = capsys.readouterr()
    assert code == 2 and "U+001B" in err and "\x1b" not in err + out
    assert cli_main.main(["keys", "list", "--json"]) == 0
    assert capsys.readouterr().out.strip() == "[]"


def test_an_event_already_in_a_log_is_read_as_it_is_and_shown_escaped(
    sqlite_store: Any, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    """A log written before the rule (or by another implementation) still folds and audits: the
    rule guards the door, not the fold; the command line shows the name escaped."""
    from ledger.services import append  # noqa: PLC0415
    from ledger.services.audit import audit  # noqa: PLC0415

    with monkeypatch.context() as m:
        m.setattr(append, "check_plain_text", lambda value, *, where: None)  # as before the rule
        key = helpers.Trust(sqlite_store).add("ci\x1b[31m", Grant((SLSA_V1,)))
    with sqlite_store.sessions() as session:
        assert audit(session, sqlite_store.log).ok
    for name, value in sqlite_store.env.items():
        if name.startswith("PROVLEDGER_"):
            monkeypatch.setenv(name, value)
    capsys.readouterr()
    assert cli_main.main(["keys", "list"]) == 0
    out = capsys.readouterr().out
    assert key.key_id in out and "ci\\x1b[31m" in out and "\x1b" not in out

