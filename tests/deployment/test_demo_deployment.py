"""The demo deploys its OS image with a bound vTPM quote: the artifact's chain runs from the
deployment to the build and, through the firmware its PCRs matched, to the chip; all trusted."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from ledger.cli.demo import run_demo
from ledger.config import Settings
from ledger.db.engine import make_engine, make_session_factory
from ledger.services import chain as chain_service
from ledger.services.deployment import appraisal_of
from tests.fixtures import PROVLEDGER


def test_demo_chain_reaches_from_the_deployment_to_the_chip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # type: ignore[no-untyped-def]
    home = tmp_path / "demo"
    # run_demo sets these for its own process; put them back afterwards
    monkeypatch.setenv("PROVLEDGER_HOME", str(home))
    monkeypatch.setenv("PROVLEDGER_TEE_TRUST_DIR", str(home / "tee-trust"))
    monkeypatch.delenv("PROVLEDGER_DATABASE_URL", raising=False)
    assert run_demo(home, serve_it=False) == 0
    out = capsys.readouterr().out
    assert "deployed on edge-appliance-0042" in out
    assert (home / "tee-trust" / "demo-vtpm-ca.pem").read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
    artifact = next(line.split()[2].rstrip(":") for line in out.splitlines() if line.startswith("chain of "))
    engine = make_engine(Settings.from_env().database_url)
    try:
        with make_session_factory(engine)() as session:
            chain = chain_service.chain(session, artifact)
            deployment = next(l for l in chain["links"] if l["kind"] == "deployment")
            doc = appraisal_of(session, deployment["index"])
    finally:
        engine.dispose()
    assert chain["verdict"] == "trusted" and all(l["verdict"] == "trusted" for l in chain["links"])
    by_index = {l["index"]: l for l in chain["links"] if l["index"] is not None}
    kinds = {by_index[i]["kind"] for i in deployment["depends_on"]}
    assert kinds == {"build", "firmware-image"}  # the SBOM about the artifact is listed beside its build (set_aside)
    firmware = next(by_index[i] for i in deployment["depends_on"] if by_index[i]["kind"] == "firmware-image")
    board = by_index[firmware["depends_on"][0]]
    assert board["kind"] == "hardware-part" and by_index[board["depends_on"][0]]["kind"] == "hardware-part"
    assert chain["root"]["kind"] == "hardware-part"
    (tee,) = [l for l in chain["links"] if l["kind"] == "tee-evidence"]
    assert tee["signer"].startswith("Demo vTPM CA")
    assert doc is not None and doc["verdict"] == "accept" and doc["evidence_type"] == "tpm"
    assert {c["name"] for c in doc["checks"]} >= {"ak_chain", "quote_signature", "report_data_binding", "firmware_measurement_matches"}


def _demo_env(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    monkeypatch.setenv("PROVLEDGER_HOME", str(home))
    monkeypatch.setenv("PROVLEDGER_TEE_TRUST_DIR", str(home / "tee-trust"))
    monkeypatch.delenv("PROVLEDGER_DATABASE_URL", raising=False)


def test_demo_replaces_only_a_demo_ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # type: ignore[no-untyped-def]
    """The demo makes its ledger in a fresh folder: an earlier demo there is replaced, but a folder
    with anything else in it (``--home ~``, a real ledger's home) is refused and left untouched."""
    from ledger.cli.demo import DEMO_MARKER  # noqa: PLC0415
    from ledger.cli.main import main  # noqa: PLC0415
    from ledger.errors import ConfigurationError  # noqa: PLC0415

    precious = tmp_path / "mine"
    precious.mkdir()
    (precious / "thesis.txt").write_text("four years")
    (precious / "ledger.db").write_bytes(b"a real ledger")
    _demo_env(monkeypatch, precious)
    with pytest.raises(ConfigurationError, match="is not empty and is not a demo ledger"):
        run_demo(precious, serve_it=False)
    assert main(["demo", "--no-serve", "--home", str(precious)]) == ConfigurationError.exit_code
    assert "not a demo ledger" in capsys.readouterr().err
    assert sorted(p.name for p in precious.iterdir()) == ["ledger.db", "thesis.txt"]
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(ConfigurationError, match="is a file"):
        run_demo(a_file, serve_it=False)

    home = tmp_path / "empty"
    home.mkdir()  # an empty folder is taken

    def demo() -> None:  # the real command, once per process as a user runs it
        env = {k: v for k, v in os.environ.items() if not k.startswith("PROVLEDGER_")}
        done = subprocess.run([PROVLEDGER, "demo", "--no-serve", "--home", str(home)], env=env,
                              capture_output=True, text=True, timeout=300, check=False)
        assert done.returncode == 0, done.stderr[-2000:]

    demo()
    assert (home / DEMO_MARKER).is_file()
    first = (home / "log.key").read_bytes()
    (home / "stray.txt").write_text("left by the user in the demo folder")
    demo()  # its own earlier demo: replaced whole
    assert (home / "log.key").read_bytes() != first and not (home / "stray.txt").exists()
    capsys.readouterr()
