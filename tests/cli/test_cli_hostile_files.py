"""Hostile files given to `provledger`: one sentence on stderr and exit 2, never a traceback;
`import` lists a record the database refuses as refused and goes on."""

from __future__ import annotations

import pytest

from ledger.cli.main import main
from tests.fixtures import envelope_bytes, make_statement, sign
from tests.services.test_isolation import POISON, refuse_poison

HOSTILE_FILES = {
    "deep": b"[" * 10_000 + b"]" * 10_000,
    "open": b"[" * 10_000,
    "duplicate": b'{"payload": "", "payload": "", "payloadType": "x", "signatures": []}',
    "surrogate": b'{"payload": "\\ud800", "payloadType": "x", "signatures": []}',
    "nan": b'{"payload": NaN}',
    "huge": b'{"payload": ' + b"9" * 5000 + b"}",
    "latin1": '{"payload": "é"}'.encode("latin-1"),
    "utf16": '{"payload": "x"}'.encode("utf-16"),
}


@pytest.fixture
def cli(store, monkeypatch, capsys):
    for name in list(__import__("os").environ):
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
    return run


def _one_sentence(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("provledger: ")
    return lines[0]


@pytest.mark.parametrize("kind", sorted(HOSTILE_FILES))
def test_hostile_files_are_one_sentence_and_exit_2(cli, tmp_path, kind):
    path = tmp_path / f"{kind}.json"
    path.write_bytes(HOSTILE_FILES[kind])
    before = cli.store.state()
    for args in (("submit", str(path)), ("verify-receipt", str(path), "--log-key", cli.store.log.vkey)):
        code, _, err = cli(*args)
        assert code == 2, (args, err)
        _one_sentence(err)
    assert cli.store.state() == before


def test_sign_refuses_a_hostile_statement_in_one_sentence(cli, tmp_path):
    code, out, _ = cli("keygen", "--out", str(tmp_path / "k"))
    assert code == 0
    for kind in ("deep", "duplicate", "surrogate", "nan"):
        path = tmp_path / f"{kind}.json"
        path.write_bytes(HOSTILE_FILES[kind])
        code, _, err = cli("sign", "--key", str(tmp_path / "k"), str(path))
        assert code == 2, err
        _one_sentence(err)


def test_numbers_on_the_command_line_are_ascii_and_bounded(cli):
    digest = "sha256:" + "0" * 64
    for args in (
        ("receipt", "\u0661"), ("receipt", "9" * 30), ("prove-consistency", "--old", "\uff11"),
        # these were read with int(): '١' was 1 and 10**30 went on to the store
        ("verify", digest, "--at", "\u0661"), ("verify", digest, "--at", "9" * 30), ("verify", digest, "--max-age", "\u0661"),
        ("verify", digest, "--threshold", "\u0661"), ("verify-receipt", "r.json", "--log-key", "x", "--threshold", "\u0661"),
        ("keys", "threshold", "--predicate-type", "x", "--count", "\u0661"), ("keys", "threshold", "--predicate-type", "x", "--count", "9" * 30),
    ):
        with pytest.raises(SystemExit) as info:
            cli(*args)
        assert info.value.code == 2


def test_import_lists_a_refused_record_and_goes_on(cli, tmp_path):
    store = cli.store
    key = store.add_signer()
    refuse_poison(store)
    lines = [envelope_bytes(sign(key, make_statement(POISON if i == 3 else None))) for i in range(8)]
    lines.insert(5, b"[" * 10_000)  # a hostile line is refused too, not a traceback
    lines.insert(6, b'{"a": 1, "a": 2}')
    path = tmp_path / "records.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    before = store.size()
    code, out, err = cli("import", str(path), "--workers", "1", "--batch", "4")
    assert code == 1, err
    assert "Traceback" not in err
    refused = [line for line in err.splitlines() if line.startswith("refused envelope")]
    assert [line.split(":")[0] for line in refused] == ["refused envelope 3", "refused envelope 5", "refused envelope 6"]
    assert "database refused this record" in refused[0] and "deeper than" in refused[1] and "repeats the key" in refused[2]
    assert out.strip().splitlines()[-1].startswith("7 appended, 0 duplicates, 3 refused")
    assert store.size() == before + 7


def test_endless_inputs_are_refused_at_the_limit_not_read_to_exhaustion(cli, tmp_path):
    """/dev/zero (through a symlink: the name a user would give) has no end and no size: every
    file the command line reads is read to its limit and refused there (each was read whole,
    until memory ran out)."""
    import os  # noqa: PLC0415

    zero = tmp_path / "zero.json"
    os.symlink("/dev/zero", zero)
    before = cli.store.state()
    for args, says in (
        (("submit", str(zero)), "larger than the limit of 4194304 bytes"),
        (("verify-receipt", str(zero), "--log-key", cli.store.log.vkey), "larger than the limit"),
        (("keys", "add", "--name", "z", "--public-key", str(zero), "--allow", "x"), "larger than the limit"),
        (("verify", "sha256:" + "0" * 64, "--bundle", str(zero), "--log-key", cli.store.log.vkey), "is over the limit of"),
        (("attest", "verify", "--type", "tpm", str(zero)), "larger than the limit of 67108864 bytes"),
    ):
        code, _, err = cli(*args)
        assert code == 2, (args, err)
        # `attest verify` words its usage errors as "error: …", the others as "provledger: …"
        assert says in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert cli.store.state() == before


def test_import_refuses_an_oversized_envelope_or_line_alone_and_goes_on(cli, tmp_path):
    store = cli.store
    key = store.add_signer()
    good = [envelope_bytes(sign(key, make_statement(name=f"pkg/ok-{i}"))) for i in range(3)]
    lines = tmp_path / "many.jsonl"
    lines.write_bytes(good[0] + b"\n" + b"a" * (4 * 1024 * 1024 + 10) + b"\n" + good[1] + b"\n")
    big = tmp_path / "big.json"
    big.write_bytes(b" " * (4 * 1024 * 1024 + 1))
    single = tmp_path / "one.json"
    single.write_bytes(good[2])
    size = store.size()
    code, out, err = cli("import", str(lines), str(big), str(single))
    assert code == 1, err
    assert "line 2 of" in err and "is over the limit of 4194304 bytes" in err
    assert f"envelope {big} is larger than the limit of 4194304 bytes" in err
    assert out.strip().startswith("3 appended, 0 duplicates, 2 refused")
    assert store.size() == size + 3
