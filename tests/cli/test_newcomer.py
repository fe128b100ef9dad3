"""The newcomer's first ten minutes: README's walkthrough runs as printed, in a fresh shell, and
the errors a newcomer meets first say what is wrong and what to do, in one sentence.

The walkthrough blocks are read from README.md itself, so the README cannot drift from what
works. They run in a scratch folder that holds only what a clone has (``.venv`` and
``examples/``), so nothing lands in the repository.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures import PROVLEDGER, REPO

pytestmark = pytest.mark.slow


def _readme_blocks() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Ten minutes with the ledger") :]
    section = section[: section.index("\n## ", 5)]
    return re.findall(r"```sh\n(.*?)```", section, re.S)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    """A scratch working tree with what a fresh clone plus `make install` has."""
    work = tmp_path / "clone"
    work.mkdir()
    (work / ".venv").symlink_to(Path(sys.executable).parent.parent)
    (work / "examples").symlink_to(REPO / "examples")
    return work


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROVLEDGER_")}
    env["PATH"] = "/usr/bin:/bin"  # provledger comes from `. .venv/bin/activate`, as README says
    return env


def test_readme_walkthrough_runs_as_printed(clone: Path) -> None:
    first, second = _readme_blocks()[:2]
    port = _free_port()
    script = "set -euo pipefail\n" + first + "\n" + second.replace("8000", str(port)) + "\nkill %1\n"
    done = subprocess.run(["bash", "-c", script], cwd=clone, env=_clean_env(), capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "OK: entry" in done.stdout  # verify-receipt
    assert re.search(r"is entry \d+; receipt verified; chain verdict: trusted", done.stdout)
    # nothing was written outside the scratch tree's var/
    assert sorted(p.name for p in clone.iterdir()) == [".venv", "examples", "var"]


def test_readme_names_every_variable_it_uses() -> None:
    first, second = _readme_blocks()[:2]
    used = set(re.findall(r"\$\{?([A-Z_][A-Z0-9_]*)", first + second))
    defined = set(re.findall(r"export ([A-Z_][A-Z0-9_]*)=", first + second)) | {"PWD"}
    assert used <= defined, f"README uses undefined variables: {sorted(used - defined)}"
    pipeline = (REPO / "examples" / "pipeline.py").read_text()
    for name in ("PROVLEDGER_URL", "PROVLEDGER_TOKEN", "PROVLEDGER_LOG_KEY", "PROVLEDGER_SIGNING_KEY"):
        assert name in pipeline.split('"""')[1], f"examples/pipeline.py does not document {name}"


def test_generated_keys_and_ledgers_are_ignored_by_git() -> None:
    """README keeps keys under $PROVLEDGER_HOME (var/ by default); a key written to keys/ or a
    stray PEM is ignored too, so a private key never lands in a commit by accident."""
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    paths = ["var/mine/keys/ci.pem", "keys/ci.pem", "ci.pem", "ci.pem.pub", "var/demo/ledger.db"]
    done = subprocess.run(["git", "check-ignore", *paths], cwd=REPO, capture_output=True, text=True)
    assert sorted(done.stdout.split()) == sorted(paths)


# ------------------------------------------------------------------------------ errors


def _one_sentence(err: str) -> str:
    lines = [l for l in err.strip().splitlines() if l.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_submitting_a_bare_statement_says_sign_it_first(cli) -> None:
    code, _, err = cli("submit", str(REPO / "examples" / "statement.json"))
    assert code == 2
    line = _one_sentence(err)
    assert "in-toto statement, not a signed DSSE envelope" in line and "provledger sign --key" in line


def test_verify_receipt_of_something_else_says_it_is_not_a_receipt(cli, tmp_path: Path) -> None:
    other = tmp_path / "statement.json"
    other.write_text((REPO / "examples" / "statement.json").read_text())
    code, _, err = cli("verify-receipt", str(other), "--log-key", "example.com/log+01234567+AQ" + "A" * 42 + "=")
    assert code == 2
    assert "not a receipt" in _one_sentence(err)


def test_wrong_log_key_names_both_key_ids(cli, store, tmp_path: Path) -> None:
    from ledger.tlog.note import generate_signer  # noqa: PLC0415
    from tests.fixtures import make_statement, sign  # noqa: PLC0415

    key = store.add_signer(name="ci")
    (result,) = store.append_ok([json.dumps(sign(key, make_statement()))])
    receipt = tmp_path / "receipt.json"
    receipt.write_text(json.dumps(result.receipt))
    other_vkey = generate_signer("other.example/log").vkey
    code, _, err = cli("verify-receipt", str(receipt), "--log-key", other_vkey)
    assert code == 1
    line = _one_sentence(err)
    theirs = store.log.vkey.split("+")[1]
    ours = other_vkey.split("+")[1]
    assert theirs in line and ours in line and "provledger log-key" in line


def test_busy_port_is_one_sentence_and_exit_3(tmp_path: Path) -> None:
    env = {**_clean_env(), "PROVLEDGER_HOME": str(tmp_path / "home"), "PATH": os.environ["PATH"]}
    subprocess.run([PROVLEDGER, "init"], env=env, check=True, capture_output=True)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run([PROVLEDGER, "serve", "--port", str(port)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 3
    assert done.stdout == ""
    line = _one_sentence(done.stderr)
    assert f"port {port}" in line and "already in use" in line


def test_submit_with_a_bad_token_is_a_refusal_not_an_outage(store, tmp_path: Path) -> None:
    """401 from the server: exit 1 (the token does not verify) with what to do, not exit 3."""
    from werkzeug.serving import make_server  # noqa: PLC0415
    import threading  # noqa: PLC0415

    from tests.fixtures import make_statement, sign  # noqa: PLC0415
    from web.app import create_app  # noqa: PLC0415

    app = create_app({"SETTINGS": store.settings, "WITNESSES": None})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        envelope = tmp_path / "envelope.json"
        envelope.write_text(json.dumps(sign(store.add_signer(name="ci"), make_statement())))
        env = {**os.environ, **store.env}
        done = subprocess.run(
            [PROVLEDGER, "submit", str(envelope), "--server", f"http://127.0.0.1:{server.server_port}", "--token", "plt_wrong"],
            env=env, capture_output=True, text=True, timeout=60,
        )
    finally:
        server.shutdown()
        server.server_close()
        ext = app.extensions["provledger"]
        ext.sequencer.stop()
        ext.engine.dispose()
    assert done.returncode == 1, done.stderr
    line = _one_sentence(done.stderr)
    assert "401" in line and "PROVLEDGER_TOKEN" in line and "tokens create" in line


def test_chain_of_an_unknown_digest_says_so_in_one_line(cli) -> None:
    code, out, _ = cli("chain", "sha256:" + "ab" * 32)
    assert code == 1
    assert out.strip() == f"sha256:{'ab' * 32}: missing: no record about it is in the ledger, so nothing vouches for it"


def test_an_unregistered_key_is_named(cli, tmp_path: Path) -> None:
    from ledger.records.keys import generate_private_key  # noqa: PLC0415
    from tests.fixtures import make_statement, sign  # noqa: PLC0415

    stranger = generate_private_key()
    envelope = tmp_path / "envelope.json"
    envelope.write_text(json.dumps(sign(stranger, make_statement())))
    code, _, err = cli("submit", str(envelope))
    assert code == 1
    line = _one_sentence(err)
    assert stranger.key_id in line and "provledger keys add" in line
