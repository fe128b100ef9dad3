"""`provledger` commands of the ledger core, with the guide's exit codes (0/1/2/3).

Most tests call ``ledger.cli.main.main`` in-process with PROVLEDGER_* set for the test's store
(fast); a few run the installed console script as a subprocess.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import stat
import subprocess
import os
from pathlib import Path

import pytest
from sqlalchemy import func, select

from ledger import merkle
from ledger.cli.main import main
from ledger.db import store as dbstore
from ledger.db.models import Entry
from ledger.records.keys import load_private_key, load_public_key
from ledger.tlog.note import generate_signer
from ledger.trust.predicates import KEY_EVENT
from ledger.services.registry import authenticate
from ledger.verify import verify_receipt
from tests.fixtures import PROVLEDGER, make_statement

VKEY = re.compile(r"^[^+\s]+\+[0-9a-f]{8}\+[A-Za-z0-9+/]+=*$")


def _last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


def _key_events(cli) -> int:
    """How many key-event entries the store holds: registering a key is a ledger entry (signed
    by the admin key), and in these tests they all come before the first record."""
    with cli.store.sessions() as session:
        return session.execute(select(func.count()).select_from(Entry).where(Entry.predicate_type == KEY_EVENT)).scalar_one()


@pytest.fixture
def signer(cli, tmp_path):
    """A registered signer: (private key path, key id)."""
    path = tmp_path / "keys" / "builder.pem"
    code, out, _ = cli("keygen", "--out", str(path))
    assert code == 0
    before = cli.store.size()
    code, out, _ = cli("keys", "add", "--name", "builder", "--public-key", f"{path}.pub", "--allow", "https://slsa.dev/*")
    assert code == 0
    # the registration is a key event: one entry, named in the output
    assert f"key event at entry {before}" in out and cli.store.size() == before + 1
    return path, _last_line(out)


@pytest.fixture
def envelope_file(cli, signer, tmp_path):
    statement = tmp_path / "statement.json"
    statement.write_bytes(make_statement("app.tar"))
    code, out, err = cli("sign", "--key", str(signer[0]), str(statement))
    assert code == 0, err
    path = tmp_path / "envelope.json"
    path.write_text(out)
    return path


@pytest.fixture
def receipt_file(cli, envelope_file, tmp_path):
    code, out, err = cli("submit", str(envelope_file))
    assert code == 0, err
    path = tmp_path / "receipt.json"
    path.write_text(out)
    return path


# ------------------------------------------------------------------------------ set-up


def test_init_is_idempotent_and_prints_vkey_last(cli):
    code, out, _ = cli("init")
    assert code == 0
    assert _last_line(out) == cli.store.log.vkey
    before = cli.store.state()
    code, out2, _ = cli("init")
    assert code == 0 and _last_line(out2) == cli.store.log.vkey
    assert cli.store.state() == before  # no second empty checkpoint, nothing changed


def test_init_fresh_home(tmp_path, monkeypatch, capsys):
    home = tmp_path / "fresh"
    monkeypatch.setenv("PROVLEDGER_HOME", str(home))
    monkeypatch.delenv("PROVLEDGER_DATABASE_URL", raising=False)
    monkeypatch.delenv("PROVLEDGER_ORIGIN", raising=False)
    assert main(["init"]) == 0
    vkey = _last_line(capsys.readouterr().out)
    assert VKEY.match(vkey), vkey
    assert stat.S_IMODE((home / "log.key").stat().st_mode) == 0o600
    assert (home / "ledger.db").exists()
    assert main(["init"]) == 0
    assert _last_line(capsys.readouterr().out) == vkey
    assert main(["log-key"]) == 0
    assert capsys.readouterr().out.strip() == vkey
    assert main(["audit", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"ok": True, "tree_size": 0, "first_bad_index": None, "problems": []}


def test_log_key(cli):
    code, out, _ = cli("log-key")
    assert code == 0
    assert out.strip() == cli.store.log.vkey
    origin, key_hash, key = out.strip().split("+", 2)
    assert origin == cli.store.settings.origin
    assert len(key_hash) == 8
    assert base64.b64decode(key)[0] == 1 and len(base64.b64decode(key)) == 33


@pytest.mark.parametrize("algorithm", ["ed25519", "ecdsa-p256"])
def test_keygen(cli, tmp_path, algorithm):
    path = tmp_path / "k" / "signer.pem"
    code, out, _ = cli("keygen", "--out", str(path), "--algorithm", algorithm)
    assert code == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    private = load_private_key(path.read_bytes())
    public = load_public_key(Path(f"{path}.pub").read_bytes())
    assert private.key_id == public.key_id == hashlib.sha256(public.spki_der).hexdigest()
    assert _last_line(out) == public.key_id
    # never overwrites a key
    code, _, err = cli("keygen", "--out", str(path))
    assert code == 1 and "already exists" in err
    assert load_private_key(path.read_bytes()).key_id == private.key_id


@pytest.mark.parametrize("command", [["keygen"], ["witness", "keygen", "--name", "witness.example"]])
def test_keygen_into_a_folder_it_cannot_make_says_so(cli, tmp_path, command):
    """A path under a file, or under a folder that cannot be created: one line, exit 2, nothing
    written (it was a FileNotFoundError or FileExistsError traceback)."""
    a_file = tmp_path / "file"
    a_file.write_text("x")
    read_only = tmp_path / "ro"
    read_only.mkdir(mode=0o500)
    cases = [(a_file / "k.pem", "is not a folder"), (tmp_path / "ro" / "sub" / "k.pem", "cannot create the folder")]
    if os.geteuid() == 0:  # root writes anywhere: /proc refuses every new folder
        cases[1] = (Path("/proc/provledger-no-such/k.pem"), "cannot create the folder")
    for out, says in cases:
        code, _, err = cli(*command, "--out", str(out))
        assert code == 2 and says in err and "Traceback" not in err, err
        assert not out.exists()
    assert a_file.read_text() == "x"


def test_keys_add_list_revoke(cli, signer, tmp_path):
    _, key_id = signer
    code, out, _ = cli("keys", "list", "--json")
    assert code == 0
    (listed,) = json.loads(out)
    assert listed["key_id"] == key_id and listed["principal"] == "builder"
    assert [g["predicate_types"] for g in listed["grants"]] == [["https://slsa.dev/*"]]
    assert listed["status"] == "active" and listed["revoked_at"] is None and listed["compromised_since"] is None
    # registering the same key again is a conflict
    before = cli.store.state()
    code, _, err = cli("keys", "add", "--name", "again", "--public-key", f"{signer[0]}.pub", "--allow", "*")
    assert code == 1 and key_id in err
    assert cli.store.state() == before
    code, out, _ = cli("keys", "revoke", key_id, "--compromised-since", "2025-01-01T00:00:00Z")
    assert code == 0
    code, out, _ = cli("keys", "list", "--json")
    (listed,) = json.loads(out)
    assert listed["status"] == "revoked" and listed["revoked_at"] is not None
    assert listed["compromised_since"] == "2025-01-01T00:00:00Z"  # 1735689600
    before = cli.store.state()
    code, _, err = cli("keys", "revoke", "0" * 64)
    assert code == 2 and "0" * 64 in err
    code, _, err = cli("keys", "revoke", key_id, "--compromised-since", "yesterday")
    assert code == 2
    assert cli.store.state() == before


def test_keys_add_bad_input(cli, tmp_path):
    garbage = tmp_path / "garbage.pub"
    garbage.write_text("not a key")
    code, _, err = cli("keys", "add", "--name", "x", "--public-key", str(garbage), "--allow", "*")
    assert code == 2 and err.startswith("provledger:")
    code, _, _ = cli("keys", "add", "--name", "x", "--public-key", str(tmp_path / "missing.pub"), "--allow", "*")
    assert code == 2
    with pytest.raises(SystemExit) as exit_:
        cli("keys", "add", "--name", "x", "--public-key", str(garbage))  # no --allow: fail closed
    assert exit_.value.code == 2


def test_tokens_create(cli):
    code, out, err = cli("tokens", "create", "--name", "ci", "--scope", "submit")
    assert code == 0 and "shown once" in err
    token = _last_line(out)
    with cli.store.sessions() as session:
        assert authenticate(session, token, "submit") is not None
        assert authenticate(session, token, "admin") is None
        assert authenticate(session, token + "x", "submit") is None


# ------------------------------------------------------------------------------ records


def test_sign_keeps_statement_bytes(cli, signer, tmp_path):
    statement = tmp_path / "s.json"
    raw = make_statement("odd   spacing.tar") + b"\n\n"
    statement.write_bytes(raw)
    code, out, _ = cli("sign", "--key", str(signer[0]), str(statement))
    assert code == 0
    envelope = json.loads(out)
    assert base64.b64decode(envelope["payload"]) == raw
    assert envelope["payloadType"] == "application/vnd.in-toto+json"
    assert envelope["signatures"][0]["keyid"] == signer[1]


@pytest.mark.parametrize("content", [b"{}", b"not json", b'{"_type": "https://in-toto.io/Statement/v1"}'])
def test_sign_refuses_invalid_statement(cli, signer, tmp_path, content):
    statement = tmp_path / "bad.json"
    statement.write_bytes(content)
    code, out, err = cli("sign", "--key", str(signer[0]), str(statement))
    assert code == 2 and out == "" and "statement" in err


def test_submit_and_duplicate(cli, envelope_file, receipt_file):
    base = _key_events(cli)
    assert base == 1
    receipt = json.loads(receipt_file.read_text())
    assert receipt["index"] == base and receipt["tree_size"] == base + 1
    verify_receipt(receipt, cli.store.log.vkey)
    code, out, err = cli("submit", str(envelope_file))
    assert code == 0 and "duplicate" in err
    assert json.loads(out)["index"] == base
    assert cli.store.size() == base + 1


def test_submit_refusals(cli, envelope_file, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{oops")
    code, _, err = cli("submit", str(bad))
    assert code == 2 and "JSON" in err
    # an envelope signed by a key the ledger does not know
    other = tmp_path / "other.pem"
    assert cli("keygen", "--out", str(other))[0] == 0
    statement = tmp_path / "s2.json"
    statement.write_bytes(make_statement("x"))
    _, out, _ = cli("sign", "--key", str(other), str(statement))
    unknown = tmp_path / "unknown.json"
    unknown.write_text(out)
    code, _, err = cli("submit", str(unknown))
    assert code == 1 and "not signed by any registered key" in err
    # a flipped signature byte
    env = json.loads(envelope_file.read_text())
    sig = bytearray(base64.b64decode(env["signatures"][0]["sig"]))
    sig[5] ^= 1
    env["signatures"][0]["sig"] = base64.b64encode(sig).decode()
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(env))
    code, _, err = cli("submit", str(forged))
    assert code == 1 and "does not verify" in err
    assert cli.store.size() == _key_events(cli) == 1  # only the signer's key event
    code, _, _ = cli("submit", str(tmp_path / "missing.json"))
    assert code == 2


def test_receipt_command(cli, receipt_file, envelope_file):
    index = _key_events(cli)  # the record comes after the signer's key event
    code, out, _ = cli("receipt", str(index))
    assert code == 0
    assert json.loads(out) == json.loads(receipt_file.read_text())
    code, _, err = cli("receipt", str(index + 1))
    assert code == 2 and str(index + 1) in err


def _verify(cli, tmp_path, receipt, *extra: str) -> tuple[int, str, str]:
    path = tmp_path / "check.json"
    path.write_text(receipt if isinstance(receipt, str) else json.dumps(receipt))
    return cli("verify-receipt", str(path), "--log-key", cli.store.log.vkey, *extra)


def _flip_b64(text: str, position: int = 0) -> str:
    raw = bytearray(base64.b64decode(text))
    raw[position] ^= 0x01
    return base64.b64encode(raw).decode()


def test_verify_receipt_ok_and_flips(cli, signer, tmp_path):
    # a receipt with a non-empty inclusion path: three entries in one batch
    key = load_private_key(Path(signer[0]).read_bytes())
    from tests.fixtures import sign  # noqa: PLC0415

    base = cli.store.size()  # the signer's key event
    results = cli.store.append_ok([sign(key, make_statement(f"a{i}")) for i in range(3)])
    receipt = results[0].receipt
    assert receipt["index"] == base
    code, out, _ = _verify(cli, tmp_path, receipt)
    assert code == 0 and out.startswith(f"OK: entry {base} ")
    code, _, _ = _verify(cli, tmp_path, receipt, "--public-key", f"{signer[0]}.pub")
    assert code == 0

    entry = dict(receipt, entry=_flip_b64(receipt["entry"], 20))
    assert _verify(cli, tmp_path, entry)[0] == 1

    lines = receipt["proof"].split("\n")
    hash_line = next(i for i, line in enumerate(lines) if i > 1 and len(line) == 44)
    lines[hash_line] = _flip_b64(lines[hash_line], 7)
    assert _verify(cli, tmp_path, dict(receipt, proof="\n".join(lines)))[0] == 1

    lines = receipt["proof"].split("\n")
    sig_line = next(i for i, line in enumerate(lines) if line.startswith("\u2014 "))
    dash, name, sig = lines[sig_line].split(" ")
    lines[sig_line] = f"{dash} {name} {_flip_b64(sig, 10)}"
    assert _verify(cli, tmp_path, dict(receipt, proof="\n".join(lines)))[0] == 1

    other_vkey = generate_signer(cli.store.log.origin).vkey  # the right origin, another key
    path = tmp_path / "r.json"
    path.write_text(json.dumps(receipt))
    code, _, _ = cli("verify-receipt", str(path), "--log-key", other_vkey)
    assert code == 1

    # a receipt for another index than its proof
    assert _verify(cli, tmp_path, dict(receipt, index=base + 1))[0] in (1, 2)
    # expected public key that did not sign
    other = tmp_path / "other.pem"
    cli("keygen", "--out", str(other))
    assert _verify(cli, tmp_path, receipt, "--public-key", f"{other}.pub")[0] == 1


@pytest.mark.parametrize("garbage", ["not json", "[]", '{"index": 0}', '{"index": -1, "tree_size": 1, "entry": "", "proof": ""}',
                                     '{"index": 0, "tree_size": 1, "entry": "%%%", "proof": "x"}'])
def test_verify_receipt_garbage_is_exit_2(cli, receipt_file, tmp_path, garbage):
    assert _verify(cli, tmp_path, garbage)[0] == 2


def test_verify_receipt_bad_log_key_is_exit_2(cli, receipt_file):
    code, _, _ = cli("verify-receipt", str(receipt_file), "--log-key", "not a vkey")
    assert code == 2


def test_verify_receipt_needs_no_store(receipt_file, cli, monkeypatch):
    monkeypatch.setenv("PROVLEDGER_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:1/nothing")
    monkeypatch.setenv("PROVLEDGER_HOME", "/nonexistent/home")
    assert cli("verify-receipt", str(receipt_file), "--log-key", cli.store.log.vkey)[0] == 0


def test_checkpoint_and_prove_consistency(cli, signer):
    key = load_private_key(Path(signer[0]).read_bytes())
    from tests.fixtures import sign  # noqa: PLC0415

    base = cli.store.size()  # the signer's key event
    mid, new = base + 3, base + 7
    cli.store.append_ok([sign(key) for _ in range(3)])
    cli.store.append_ok([sign(key) for _ in range(4)])
    code, out, _ = cli("checkpoint")
    assert code == 0
    with cli.store.sessions() as session:
        latest = dbstore.latest_checkpoint(session)
        old = dbstore.checkpoint_of_size(session, mid)
    assert out == latest.note
    assert out.splitlines()[1] == str(new)
    code, out, _ = cli("prove-consistency", "--old", str(mid))
    assert code == 0
    doc = json.loads(out)
    assert set(doc) == {"old_size", "new_size", "hashes"} and doc["old_size"] == mid and doc["new_size"] == new
    merkle.verify_consistency(mid, new, [base64.b64decode(h) for h in doc["hashes"]], old.root_hash, latest.root_hash)
    code, out, _ = cli("prove-consistency", "--old", "0", "--new", str(mid))
    assert code == 0 and json.loads(out)["hashes"] == []
    assert cli("prove-consistency", "--old", str(mid + 2), "--new", str(mid))[0] == 2
    assert cli("prove-consistency", "--old", "1", "--new", str(new + 1))[0] == 2


def test_audit_json_shape(cli, receipt_file):
    size = _key_events(cli) + 1  # the signer's key event and the record
    assert size == cli.store.size() == 2
    code, out, _ = cli("audit", "--json")
    assert code == 0
    assert json.loads(out) == {"ok": True, "tree_size": size, "first_bad_index": None, "problems": []}
    code, out, _ = cli("audit")
    assert code == 0 and out.startswith(f"OK: {size} entries")


def test_audit_hashes_checks_the_bytes_and_only_the_bytes(cli, receipt_file):
    """``--hashes`` is the hash level: it finds a changed leaf, but not a changed cache table (that
    is the full audit's rebuild, which does)."""
    from sqlalchemy import text  # noqa: PLC0415

    assert cli("audit", "--hashes")[0] == 0
    with cli.store.tamper() as conn:
        conn.execute(text("UPDATE entry_subjects SET name = 'pkg/forged' WHERE entry_idx = 1"))
    code, out, _ = cli("audit", "--hashes", "--json")
    assert code == 0 and json.loads(out)["ok"]
    code, out, _ = cli("audit", "--json")
    assert code == 1 and json.loads(out)["first_bad_index"] == 1
    with cli.store.tamper() as conn:
        data = bytes(conn.execute(text("SELECT data FROM entries WHERE idx = 0")).scalar_one())
        conn.execute(text("UPDATE entries SET data = :d WHERE idx = 0"), {"d": data.replace(b'"integrated_time":', b'"integrated_time": ', 1)})
    code, out, _ = cli("audit", "--hashes", "--json")
    assert code == 1 and json.loads(out)["first_bad_index"] == 0
    with pytest.raises(SystemExit) as exited:  # one mode at a time
        cli("audit", "--hashes", "--signatures")
    assert exited.value.code == 2


# ------------------------------------------------------------------------------ exit code 3


def test_uninitialised_store_is_exit_3(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PROVLEDGER_HOME", str(tmp_path / "empty"))
    monkeypatch.delenv("PROVLEDGER_DATABASE_URL", raising=False)
    monkeypatch.delenv("PROVLEDGER_ORIGIN", raising=False)
    for args in (["log-key"], ["audit"], ["receipt", "0"], ["checkpoint"], ["tokens", "create", "--name", "n", "--scope", "submit"]):
        assert main(args) == 3, args
        err = capsys.readouterr().err
        assert "provledger init" in err, err


def test_schema_missing_is_exit_3(tmp_path, monkeypatch, capsys):
    """The log key exists but the database was never migrated (e.g. a new empty database)."""
    home = tmp_path / "h"
    monkeypatch.setenv("PROVLEDGER_HOME", str(home))
    monkeypatch.delenv("PROVLEDGER_DATABASE_URL", raising=False)
    monkeypatch.delenv("PROVLEDGER_ORIGIN", raising=False)
    assert main(["init"]) == 0
    (home / "ledger.db").unlink()
    for suffix in ("-wal", "-shm"):
        (home / f"ledger.db{suffix}").unlink(missing_ok=True)
    capsys.readouterr()
    assert main(["audit"]) == 3
    assert "provledger init" in capsys.readouterr().err


def test_unreachable_postgres_is_exit_3(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PROVLEDGER_HOME", str(tmp_path / "h"))
    monkeypatch.setenv("PROVLEDGER_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:1/nothing")
    monkeypatch.delenv("PROVLEDGER_ORIGIN", raising=False)
    assert main(["init"]) == 3
    err = capsys.readouterr().err
    assert err.startswith("provledger:") and "database" in err
    assert main(["audit"]) == 3  # the log key exists now; the database still cannot be reached
    assert main(["receipt", "0"]) == 3


def test_bad_usage_is_exit_2(capsys):
    for args in ([], ["nonsense"], ["receipt", "abc"], ["keygen"], ["tokens", "create", "--name", "x", "--scope", "root"]):
        with pytest.raises(SystemExit) as exit_:
            main(args)
        assert exit_.value.code == 2, args
    capsys.readouterr()


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["serve", "--workers", "100000"], "--workers must be from 1 to 256"),
        (["serve", "--workers", "0"], "--workers must be from 1 to 256"),
        (["serve", "--threads", "100000"], "--threads from 1 to 1,024"),
        (["serve", "--port", "70000"], "a TCP port must be from 0 to 65,535"),
        (["serve", "--port", "-1"], "--port"),
        (["demo", "--port", "65536"], "a TCP port must be from 0 to 65,535"),
        (["witness", "serve", "--log-vkey", "x", "--port", "99999"], "a TCP port must be from 0 to 65,535"),
        (["import", "--workers", "257", "x.jsonl"], "a number of processes must be from 1 to 256"),
        (["audit", "--signatures", "--processes", "257"], "--processes takes a number from 1 to 256"),
        (["audit", "--signatures", "--processes", "0"], "--processes takes a number from 1 to 256"),
        (["audit", "--signatures", "--processes", "١"], "--processes"),  # an Arabic-Indic digit
    ],
)
def test_out_of_range_processes_threads_and_ports_are_usage_errors(cli, args, says):
    """Before: --workers 100000 died in serve with 'Too many open files', --threads 100000 with
    'can't start new thread', --port 70000 with an OverflowError from bind(): tracebacks. Now
    each is exit 2 with one line (from argparse, or from the command's own check)."""
    try:
        code, _, err = cli(*args)
    except SystemExit as exit_:
        code, err = exit_.code, cli.capsys.readouterr().err
    assert code == 2 and says in err and "Traceback" not in err, err
    assert cli.store.size() == 0


# ------------------------------------------------------------------------------ the real binary


def test_console_script_end_to_end(sqlite_store, tmp_path):
    env = sqlite_store.env

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([PROVLEDGER, *args], env=env, capture_output=True, text=True, timeout=120, check=False)

    init = run("init")
    assert init.returncode == 0 and _last_line(init.stdout) == sqlite_store.log.vkey
    key = tmp_path / "k.pem"
    assert run("keygen", "--out", str(key)).returncode == 0
    assert run("keys", "add", "--name", "ci", "--public-key", f"{key}.pub", "--allow", "https://slsa.dev/*").returncode == 0
    statement = tmp_path / "s.json"
    statement.write_bytes(make_statement("bin.tar"))
    signed = run("sign", "--key", str(key), str(statement))
    assert signed.returncode == 0, signed.stderr
    envelope = tmp_path / "e.json"
    envelope.write_text(signed.stdout)
    submitted = run("submit", str(envelope))
    assert submitted.returncode == 0, submitted.stderr
    receipt = tmp_path / "r.json"
    receipt.write_text(submitted.stdout)
    verified = run("verify-receipt", str(receipt), "--log-key", sqlite_store.log.vkey)
    assert verified.returncode == 0, verified.stderr
    assert json.loads(submitted.stdout)["index"] == 1  # after the key's registration (a key event, entry 0)
    audit = run("audit", "--json")
    assert audit.returncode == 0 and json.loads(audit.stdout)["tree_size"] == 2
    bad = run("verify-receipt", str(tmp_path / "missing.json"), "--log-key", sqlite_store.log.vkey)
    assert bad.returncode == 2 and bad.stderr.startswith("provledger:")
