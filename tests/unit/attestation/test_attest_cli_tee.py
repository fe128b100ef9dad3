"""``attest verify`` with TDX collateral (files, folder, the shared samples), and the admin
commands ``attest set-policy`` / ``attest add-collateral`` that record key events."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ledger.cli.main import main
from ledger.services.deployment import tee_state
from tests.unit.attestation.tcb_factories import TcbPki, levels

SAMPLE_COLLATERAL = ("sample_tcbInfo_response", "sample_qeIdentity_response", "tcbInfoIssuerChain.pem", "pckcrl", "rootcrl.der")


def _samples(vectors: Path) -> Path:
    folder = vectors / "tee" / "samples" / "tdx" / "go-tdx-guest"
    if not folder.is_dir():
        pytest.skip("no TDX samples")
    return folder


@pytest.mark.vectors
def test_verify_with_collateral_folder_and_files(vectors_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = _samples(vectors_dir)
    folder = tmp_path / "collateral"
    folder.mkdir()
    for name in SAMPLE_COLLATERAL:
        shutil.copy(d / name, folder / name)
    quote = str(d / "tdx_prod_quote_SPR_E4.dat")
    assert main(["attest", "verify", "--type", "tdx", quote, "--at", "2023-06-20T00:00:00Z", "--collateral", str(folder), "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    checks = {c["name"]: c for c in out["checks"]}
    assert checks["tcb_info"]["ok"] and checks["qe_identity_collateral"]["ok"] and checks["crl_not_revoked"]["ok"]
    assert not checks["tcb_level"]["ok"] and out["claims"]["fmspc"] == "50806f000000"
    code = main(["attest", "verify", "--type", "tdx", quote, "--at", "2023-06-20T00:00:00Z",
                 "--tcb-info", str(d / "sample_tcbInfo_response"), "--qe-identity", str(d / "sample_qeIdentity_response"),
                 "--endorsement", str(d / "tcbInfoIssuerChain.pem"), "--json"])
    assert code == 1 and json.loads(capsys.readouterr().out)["claims"]["tcb_status"] == "TcbNotSupported"
    # a folder holding something that is not collateral is refused, naming the file
    shutil.copy(d / "report.dat", folder / "report.dat")
    assert main(["attest", "verify", "--type", "tdx", quote, "--at", "2023-06-20T00:00:00Z", "--collateral", str(folder)]) == 2
    assert "report.dat" in capsys.readouterr().err


@pytest.mark.vectors
def test_collateral_flags_refused_for_other_types_and_wrong_files(vectors_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = _samples(vectors_dir)
    snp = vectors_dir / "tee" / "samples" / "sev-snp" / "virtee-sev" / "report_milan.bin"
    assert main(["attest", "verify", "--type", "sev-snp", str(snp), "--tcb-info", str(d / "sample_tcbInfo_response")]) == 2
    assert "tdx only" in capsys.readouterr().err
    quote = str(d / "tdx_prod_quote_SPR_E4.dat")
    assert main(["attest", "verify", "--type", "tdx", quote, "--tcb-info", str(d / "sample_qeIdentity_response")]) == 2
    assert "not a TCB Info" in capsys.readouterr().err


def _use_store(store, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    for k, v in store.env.items():
        if k.startswith("PROVLEDGER_"):
            monkeypatch.setenv(k, v)


def test_set_policy_and_add_collateral(sqlite_store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    _use_store(sqlite_store, monkeypatch)
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"version": 1, "environment": "staging", "sev-snp": {"allowed_vmpls": [0, 1, 2, 3]}}))
    assert main(["attest", "set-policy", str(policy)]) == 0
    assert "'staging' recorded" in capsys.readouterr().out
    bad = tmp_path / "bad.json"
    bad.write_text('{"version": 1, "sev-snp": {"allowed_vmpls": [9]}}')
    assert main(["attest", "set-policy", str(bad)]) == 2
    assert "allowed_vmpls[0]" in capsys.readouterr().err
    pki = TcbPki()
    files = []
    for n, blob in enumerate([pki.tcb_info(levels()), pki.qe_identity(), *pki.chain_files()]):
        path = tmp_path / f"c{n}"
        path.write_bytes(blob)
        files.append(str(path))
    assert main(["attest", "add-collateral", *files]) == 0
    (tmp_path / "junk").write_bytes(b"not collateral")
    assert main(["attest", "add-collateral", str(tmp_path / "junk")]) == 2
    with sqlite_store.sessions() as session:
        state = tee_state(session)
    assert state.policy_document("staging")[0].policy_for("sev-snp").allowed_vmpl == frozenset({0, 1, 2, 3})
    collateral = state.tdx_collateral()
    assert len(collateral.tcb_infos) == len(collateral.qe_identities) == 1
