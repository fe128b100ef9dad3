"""The appraisal policy document: JSON, versioned, one per deployment environment.

Schema: ``schemas/appraisal-policy.v1.json`` (Draft 2020-12, shown in README.md). Parsing is
strict: at most :data:`MAX_POLICY_BYTES`, UTF-8, no duplicate member names, no unknown member at
any level, every value of its exact type and range. Each TEE section (``sev-snp``, ``tdx``,
``tpm``, ``nitro``) becomes a :class:`~ledger.attestation.appraisal.Policy`; an absent section
or field keeps the built-in default, which is today's behaviour (VMPL 0 only, no debug, no
migration agent; a TDX TCB status, when collateral is given, must be UpToDate).

A document names the environment it applies to (``"default"`` when absent: the fallback for
environments without a policy of their own). The admin records documents in the log (an
``appraisal-policy`` key event), so that a deployment's verdict is a function of the log.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from functools import cache
from importlib import resources
from typing import Any

import rfc8785

from ledger.attestation.appraisal import Policy
from ledger.untrusted.json import parse_json
from ledger.untrusted.schema import schema_message
from ledger.errors import MalformedError

__all__ = [
    "DEFAULT_ENVIRONMENT",
    "MAX_POLICY_BYTES",
    "PolicyDocument",
    "default_document",
    "parse_policy_document",
    "policy_schema",
]

DEFAULT_ENVIRONMENT = "default"
MAX_POLICY_BYTES = 64 * 1024
VERSION = 1
_SNP_COMPONENTS = {"bootloader": "bl", "tee": "tee", "snp": "snp", "microcode": "ucode", "fmc": "fmc"}
_KINDS = ("sev-snp", "tdx", "tpm", "nitro")


@cache
def policy_schema() -> dict[str, Any]:
    """The JSON Schema of the document (the file shipped in the package)."""
    text = resources.files("ledger.attestation").joinpath("schemas", "appraisal-policy.v1.json").read_text("utf-8")
    return json.loads(text)


@cache
def _validator() -> Any:
    import jsonschema  # noqa: PLC0415 - only policy documents need it

    schema = policy_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            msg = f"policy document: the member {key!r} appears twice"
            raise MalformedError(msg)
        out[key] = value
    return out


#: no list in the schema may hold more (its largest ``maxItems``); checked before the schema,
#: whose ``uniqueItems`` compares every pair of a list's items
MAX_LIST_ITEMS = 256


def _plain_values(value: Any, where: str = "the document") -> None:
    """JSON Schema counts 1.0 as an integer; a policy's numbers are exact integers only. Lists
    longer than any the schema allows are refused here, before the schema's quadratic checks."""
    if isinstance(value, float):
        msg = f"policy document: {where} is {value!r}, and numbers in a policy must be integers"
        raise MalformedError(msg)
    if isinstance(value, dict):
        for key, item in value.items():
            _plain_values(item, key if where == "the document" else f"{where}.{key}")
    elif isinstance(value, list):
        if len(value) > MAX_LIST_ITEMS:
            msg = f"policy document: {where} has {len(value)} items, more than any list of a policy may hold ({MAX_LIST_ITEMS})"
            raise MalformedError(msg)
        for n, item in enumerate(value):
            _plain_values(item, f"{where}[{n}]")


def _where(error: Any) -> str:
    parts = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
    return parts.lstrip(".") or "the document"


@dataclass(frozen=True)
class PolicyDocument:
    """A parsed policy document; ``document`` is the JSON it was parsed from (for recording)."""

    environment: str
    sections: Mapping[str, Policy] = field(default_factory=dict)
    document: Mapping[str, Any] = field(default_factory=lambda: {"version": VERSION})

    def policy_for(self, kind: str, *, expected_report_data: bytes | None = None) -> Policy:
        """The :class:`Policy` for one evidence type, with the caller's expected report data."""
        base = self.sections.get(kind, Policy())
        return replace(base, expected_report_data=expected_report_data)

    def canonical(self) -> bytes:
        """RFC 8785 bytes of the document (what the log records and its digest covers)."""
        return rfc8785.dumps(dict(self.document))

    def checks(self) -> list[str]:
        """One line per rule, for ``attest verify`` and the UI."""
        lines = []
        for kind in _KINDS:
            if kind in self.document:
                rules = ", ".join(f"{k}={json.dumps(v)}" for k, v in sorted(self.document[kind].items()))
                lines.append(f"{kind}: {rules or 'defaults'}")
        return lines


def default_document(environment: str = DEFAULT_ENVIRONMENT) -> PolicyDocument:
    """The built-in policy (today's behaviour) for ``environment``."""
    return PolicyDocument(environment, {}, {"version": VERSION, "environment": environment})


def _snp(section: Mapping[str, Any]) -> Policy:
    min_tcb = section.get("min_tcb")
    measurements = section.get("measurements")
    return Policy(
        allow_debug=section.get("allow_debug", False),
        allow_migration_agent=section.get("allow_migration_agent", False),
        allowed_vmpl=frozenset(section.get("allowed_vmpls", [0])),
        min_snp_tcb=None if min_tcb is None else {_SNP_COMPONENTS[k]: v for k, v in min_tcb.items()},
        min_guest_svn=section.get("min_guest_svn"),
        require_report_data=section.get("require_report_data", False),
        expected_measurements=None if measurements is None else frozenset(bytes.fromhex(m) for m in measurements),
    )


def _tdx(section: Mapping[str, Any]) -> Policy:
    svn = section.get("min_tee_tcb_svn")
    measurements = section.get("measurements")
    return Policy(
        allow_debug=section.get("allow_debug", False),
        tdx_allowed_tcb_statuses=frozenset(section.get("allowed_tcb_statuses", ["UpToDate"])),
        tdx_require_tcb_status=section.get("require_tcb_status", False),
        min_tdx_tee_tcb_svn=None if svn is None else bytes.fromhex(svn),
        require_report_data=section.get("require_report_data", False),
        expected_measurements=None if measurements is None else frozenset(bytes.fromhex(m) for m in measurements),
    )


def _tpm(section: Mapping[str, Any]) -> Policy:
    return Policy(require_report_data=section.get("require_report_data", False))


def _nitro(section: Mapping[str, Any]) -> Policy:
    age = section.get("max_evidence_age_seconds")
    return Policy(
        allow_debug=section.get("allow_debug", False),
        max_evidence_age=None if age is None else timedelta(seconds=age),
        require_report_data=section.get("require_report_data", False),
    )


_BUILDERS = {"sev-snp": _snp, "tdx": _tdx, "tpm": _tpm, "nitro": _nitro}


def parse_policy_document(data: bytes | str | Mapping[str, Any]) -> PolicyDocument:
    """Parse and validate a policy document (bytes or text of JSON, or an already-decoded object).

    Raises:
        MalformedError: too large, not UTF-8 JSON, a duplicate member, or anything the schema
            refuses (the message names the first offending field).
    """
    if isinstance(data, Mapping):
        try:
            doc: Any = json.loads(json.dumps(data), object_pairs_hook=_no_duplicates)
        except (TypeError, ValueError, RecursionError) as exc:
            msg = "policy document is not a JSON object of JSON values"
            raise MalformedError(msg) from exc
    else:
        try:
            raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
        except UnicodeEncodeError as exc:  # a lone surrogate: not Unicode text
            msg = "policy document is not valid Unicode text"
            raise MalformedError(msg) from exc
        if len(raw) > MAX_POLICY_BYTES:
            msg = f"policy document is larger than {MAX_POLICY_BYTES} bytes"
            raise MalformedError(msg)
        try:
            doc = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
        except UnicodeDecodeError as exc:
            msg = "policy document is not UTF-8"
            raise MalformedError(msg) from exc
        except ValueError as exc:
            msg = f"policy document is not valid JSON: {exc}"
            raise MalformedError(msg) from exc
        except RecursionError:
            msg = "policy document nests arrays and objects too deep"
            raise MalformedError(msg) from None
        # and what only the one strict loader for untrusted bytes refuses: lone surrogates, depth,
        # number size (each named)
        parse_json(raw, what="the policy document")
    if not isinstance(doc, dict):
        msg = "policy document must be a JSON object"
        raise MalformedError(msg)
    _plain_values(doc)
    errors = sorted(_validator().iter_errors(doc), key=lambda e: (list(map(str, e.absolute_path)), str(e.validator)))
    if errors:
        first = errors[0]
        msg = f"policy document does not match its schema (version 1): at {_where(first)}: {schema_message(first)}"
        raise MalformedError(msg)
    sections = {kind: _BUILDERS[kind](doc[kind]) for kind in _KINDS if kind in doc}
    return PolicyDocument(doc.get("environment", DEFAULT_ENVIRONMENT), sections, doc)
