"""``provledger attest verify``: exit codes, JSON shape, human output (on the real samples)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from ledger.cli import attest
from tests.conftest import skip_or_fail, vectors_root

pytestmark = pytest.mark.vectors


def _tee(relative: str) -> str:
    path = vectors_root() / "tee" / relative
    if not path.is_file():
        skip_or_fail(f"TEE vector {path} not found")
    return str(path)


def cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="provledger")
    attest.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def snp(*extra: str, report: str = "samples/sev-snp/virtee-sev/report_milan.bin") -> list[str]:
    return [
        "attest", "verify", "--type", "sev-snp", _tee(report),
        "--endorsement", _tee("samples/sev-snp/virtee-sev/vcek_milan.der"),
        "--endorsement", _tee("roots/amd/ask_ark_milan.pem"), *extra,
    ]


def test_accepted_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(snp("--at", "2024-01-01T00:00:00Z", "--json")) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"verdict", "checks", "claims"}
    assert out["verdict"] == "accept"
    assert all(set(c) == {"name", "ok", "reason"} for c in out["checks"])
    assert {"measurement", "report_data", "debug"} <= set(out["claims"])


def test_debug_guest_refused_then_allowed(capsys: pytest.CaptureFixture[str]) -> None:
    debug = ["--at", "2022-09-24T01:00:00Z"]
    report = "samples/sev-snp/go-sev-guest/attestation.bin"
    argv = snp(*debug, report=report)
    argv[argv.index(_tee("samples/sev-snp/virtee-sev/vcek_milan.der"))] = _tee(
        "samples/sev-snp/go-sev-guest/vcek.testcer"
    )
    assert cli(argv) == 1
    assert "[FAIL] debug_disabled" in capsys.readouterr().out
    assert cli([*argv, "--allow-debug"]) == 0


def test_nonce(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(snp("--at", "2024-01-01T00:00:00Z", "--nonce", "00" * 64)) == 1
    assert "report_data_binding" in capsys.readouterr().out


def test_multiple_endorsements_after_one_flag() -> None:
    argv = [
        "attest", "verify", "--type", "sev-snp", _tee("samples/sev-snp/virtee-sev/report_milan.bin"),
        "--at", "2024-01-01T00:00:00Z", "--endorsement",
        _tee("samples/sev-snp/virtee-sev/vcek_milan.der"), _tee("roots/amd/ask_ark_milan.pem"),
    ]
    assert cli(argv) == 0


def test_expired_at_today_is_refused() -> None:
    # Nitro leaf certificates live three hours: without --at the archived document is refused.
    argv = ["attest", "verify", "--type", "nitro",
            _tee("samples/nitro/evervault/beta-valid-attestation-doc-bytes")]
    assert cli(argv) == 1
    assert cli([*argv, "--at", "2022-10-13T08:58:02.136Z"]) == 0


@pytest.mark.parametrize(
    "extra",
    [["--at", "yesterday"], ["--at", "2024-01-01T00:00:00"], ["--nonce", "zz"]],
)
def test_bad_usage(extra: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(snp(*extra)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert err.count("\n") == 1


def test_malformed_evidence(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "report.bin"
    bad.write_bytes(b"\0" * 100)
    assert cli(["attest", "verify", "--type", "sev-snp", str(bad)]) == 2
    assert "1184 bytes" in capsys.readouterr().err
    garbage = tmp_path / "doc.cbor"
    garbage.write_bytes(b"\xff\x00")
    assert cli(["attest", "verify", "--type", "nitro", str(garbage)]) == 2


def test_missing_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["attest", "verify", "--type", "tdx", "/nonexistent/quote.dat"]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_unknown_type_is_usage_error() -> None:
    with pytest.raises(SystemExit) as exc:
        cli(["attest", "verify", "--type", "sgx", "x"])
    assert exc.value.code == 2
