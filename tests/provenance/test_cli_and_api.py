"""Each record kind round-trips through the command line (keygen, keys add, sign, submit,
search by digest, chain) and the HTTP API (POST, GET chain/search/signers)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ledger.cli import main as cli_main
from ledger.cli import provenance as cli_provenance
from ledger.trust.predicates import CYCLONEDX, FIRMWARE_IMAGE, HARDWARE_PART, SLSA_V02, SLSA_V1, SPDX
from tests.conftest import load_vector
from tests.provenance import helpers
from ledger.trust.policy import Grant


def _provenance_cli(argv: list[str]) -> int:
    """``keys``/``chain``/``search`` as ``ledger.cli.provenance`` registers them."""
    parser = cli_main._Parser(prog="provledger")  # noqa: SLF001
    sub = parser.add_subparsers(dest="command", required=True, parser_class=cli_main._Parser)  # noqa: SLF001
    cli_provenance.add_parser(sub)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except cli_main.LedgerError as exc:
        return exc.exit_code


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    capsys.readouterr()
    if argv[0] in ("keys", "chain", "search"):
        code = _provenance_cli(argv)
    else:
        code = cli_main.main(argv)
    return code, capsys.readouterr().out


@pytest.fixture
def cli_store(sqlite_store, monkeypatch):  # type: ignore[no-untyped-def]
    for k, v in sqlite_store.env.items():
        if k.startswith("PROVLEDGER_"):
            monkeypatch.setenv(k, v)
    return sqlite_store


def _records(tmp: Path) -> list[tuple[str, str, bytes, str]]:
    """(principal, allow, statement, sha256) for every record kind."""
    chip_s, chip = helpers.hardware_part("acme/chip")
    fw_s, fw = helpers.firmware_image("acme/bios", hardware=[chip])
    b1_s, b1 = helpers.build("app/v1", inputs=[fw])
    b2_s, b2 = helpers.build("app/v02", inputs=[b1], v02=True)
    sbom = load_vector("provenance/sbom/guac.small-deps-cyclonedx.json")
    spdx = load_vector("provenance/sbom/guac.alpine-small-spdx.json")
    return [
        ("hw", HARDWARE_PART, chip_s, chip),
        ("fw", FIRMWARE_IMAGE, fw_s, fw),
        ("ci", SLSA_V1, b1_s, b1),
        ("ci-legacy", SLSA_V02, b2_s, b2),
        ("sbom", CYCLONEDX, helpers.statement("app/v1", b1, CYCLONEDX, sbom), b1),
        ("spdx", SPDX, helpers.statement("app/v02", b2, SPDX, spdx), b2),
    ]


def test_every_record_kind_round_trips_through_the_cli(cli_store, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    for principal, allow, stmt, digest in _records(tmp_path):
        key = tmp_path / f"{principal}.pem"
        assert run(["keygen", "--out", str(key)], capsys)[0] == 0
        code, out = run(["keys", "add", "--name", principal, "--public-key", f"{key}.pub", "--allow", allow,
                         "--review-by", "2099-01-01T00:00:00Z"], capsys)
        assert code == 0, out
        statement = tmp_path / f"{principal}.json"
        statement.write_bytes(stmt)
        code, envelope = run(["sign", "--key", str(key), str(statement)], capsys)
        assert code == 0
        (tmp_path / f"{principal}.dsse.json").write_text(envelope)
        code, receipt = run(["submit", str(tmp_path / f"{principal}.dsse.json")], capsys)
        assert code == 0, receipt
        index = json.loads(receipt)["index"]
        code, found = run(["search", "--digest", f"sha256:{digest}", "--json"], capsys)
        assert index in [e["index"] for e in json.loads(found)["entries"]]
        code, chain = run(["chain", f"sha256:{digest}", "--json"], capsys)
        doc = json.loads(chain)
        assert doc["artifact"] == f"sha256:{digest}"
        # the record holds its digest's link up, or is listed beside the record that does
        assert index in [link["index"] for link in doc["links"]] + [o["index"] for link in doc["links"] for o in link["set_aside"]]
        assert set(doc) >= {"artifact", "verdict", "weakest_link", "root", "links"}
        assert set(doc["root"]) >= {"index", "kind", "subject", "signer", "key_id", "verdict", "reasons", "depends_on"}
    # the whole chain: v0.2 build → v1 build → firmware → chip. The builds hold their digests
    # up; the SBOMs about the same digests list components (Maven, Alpine packages) with no
    # records, so they are "missing" and set aside beside the builds, never pulling them down.
    code, chain = run(["chain", f"sha256:{_records(tmp_path)[3][3]}", "--json"], capsys)
    doc = json.loads(chain)
    assert code == 0 and doc["verdict"] == "trusted", doc
    assert doc["root"]["kind"] == "hardware-part"
    kinds = {link["kind"] for link in doc["links"]}
    assert kinds == {"build", "firmware-image", "hardware-part"}
    aside = [o for link in doc["links"] for o in link["set_aside"]]
    assert sorted(o["kind"] for o in aside) == ["sbom", "sbom"] and "missing" in {o["verdict"] for o in aside}


def test_keys_commands(cli_store, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    key = tmp_path / "k.pem"
    run(["keygen", "--out", str(key)], capsys)
    code, out = run(["keys", "add", "--name", "ci", "--public-key", f"{key}.pub", "--allow", SLSA_V1, "--subject", "pkg/*"], capsys)
    key_id = out.strip().splitlines()[-1]
    assert code == 0 and len(key_id) == 64
    assert run(["keys", "reaffirm", key_id, "--review-by", "2099-01-01T00:00:00Z"], capsys)[0] == 0
    code, shown = run(["keys", "show", key_id, "--json"], capsys)
    doc = json.loads(shown)
    assert [h["index"] for h in doc["history"]] == [0, 1] and doc["grants"][0]["review_by"] == "2099-01-01T00:00:00Z"
    run(["keygen", "--out", str(tmp_path / "k2.pem")], capsys)
    assert run(["keys", "rotate", key_id, "--public-key", f"{tmp_path / 'k2.pem'}.pub"], capsys)[0] == 0
    assert run(["keys", "threshold", "--predicate-type", "https://slsa.dev/*", "--count", "2"], capsys)[0] == 0
    assert run(["keys", "revoke", key_id, "--compromised-since", "2020-01-01T00:00:00Z"], capsys)[0] == 0
    code, listing = run(["keys", "list", "--json"], capsys)
    assert [k["status"] for k in json.loads(listing)] == ["revoked", "active"]
    assert run(["keys", "revoke", "f" * 64], capsys)[0] == 2  # no such key: NotFound
    assert run(["keys", "add", "--name", "x", "--public-key", f"{key}.pub", "--allow", "*", "--review-by", "soon"], capsys)[0] == 2
    assert run(["chain", "sha256:00"], capsys)[0] == 2
    assert run(["chain", "sha256:" + "0" * 64, "--at", "99"], capsys)[0] == 2
    assert run(["audit"], capsys)[0] == 0


def test_http_api(sqlite_store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from ledger.services.registry import create_token  # noqa: PLC0415
    from web.app import create_app  # noqa: PLC0415
    from web.api import provenance as api_provenance  # noqa: PLC0415

    trust = helpers.Trust(sqlite_store)
    hw = trust.add("hw", Grant((HARDWARE_PART,)))
    with sqlite_store.sessions() as session, session.begin():
        token = create_token(session, "t", "submit", now=1)
    app = create_app({"SETTINGS": sqlite_store.settings, "TESTING": True})
    if "api_provenance" not in app.blueprints:
        app.register_blueprint(api_provenance.bp)
    client = app.test_client()
    stmt, digest = helpers.hardware_part("acme/board")
    r = client.post("/api/v1/entries", json=helpers.envelope(stmt, hw), headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 201, r.json
    bad = stmt.replace(b'"part_number"', b'"partnumber"')
    r = client.post("/api/v1/entries", json=helpers.envelope(bad, hw), headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 400 and "part_number" in r.json["error"]["message"]
    out_of_scope, _ = helpers.build("pkg/a")
    r = client.post("/api/v1/entries", json=helpers.envelope(out_of_scope, hw), headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 403 and r.json["error"]["code"] == "not_trusted"
    r = client.get(f"/api/v1/artifacts/sha256:{digest}/chain")
    assert r.status_code == 200 and r.json["verdict"] == "trusted" and r.json["root"]["kind"] == "hardware-part"
    assert client.get(f"/api/v1/artifacts/sha256:{digest}/chain?at=0").json["verdict"] == "missing"
    assert client.get("/api/v1/artifacts/sha256:zz/chain").status_code == 400
    assert client.get(f"/api/v1/artifacts/sha256:{digest}/chain?at=500").status_code == 404
    r = client.get("/api/v1/search?signer=hw")
    assert [e["index"] for e in r.json["entries"]] == [1]
    assert client.get("/api/v1/search").status_code == 400
    # since/until are RFC 3339 times (the document says date-time): empty is refused, not ignored
    for query in ("signer=hw&since=", "signer=hw&until=", "since="):
        r = client.get(f"/api/v1/search?{query}")
        assert r.status_code == 400 and "must not be empty" in r.json["error"]["message"], (query, r.json)
    r = client.get("/api/v1/search?signer=hw&since=2000-01-01T00:00:00Z")
    assert [e["index"] for e in r.json["entries"]] == [1]
    r = client.get("/api/v1/signers")
    assert r.json["signers"][0]["principal"] == "hw" and r.json["root"]
