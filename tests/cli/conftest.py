"""The ``cli`` fixture: ``provledger ARGS…`` in-process on the test's store."""

from __future__ import annotations

import os

import pytest

from ledger.cli.main import main


@pytest.fixture
def cli(store, monkeypatch, capsys):
    """Run ``provledger ARGS…`` in-process on the test's store: (exit code, stdout, stderr)."""
    for name in list(os.environ):
        if name.startswith("PROVLEDGER_") and name != "PROVLEDGER_REQUIRE_SERVICES":
            monkeypatch.delenv(name)
    for name, value in store.env.items():
        if name.startswith("PROVLEDGER_"):
            monkeypatch.setenv(name, value)

    def run(*args: str) -> tuple[int, str, str]:
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    run.store = store  # type: ignore[attr-defined]
    run.capsys = capsys  # type: ignore[attr-defined]
    return run
