"""Help text that says, for every option, its format and default, and ends each command with an
example. Applied to the finished parser by :func:`complete_help`, so a command added anywhere
gets the same treatment, and ``tests/cli/test_help.py`` fails on one that lacks it.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator

__all__ = ["EXAMPLES", "complete_help", "walk"]

TIME = "an RFC 3339 time such as 2026-01-31T00:00:00Z"

#: help for an option that a command left without one, by option string
STANDARD: dict[str, str] = {
    "--json": "print JSON instead of text (the shapes are in README)",
    "--at": "judge as the ledger stood at this entry INDEX (0-based; default: the latest entry)",
    "--not-before": f"the grant is valid from this time ({TIME}; default: at once)",
    "--not-after": f"the grant is valid until this time ({TIME}; default: no end)",
    "--review-by": f"the grant goes stale after this time unless re-affirmed ({TIME}; default: never)",
    "--since": f"entries integrated at or after this time ({TIME})",
    "--until": f"entries integrated before this time ({TIME})",
    "--limit": "at most this many results, 1 to 1000",
    "--host": "the address to listen on",
    "--port": "the TCP port to listen on",
    "--allow": "predicate types the key may sign: URIs or globs such as 'https://slsa.dev/provenance/*' (one or more)",
    "--digest": "a subject digest, sha256:<64 hex>",
    "--name": "the name",
    "--signer": "a key id (64 hex) or a principal name",
    "--predicate-type": "a predicate type URI, or a glob such as 'https://slsa.dev/*'",
    "--old": "the older tree size M (0 to the latest size)",
    "--count": "how many distinct principals must sign (a whole number, 1 or more)",
    "--type": "the evidence format",
    "--scope": "what the token may do: submit (append records) or admin (key events, the admin pages)",
}

#: help for a positional argument left without one, by its dest
POSITIONAL: dict[str, str] = {
    "key_id": "the key id: 64 lowercase hex (SHA-256 of the key's DER SubjectPublicKeyInfo), as `keys list` shows it",
    "receipt": "a receipt JSON file, as `submit` and `receipt INDEX` print it",
    "index": "an entry index (0-based)",
    "name": "the name, as the matching `list` command shows it",
    "statement": "an in-toto Statement v1 JSON file",
    "envelope": "a DSSE envelope JSON file (as `sign` prints it) or a Sigstore bundle",
    "files": "envelope files (one envelope each) or .jsonl files (one envelope per line)",
}

#: one example per command, by its path below `provledger`
EXAMPLES: dict[str, str] = {
    "init": "PROVLEDGER_HOME=var/mine provledger init",
    "log-key": 'provledger verify-receipt receipt.json --log-key "$(provledger log-key)"',
    "keygen": 'provledger keygen --out "$PROVLEDGER_HOME/keys/ci.pem"',
    "tokens create": "provledger tokens create --name ci --scope submit",
    "tokens list": "provledger tokens list --json",
    "tokens revoke": "provledger tokens revoke ci",
    "sign": 'provledger sign --key "$PROVLEDGER_HOME/keys/ci.pem" examples/statement.json > envelope.json',
    "submit": "provledger submit envelope.json > receipt.json\n  provledger submit envelope.json --server http://127.0.0.1:8000 --token \"$PROVLEDGER_TOKEN\"",
    "import": "provledger import envelopes.jsonl --workers 2",
    "receipt": "provledger receipt 6 > receipt-6.json",
    "verify-receipt": 'provledger verify-receipt receipt.json --log-key "$(provledger log-key)"',
    "checkpoint": "provledger checkpoint > checkpoint.txt",
    "prove-consistency": "provledger prove-consistency --old 10 --new 20",
    "audit": "provledger audit --json\n  provledger audit --hashes\n  provledger audit --signatures\n  provledger audit --workers --wait 60",
    "serve": "provledger serve --host 127.0.0.1 --port 8000",
    "worker": "provledger worker --concurrency 2 --loglevel info\n  provledger worker --beat",
    "demo": "provledger demo --port 8080",
    "attest set-policy": "provledger attest set-policy policies/production.json",
    "attest add-collateral": "provledger attest add-collateral --collateral intel-collateral/\n  provledger attest add-collateral tcbInfo.json qeIdentity.json tcbInfoIssuerChain.pem",
    "attest verify": "provledger attest verify --type sev-snp report.bin --endorsement vcek.der --json",
    "witness keygen": "provledger witness keygen --name witness.example/w1 --out witness.key",
    "witness serve": "provledger witness serve --key witness.key --log-key \"$(provledger log-key)\" --port 8100",
    "keys add": "provledger keys add --name ci --public-key ci.pem.pub --allow 'https://slsa.dev/provenance/*' "
    "--subject 'myorg/*/*' --review-by 2027-06-30T00:00:00Z",
    "keys list": "provledger keys list --json",
    "keys show": "provledger keys show 3d718dc0743082967a18f23fe1a63d776c12b0858c76afee46ee042ad174deaa",
    "keys import-tee-roots": "provledger keys import-tee-roots --dir /etc/provledger/tee-trust",
    "keys add-tee-root": "provledger keys add-tee-root --name 'ACME TPM CA' --certificate tpm-ca.pem",
    "keys revoke": "provledger keys revoke <KEYID> --compromised-since 2026-11-01T00:00:00Z",
    "keys reaffirm": "provledger keys reaffirm <KEYID> --review-by 2027-12-31T00:00:00Z",
    "keys rotate": "provledger keys rotate <KEYID> --public-key new.pem.pub --allow 'https://slsa.dev/provenance/*'",
    "keys threshold": "provledger keys threshold --predicate-type https://provenance-ledger.dev/firmware-image/v1 --count 2",
    "identities add": "provledger identities add --name release --san 'https://github.com/myorg/app/.github/workflows/release.yml@*' "
    "--issuer https://token.actions.githubusercontent.com --allow 'https://slsa.dev/provenance/*'",
    "identities list": "provledger identities list --json",
    "chain": "provledger chain sha256:<64 hex> --json\n  provledger chain sha256:<64 hex> --at 120",
    "search": "provledger search appliance\n  provledger search --name 'acme/bios/*' --since 2026-01-01T00:00:00Z",
    "verify": "provledger verify dist/app.tar.gz --server https://ledger.example --log-key \"$LOG_VKEY\"\n"
    "  provledger verify sha256:<64 hex> --bundle verdict.json --log-key \"$LOG_VKEY\" --require-deployment",
}


def walk(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every parser below ``parser`` with its command path, the parent before its children."""
    yield path, parser
    for action in parser._actions:  # noqa: SLF001 - argparse keeps subparsers here
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            for name, sub in action.choices.items():
                yield from walk(sub, (*path, name))


def _is_leaf(parser: argparse.ArgumentParser) -> bool:
    return not any(isinstance(a, argparse._SubParsersAction) for a in parser._actions)  # noqa: SLF001


def _with_default(action: argparse.Action, text: str) -> str:
    default = action.default
    if default in (None, False, [], argparse.SUPPRESS) or action.required or "default" in text:
        return text
    return f"{text} (default: %(default)s)"


def complete_help(parser: argparse.ArgumentParser) -> None:
    """Fill in missing option help from :data:`STANDARD`, state defaults, add the examples."""
    for path, sub in walk(parser):
        for action in sub._actions:  # noqa: SLF001
            if isinstance(action, argparse._HelpAction | argparse._VersionAction | argparse._SubParsersAction):  # noqa: SLF001
                continue
            text = action.help or ""
            if not text:
                if action.option_strings:
                    text = next((STANDARD[o] for o in action.option_strings if o in STANDARD), "")
                else:
                    text = POSITIONAL.get(action.dest, "")
            if text:
                action.help = _with_default(action, text)
        if path and _is_leaf(sub):
            example = EXAMPLES.get(" ".join(path))
            if example and "example" not in (sub.epilog or ""):
                sub.epilog = ((sub.epilog + "\n\n") if sub.epilog else "") + "example:\n  " + example
                sub.formatter_class = argparse.RawDescriptionHelpFormatter
