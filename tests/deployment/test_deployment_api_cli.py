"""Deployments over HTTP (POST /api/v1/entries: 201, 403 naming the failed check, 400 naming the
field; the chain route shows the deployment) and on the command line (submit, chain)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ledger.cli import main as cli_main
from ledger.cli import provenance as cli_provenance
from ledger.services.deployment import appraisal_of
from tests.deployment import helpers as h
from tests.provenance.helpers import envelope
from tests.unit.attestation.factories import SnpPki, TpmPki


@pytest.mark.usefixtures("pinned", "tee_trust")
def test_http_api(sqlite_store, snp_now: SnpPki, tpm_now: TpmPki) -> None:  # type: ignore[no-untyped-def]
    from ledger.services.registry import create_token  # noqa: PLC0415
    from web.api import provenance as api_provenance  # noqa: PLC0415
    from web.app import create_app  # noqa: PLC0415

    w = h.world(sqlite_store)
    with sqlite_store.sessions() as session, session.begin():
        token = create_token(session, "t", "submit", now=1)
    app = create_app({"SETTINGS": sqlite_store.settings, "TESTING": True})
    if "api_provenance" not in app.blueprints:
        app.register_blueprint(api_provenance.bp)
    client = app.test_client()
    auth = {"Authorization": f"Bearer {token}"}

    def post(stmt: bytes):  # type: ignore[no-untyped-def]
        return client.post("/api/v1/entries", json=envelope(stmt, w.deployer), headers=auth)

    report, endorsements = h.snp_evidence(snp_now, w.artifact)
    r = post(h.deployment_statement(w.artifact, "sev-snp", report, endorsements))
    assert r.status_code == 201, r.json
    index = r.json["index"]

    debug, _ = h.snp_evidence(snp_now, w.artifact, policy=0x30000 | 1 << 19)
    r = post(h.deployment_statement(w.artifact, "sev-snp", debug, endorsements))
    assert r.status_code == 403 and r.json["error"]["code"] == "not_trusted"
    assert r.json["error"]["message"].startswith("deployment refused: debug_disabled: ")
    wrong, _ = h.snp_evidence(snp_now, w.artifact, measurement=b"\x01" * 48)
    r = post(h.deployment_statement(w.artifact, "sev-snp", wrong, endorsements))
    assert r.status_code == 403 and "firmware_measurement_matches: " in r.json["error"]["message"]
    replayed = h.tpm_evidence(tpm_now, h.prov.digest("another artifact"))
    r = post(h.deployment_statement(w.artifact, "tpm", replayed))
    assert r.status_code == 403 and "report_data_binding: " in r.json["error"]["message"]
    r = post(h.deployment_statement(w.artifact, "sev-snp", report[:500], endorsements))
    assert r.status_code == 400 and "predicate.evidence.data" in r.json["error"]["message"]
    r = post(h.deployment_statement(w.artifact, "sev-snp", report, endorsements, environment=7))
    assert r.status_code == 400 and "predicate.environment" in r.json["error"]["message"]

    chain = client.get(f"/api/v1/artifacts/sha256:{w.artifact}/chain").json
    assert chain["verdict"] == "trusted"
    kinds = {link["kind"] for link in chain["links"]}
    assert {"deployment", "build", "firmware-image", "hardware-part", "tee-evidence"} <= kinds
    assert [l["index"] for l in chain["links"] if l["kind"] == "deployment"] == [index]
    with sqlite_store.sessions() as session:
        assert appraisal_of(session, index)["verdict"] == "accept"  # type: ignore[index]


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    capsys.readouterr()
    if argv[0] == "chain":
        parser = cli_main._Parser(prog="provledger")  # noqa: SLF001
        sub = parser.add_subparsers(dest="command", required=True, parser_class=cli_main._Parser)  # noqa: SLF001
        cli_provenance.add_parser(sub)
        args = parser.parse_args(argv)
        try:
            code = int(args.func(args) or 0)
        except cli_main.LedgerError as exc:
            code = exc.exit_code
    else:
        code = cli_main.main(argv)
    return code, capsys.readouterr().out


@pytest.mark.usefixtures("pinned", "tee_trust")
def test_cli_submit_and_chain(sqlite_store, snp_now: SnpPki, tmp_path: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    for k, v in sqlite_store.env.items():
        if k.startswith("PROVLEDGER_") and k != "PROVLEDGER_TEE_TRUST_DIR":
            monkeypatch.setenv(k, v)
    w = h.world(sqlite_store)
    report, endorsements = h.snp_evidence(snp_now, w.artifact)
    good = tmp_path / "deploy.dsse.json"
    good.write_text(json.dumps(envelope(h.deployment_statement(w.artifact, "sev-snp", report, endorsements), w.deployer)))
    code, out = _run(["submit", str(good)], capsys)
    assert code == 0, out
    index = json.loads(out)["index"]
    replayed, _ = h.snp_evidence(snp_now, w.artifact, host="somewhere-else")
    bad = tmp_path / "replayed.dsse.json"
    bad.write_text(json.dumps(envelope(h.deployment_statement(w.artifact, "sev-snp", replayed, endorsements), w.deployer)))
    assert _run(["submit", str(bad)], capsys)[0] == 1

    code, out = _run(["chain", f"sha256:{w.artifact}", "--json"], capsys)
    doc = json.loads(out)
    assert code == 0 and doc["verdict"] == "trusted"
    deployment = next(l for l in doc["links"] if l["kind"] == "deployment")
    assert deployment["index"] == index and w.firmware_index in deployment["depends_on"]
    assert doc["root"]["kind"] == "hardware-part"
