"""Every command's help says each option's format and default and ends with an example
(README promises it; a newcomer reads --help before the README)."""

from __future__ import annotations

import argparse

import pytest

from ledger.cli.help import walk
from ledger.cli.main import build_parser

SKIP = (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)  # noqa: SLF001
COMMANDS = [(" ".join(path), p) for path, p in walk(build_parser()) if path]
LEAVES = [(name, p) for name, p in COMMANDS if not any(isinstance(a, argparse._SubParsersAction) for a in p._actions)]  # noqa: SLF001


@pytest.mark.parametrize("name,parser", LEAVES, ids=[n for n, _ in LEAVES])
def test_every_option_has_help_with_its_default_and_the_command_an_example(name: str, parser: argparse.ArgumentParser) -> None:
    for action in parser._actions:  # noqa: SLF001
        if isinstance(action, SKIP):
            continue
        label = "/".join(action.option_strings) or action.dest
        assert action.help, f"`provledger {name}` {label} has no help"
        if action.default not in (None, False, [], argparse.SUPPRESS) and not action.required:
            assert "default" in action.help, f"`provledger {name}` {label} does not state its default"
    assert "example" in (parser.epilog or ""), f"`provledger {name} --help` ends with no example"
    text = parser.format_help()
    assert "%(default)" not in text
    assert "example" in "\n".join(text.splitlines()[-6:]), f"`provledger {name} --help` does not end with its example"


def test_time_options_name_their_format() -> None:
    for name, parser in LEAVES:
        for action in parser._actions:  # noqa: SLF001
            if any(o in ("--not-before", "--not-after", "--review-by", "--since", "--until") for o in action.option_strings):
                assert "RFC 3339" in (action.help or ""), f"`provledger {name}` {action.option_strings[0]} names no format"
