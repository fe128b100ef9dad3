"""What the command line prints for people shows control and invisible format characters as
escapes: text from a remote ledger, a bundle or a refusal cannot rewrite the reader's screen."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from ledger.cli import main as cli_main
from ledger.cli import verify as cli_verify
from ledger.cli.commands import _out
from ledger.cli.terminal import safe
from ledger.errors import NotTrustedError


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("plain text, Zoë, 構築", "plain text, Zoë, 構築"),
        ("two\nlines\tand a tab", "two\nlines\tand a tab"),
        ("red\x1b[31m", "red\\x1b[31m"),
        ("over\rwrite", "over\\x0dwrite"),
        ("bell\x07 nul\x00 del\x7f", "bell\\x07 nul\\x00 del\\x7f"),
        ("c1\x9b2J", "c1\\x9b2J"),
        ("a\u202eb\u2066c\u200bd\ufeff", "a\\u202eb\\u2066c\\u200bd\\ufeff"),
        ("lone \ud800", "lone \\ud800"),
    ],
)
def test_safe_escapes_what_could_rewrite_a_screen(text: str, shown: str) -> None:
    assert safe(text) == shown


def test_out_prints_safely(capsys: Any) -> None:
    _out("principal ci\x1b]0;pwned\x07")
    assert capsys.readouterr().out == "principal ci\\x1b]0;pwned\\x07\n"


def test_verify_human_output_is_safe(capsys: Any) -> None:
    link = {"verdict": "untrusted", "kind": "build", "subject": "sha256:" + "ab" * 32, "index": 3, "signer": "ci\u2066x",
            "reasons": ["signed by \x1b[32mtrusted-vendor\x1b[0m"], "depends_on": []}
    doc = {"artifact": "sha256:" + "ab" * 32, "verdict": "untrusted", "ok": False, "reasons": ["key of \u202eevil"],
           "root": link, "weakest_link": link, "links": [link], "expectations": [], "evidence": None}
    cli_verify._print_human(doc)  # noqa: SLF001
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\u202e" not in out
    assert "\\x1b[32mtrusted-vendor" in out and "\\u202eevil" in out and "signed by ci\\u2066x" in out


def test_an_error_is_printed_safely(monkeypatch: Any, capsys: Any) -> None:
    def refuse(args: argparse.Namespace) -> int:
        raise NotTrustedError("signed by ci\x1b[2K\rall good")

    parser = cli_main.build_parser()
    real_parse = parser.parse_args

    def parse(argv: Any) -> argparse.Namespace:
        args = real_parse(argv)
        args.func = refuse
        return args

    monkeypatch.setattr(parser, "parse_args", parse)
    monkeypatch.setattr(cli_main, "build_parser", lambda: parser)
    assert cli_main.main(["log-key"]) == NotTrustedError.exit_code
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\r" not in err and "ci\\x1b[2K\\x0dall good" in err
