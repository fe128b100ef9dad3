"""``provledger verify`` (local store, --server over real HTTP, --bundle offline), the bundle
endpoint's status codes and caching, and ``LedgerClient.verify_artifact``."""

from __future__ import annotations

import gzip
import hashlib
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import make_server

from ledger.cli import main as cli_main
from ledger.client import LedgerClient
from ledger.errors import MalformedError, NotFoundError, SignatureError
from ledger.tlog.note import generate_signer
from ledger.trust.bundle import Expectations
from ledger.trust.predicates import SLSA_V1
from tests.verdict_bundle.helpers import bundle_doc, key_event_positions, raw, supply_chain, without


@pytest.fixture
def env_store(store: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    for k, v in store.env.items():
        if k.startswith("PROVLEDGER_"):
            monkeypatch.setenv(k, v)
    return store


@pytest.fixture
def served(store: Any) -> Iterator[str]:
    """The ledger's app on a real port (the CLI and client speak HTTP to it)."""
    from web.app import create_app  # noqa: PLC0415

    app = create_app({"SETTINGS": store.settings, "TESTING": True})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(5)
        ext = app.extensions["provledger"]
        ext.sequencer.stop()
        ext.engine.dispose()


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        code = cli_main.main(argv)
    except SystemExit as exc:  # argparse's bad usage
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_local_store_trusted_human_and_json(env_store, capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    chain = supply_chain(env_store)
    code, out, _ = run(["verify", chain.artifact], capsys)
    assert code == 0, out
    assert out.startswith(f"{chain.artifact}: TRUSTED") and "root: entry" in out and "weakest link:" in out
    assert "key history complete (3 key events" in out
    code, out, _ = run(["verify", chain.artifact, "--json", "--expect-predicate", SLSA_V1, "--expect-signer", "ci"], capsys)
    doc = json.loads(out)
    assert code == 0 and doc["verdict"] == "trusted" and doc["ok"] is True
    assert {"artifact", "verdict", "weakest_link", "root", "links", "expectations", "evidence"} <= set(doc)
    assert [e["ok"] for e in doc["expectations"]] == [True, True]
    code, out, _ = run(["verify", chain.artifact, "--require-deployment"], capsys)
    assert code == 1 and "expect deployment: NOT MET" in out


def test_a_file_is_hashed_and_an_unknown_artifact_is_missing(env_store, capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    supply_chain(env_store)
    blob = tmp_path / "unknown.bin"
    blob.write_bytes(b"nobody attested this")
    code, out, _ = run(["verify", str(blob), "--json"], capsys)
    doc = json.loads(out)
    assert code == 1 and doc["verdict"] == "missing"
    assert doc["artifact"] == "sha256:" + hashlib.sha256(b"nobody attested this").hexdigest()


def test_revoked_is_exit_1_and_bundle_out_verifies_offline(env_store, capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    chain = supply_chain(env_store)
    out_file = tmp_path / "b.json"
    assert run(["verify", chain.artifact, "--bundle-out", str(out_file)], capsys)[0] == 0
    chain.trust.revoke(chain.keys["ci"], compromised_since=env_store.clock - 100)
    code, out, _ = run(["verify", chain.artifact], capsys)
    assert code == 1 and "UNTRUSTED" in out
    # the earlier bundle verifies offline on its own (no store needed: a bad database URL)
    vkey = env_store.log.vkey
    code, out, _ = run(["verify", chain.artifact, "--bundle", str(out_file), "--log-key", vkey], capsys)
    assert code == 0, out
    # its key history ends before the revocation; dropping a key event from it is caught
    doc = json.loads(out_file.read_text())
    (tmp_path / "dropped.json").write_bytes(raw(without(doc, key_event_positions(doc)[-1])))
    code, _, err = run(["verify", chain.artifact, "--bundle", str(tmp_path / "dropped.json"), "--log-key", vkey], capsys)
    assert code == 1 and "incomplete" in err
    other = generate_signer(env_store.log.origin).vkey
    code, _, err = run(["verify", chain.artifact, "--bundle", str(out_file), "--log-key", other], capsys)
    assert code == 1 and err.startswith("provledger: ")


def test_bad_usage_and_malformed_bundles_exit_2(env_store, capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    chain = supply_chain(env_store)
    vkey = env_store.log.vkey
    good = raw(bundle_doc(env_store, chain.artifact))
    cases = {"empty": b"", "truncated": good[:-40], "garbage": b"\xff\xfe", "array": b"[]"}
    for name, data in cases.items():
        path = tmp_path / f"{name}.json"
        path.write_bytes(data)
        code, _, err = run(["verify", chain.artifact, "--bundle", str(path), "--log-key", vkey], capsys)
        assert code == 2, (name, err)
        assert err.startswith("provledger: ") and err.count("\n") == 1, err
    from ledger.cli import verify as cli_verify  # noqa: PLC0415

    (tmp_path / "big.json").write_bytes(good)
    limit = cli_verify.MAX_VERDICT_BUNDLE_BYTES
    cli_verify.MAX_VERDICT_BUNDLE_BYTES = len(good) - 1
    try:
        code, _, err = run(["verify", chain.artifact, "--bundle", str(tmp_path / "big.json"), "--log-key", vkey], capsys)
        assert code == 2 and "over the limit" in err
    finally:
        cli_verify.MAX_VERDICT_BUNDLE_BYTES = limit
    for argv in (
        ["verify", "sha256:abc"],  # neither a digest nor a file
        ["verify", chain.artifact, "--bundle", str(tmp_path / "empty.json")],  # no --log-key
        ["verify", chain.artifact, "--server", "http://x", "--bundle", "y", "--log-key", vkey],
        ["verify", chain.artifact, "--threshold", "1"],
        ["verify", chain.artifact, "--max-age", "60"],
        ["verify", chain.artifact, "--bundle", str(tmp_path / "nope.json"), "--log-key", vkey],
        ["verify", chain.artifact, "--at", "-1"],
        ["verify", chain.artifact, "--at", "999"],
        ["verify", chain.artifact, "--witness", "not-a-key", "--log-key", vkey],
    ):
        code, _, err = run(argv, capsys)
        assert code == 2, (argv, err)


def test_server_path_and_unreachable_server(store, served, capsys) -> None:  # type: ignore[no-untyped-def]
    chain = supply_chain(store)
    vkey = store.log.vkey
    code, out, _ = run(["verify", chain.artifact, "--server", served, "--log-key", vkey, "--json"], capsys)
    assert code == 0 and json.loads(out)["verdict"] == "trusted"
    code, out, _ = run(["verify", "sha256:" + "0" * 64, "--server", served, "--log-key", vkey], capsys)
    assert code == 1 and "MISSING" in out
    wrong = generate_signer(store.log.origin).vkey
    assert run(["verify", chain.artifact, "--server", served, "--log-key", wrong], capsys)[0] == 1
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, _, err = run(["verify", chain.artifact, "--server", f"http://127.0.0.1:{port}", "--log-key", vkey], capsys)
    assert code == 3 and "cannot reach" in err


def test_gzip_bodies_are_bounded() -> None:
    from ledger.client import _gunzip  # noqa: PLC0415
    from ledger.errors import MalformedError, TooLargeError  # noqa: PLC0415

    assert _gunzip(gzip.compress(b"x" * 100), 100, "t") == b"x" * 100
    with pytest.raises(TooLargeError):
        _gunzip(gzip.compress(b"\0" * 10_000), 1000, "t")  # a small body that inflates past the limit
    with pytest.raises(MalformedError):
        _gunzip(b"not gzip", 1000, "t")


def test_client_verify_artifact(store, served) -> None:  # type: ignore[no-untyped-def]
    chain = supply_chain(store)
    client = LedgerClient(served)
    result = client.verify_artifact(chain.artifact, store.log.vkey, expectations=Expectations(signer="ci"))
    assert result.ok and result.chain["verdict"] == "trusted"
    with pytest.raises(SignatureError):
        client.verify_artifact(chain.artifact, generate_signer(store.log.origin).vkey)
    with pytest.raises(NotFoundError):
        client.verify_artifact("sha256:" + "1" * 64, store.log.vkey)


def test_bundle_endpoint_status_codes_and_caching(store) -> None:  # type: ignore[no-untyped-def]
    from web.app import create_app  # noqa: PLC0415

    chain = supply_chain(store)
    app = create_app({"SETTINGS": store.settings, "TESTING": True})
    client = app.test_client()
    try:
        url = f"/api/v1/artifacts/{chain.artifact}/bundle"
        first = client.get(url)
        assert first.status_code == 200 and first.headers["ETag"] and "must-revalidate" in first.headers["Cache-Control"]
        again = client.get(url, headers={"If-None-Match": first.headers["ETag"]})
        assert again.status_code == 304 and again.get_data() == b""
        assert client.get(url).get_data() == first.get_data()  # the same checkpoint, the same bytes
        chain.trust.revoke(chain.keys["ci"])  # a new checkpoint: a new bundle
        changed = client.get(url, headers={"If-None-Match": first.headers["ETag"]})
        assert changed.status_code == 200 and changed.headers["ETag"] != first.headers["ETag"]
        for bad in ("sha256:xyz", "md5:" + "0" * 32, "sha256:" + "0" * 63):
            r = client.get(f"/api/v1/artifacts/{bad}/bundle")
            assert r.status_code == 400 and r.get_json()["error"]["code"] == "malformed"
        for bad_at in ("-1", "x", "1.5", "9" * 30):
            assert client.get(f"{url}?at={bad_at}").status_code == 400
        assert client.get(f"{url}?at=9999").status_code == 404
        r = client.get(f"/api/v1/artifacts/sha256:{'2' * 64}/bundle")
        assert r.status_code == 404 and r.get_json()["error"]["code"] == "not_found"
        assert "/artifacts/{digest}/bundle" in client.get("/api/v1/openapi.json").get_json()["paths"]
        zipped = client.get(url, headers={"Accept-Encoding": "gzip"})
        assert zipped.headers["Content-Encoding"] == "gzip" and zipped.headers["ETag"].endswith('-gz"')
        assert gzip.decompress(zipped.get_data()) == client.get(url).get_data()
        assert len(zipped.get_data()) < len(client.get(url).get_data()) / 2
    finally:
        ext = app.extensions["provledger"]
        ext.sequencer.stop()
        ext.engine.dispose()


def test_big_files_show_hashing_progress_and_help_has_an_example(tmp_path: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    from ledger.cli import verify as cli_verify  # noqa: PLC0415

    blob = tmp_path / "firmware.img"
    blob.write_bytes(b"\x5a" * (3 * 1024 * 1024 + 7))
    monkeypatch.setattr(cli_verify, "PROGRESS_BYTES", 1024)
    monkeypatch.setattr(cli_verify, "_READ", 1024 * 1024)
    digest = cli_verify.artifact_digest(str(blob))
    assert digest == "sha256:" + hashlib.sha256(blob.read_bytes()).hexdigest()
    err = capsys.readouterr().err
    assert "hashing" in err and "100%" in err
    assert cli_verify.artifact_digest("SHA256:" + "AB" * 32) == "sha256:" + "ab" * 32
    for bad, said in (("", "ARTIFACT is empty"), (str(tmp_path), "is a directory"), (str(tmp_path / "nope"), "nor a file")):
        with pytest.raises(MalformedError, match=said):
            cli_verify.artifact_digest(bad)
    code, out, _ = run(["verify", "--help"], capsys)
    assert code == 0 and "example (a deploy gate)" in out and "Exit status" in out


def test_a_server_that_never_stops_sending_is_refused_at_the_limit(monkeypatch, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    """Every answer the client reads is bounded (it read all of any answer but a bundle): a
    server sending without end, or a huge error page, costs at most the limit in memory."""
    import http.server  # noqa: PLC0415
    import threading  # noqa: PLC0415

    import ledger.client as client_module  # noqa: PLC0415
    from ledger.errors import TooLargeError, UnavailableError  # noqa: PLC0415

    class Endless(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            status = 500 if self.path.startswith("/api/v1/receipt") else 200
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            chunk = b" " * 65536
            try:
                for _ in range(1024):  # 64 MiB, far past the limits set below
                    self.wfile.write(chunk)
            except OSError:  # the client stopped reading: as it should
                pass

        def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.do_GET()

        def log_message(self, *_args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Endless)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(client_module, "MAX_RESPONSE_BYTES", 1 << 20)
    monkeypatch.setattr(client_module, "MAX_ERROR_BYTES", 1 << 16)
    try:
        client = LedgerClient(f"http://127.0.0.1:{server.server_address[1]}", timeout=30)
        with pytest.raises(TooLargeError, match="over the limit of 1048576 bytes"):
            client.checkpoint()
        with pytest.raises(UnavailableError, match=r"failed \(500\)"):  # the error page: read only so far
            client.receipt(0)
        # `provledger submit --server` reads its answer with the same bound
        from ledger.cli.main import main  # noqa: PLC0415

        envelope = tmp_path / "envelope.json"
        envelope.write_text('{"payload": "", "payloadType": "x", "signatures": []}')
        url = f"http://127.0.0.1:{server.server_address[1]}"
        assert main(["submit", str(envelope), "--server", url, "--token", "t"]) == UnavailableError.exit_code
        assert "over the limit of 1048576 bytes" in capsys.readouterr().err
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    "options",
    [
        ["--bundle", ""],
        ["--server", "  "],
        ["--bundle-out", ""],
        ["--log-key", ""],
        ["--witness", ""],
        ["--expect-signer", ""],
        ["--expect-predicate", ""],
    ],
    ids=lambda o: o[0],
)
def test_an_empty_option_value_is_refused_not_read_as_left_out(env_store, capsys, tmp_path: Path, options: list[str]) -> None:  # type: ignore[no-untyped-def]
    """A deploy gate's ``--bundle "$BUNDLE"`` or ``--witness "$WITNESS"`` with the variable unset
    must not verify against the local store, or without the witness policy, and say trusted."""
    chain = supply_chain(env_store)
    assert run(["verify", chain.artifact], capsys)[0] == 0  # trusted locally
    code, out, err = run(["verify", chain.artifact, *options], capsys)
    assert code == 2 and "TRUSTED" not in out and "is empty" in err


def test_empty_witness_keys_are_refused_everywhere(capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from ledger.tlog.witness_policy import parse_witness_policy  # noqa: PLC0415

    with pytest.raises(MalformedError, match="witness key is empty"):
        parse_witness_policy([""])  # a library caller's unset variable
    receipt = tmp_path / "r.json"
    receipt.write_text("{}")
    code, _, err = run(["verify-receipt", str(receipt), "--log-key", "k", "--witness", ""], capsys)
    assert code == 2 and "is empty" in err
    code, _, err = run(["submit", str(receipt), "--server", ""], capsys)
    assert code == 2 and "is empty" in err
