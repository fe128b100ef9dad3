"""An option given an empty value (an unset shell variable) is a usage error (exit 2) and
changes nothing: it must never be read as left out, so loosen a grant, an identity, a
revocation or an appraisal policy (``ledger.cli.args.given``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ledger.cli import main as cli_main
from ledger.db import store as db_store
from ledger.trust.predicates import SLSA_V1


def _size(store: Any) -> int:
    with store.sessions() as session:
        return db_store.current_size(session)


@pytest.mark.parametrize(
    "argv",
    [
        ["identities", "add", "--name", "rel", "--san", "https://github.com/a/b/*", "--issuer", "https://i.example",
         "--source-repo", "", "--allow", SLSA_V1],  # would register an identity for every repository
        ["keys", "add", "--name", "ci", "--public-key", "KEY", "--allow", SLSA_V1, "--not-after", ""],  # no expiry
        ["keys", "add", "--name", "ci", "--public-key", "KEY", "--allow", SLSA_V1, "--review-by", " "],
        ["keys", "add", "--name", "ci", "--public-key", "KEY", "--allow", SLSA_V1, "--subject", ""],
        ["keys", "revoke", "f" * 64, "--compromised-since", ""],
        ["keys", "import-tee-roots", "--dir", ""],  # would read the current folder
        ["attest", "verify", "--type", "tpm", "EVIDENCE", "--policy", ""],  # would apply the built-in policy
        ["attest", "verify", "--type", "tdx", "EVIDENCE", "--tcb-info", ""],
        ["witness", "serve", "--log-vkey", "log+00000000+AA", "--state", ""],  # would use the default state
        ["witness", "serve", "--log-vkey", "log+00000000+AA", "--key", ""],
        ["witness", "keygen", "--name", "w.example", "--out", ""],  # would write the default key file
        ["submit", "EVIDENCE", "--server", "http://127.0.0.1:9", "--token", ""],
        ["attest", "verify", "--type", "tpm", "EVIDENCE", "--at", ""],  # would appraise at now
        ["attest", "verify", "--type", "tpm", "EVIDENCE", "--endorsement", ""],
    ],
    ids=lambda a: " ".join(x for x in a[:2]) + " " + next(x for x in reversed(a) if x.startswith("--")),
)
def test_an_empty_option_value_is_a_usage_error_and_appends_nothing(
    sqlite_store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any, argv: list[str]
) -> None:
    """An unset shell variable must not loosen a grant, an identity, a revocation or a policy."""
    for name, value in sqlite_store.env.items():
        if name.startswith("PROVLEDGER_"):
            monkeypatch.setenv(name, value)
    key = tmp_path / "k.pem"
    assert cli_main.main(["keygen", "--out", str(key)]) == 0
    (tmp_path / "evidence").write_bytes(b"{}")
    argv = [str(tmp_path / "evidence") if a == "EVIDENCE" else f"{key}.pub" if a == "KEY" else a for a in argv]
    before = _size(sqlite_store)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        cli_main.main(argv)
    assert exited.value.code == 2 and "is empty" in capsys.readouterr().err
    assert _size(sqlite_store) == before
