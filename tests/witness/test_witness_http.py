"""``provledger witness keygen|serve``: the key file, the HTTP adapter, statuses and content types."""

from __future__ import annotations

import argparse
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from ledger.cli import witness as witness_cli
from ledger.errors import ConfigurationError, ConflictError, MalformedError
from ledger.tlog.note import CosignatureV1Verifier, parse_vkey
from ledger.tlog.witness import MAX_REQUEST_BYTES, SIZE_CONTENT_TYPE, format_add_checkpoint
from tests.conftest import load_vector
from web.witness import create_witness_app

NOW = 1_700_000_000


@pytest.fixture(scope="module")
def monkeys() -> dict[str, Any]:
    notes = load_vector("notes/signed_note_checkpoint_cosignature_vectors.json")
    (case,) = [c for c in notes["witness_add_checkpoint"] if c["id"] == "witness-monkeys-5-to-8"]
    return case


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="provledger")
    witness_cli.add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def _keygen(
    path: Path, capsys: pytest.CaptureFixture[str], name: str = "witness.example.com"
) -> str:
    args = _parse(["witness", "keygen", "--name", name, "--out", str(path)])
    assert args.func(args) == 0
    return capsys.readouterr().out.strip().splitlines()[-1]


def test_keygen_writes_a_private_key_and_prints_the_cosignature_vkey(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "w.key"
    vkey = _keygen(path, capsys)
    verifier = parse_vkey(vkey)
    assert isinstance(verifier, CosignatureV1Verifier)
    assert verifier.name == "witness.example.com"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert path.read_text().startswith("PRIVATE+KEY+witness.example.com+")
    with pytest.raises(ConflictError, match="already exists"):
        _keygen(path, capsys)
    with pytest.raises(MalformedError, match="name"):
        _keygen(tmp_path / "other.key", capsys, name="bad name")


def test_serve_needs_a_log_key_and_a_readable_state(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeys: dict[str, Any]
) -> None:
    key = tmp_path / "w.key"
    _keygen(key, capsys)
    with pytest.raises(SystemExit):
        _parse(["witness", "serve", "--key", str(key)])  # --log-vkey is required
    state = tmp_path / "state.json"
    state.write_text("{broken")
    args = _parse(
        [
            "witness",
            "serve",
            "--log-vkey",
            monkeys["log_vkey"],
            "--key",
            str(key),
            "--state",
            str(state),
        ]
    )
    with pytest.raises(ConfigurationError, match="damaged"):
        witness_cli.build_witness(args)
    args = _parse(
        [
            "witness",
            "serve",
            "--log-vkey",
            "not-a-vkey",
            "--key",
            str(key),
            "--state",
            str(tmp_path / "s2"),
        ]
    )
    with pytest.raises(MalformedError):
        witness_cli.build_witness(args)


def test_http_add_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeys: dict[str, Any]
) -> None:
    key = tmp_path / "w.key"
    vkey = _keygen(key, capsys)
    state = tmp_path / "state.json"
    args = _parse(
        [
            "witness",
            "serve",
            "--log-vkey",
            monkeys["log_vkey"],
            "--key",
            str(key),
            "--state",
            str(state),
        ]
    )
    app = create_witness_app(witness_cli.build_witness(args), clock=lambda: NOW)
    with app.test_client() as http:
        about = http.get("/")
        assert vkey in about.get_data(as_text=True) and "log monkeys" in about.get_data(
            as_text=True
        )

        first = http.post(
            "/add-checkpoint", data=format_add_checkpoint(0, [], monkeys["checkpoint_size5"])
        )
        assert first.status_code == 200
        assert first.content_type == "text/plain; charset=utf-8"
        line = first.get_data(as_text=True)
        assert line.startswith("\u2014 witness.example.com ") and line.endswith("\n")

        body = monkeys["c2sp_add_checkpoint_request_body_derived"].encode()
        assert http.post("/add-checkpoint", data=body).status_code == 200

        conflict = http.post("/add-checkpoint", data=body)
        assert conflict.status_code == 409
        assert conflict.content_type == SIZE_CONTENT_TYPE
        assert conflict.get_data() == b"8\n"

        assert http.post("/add-checkpoint", data=b"old x\n\n").status_code == 400
        assert http.get("/add-checkpoint").status_code == 405
        big = http.post("/add-checkpoint", data=b"x" * (MAX_REQUEST_BYTES + 1))
        assert big.status_code == 413
    assert '"size": 8' in state.read_text()
