"""in-toto Statements (v1, and v0.1 which real data still carries) inside DSSE payloads."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from ledger.errors import MalformedError

__all__ = [
    "IN_TOTO_PAYLOAD_TYPE",
    "STATEMENT_TYPES",
    "Statement",
    "Subject",
    "parse_statement",
]

IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_V1 = "https://in-toto.io/Statement/v1"
STATEMENT_V01 = "https://in-toto.io/Statement/v0.1"
STATEMENT_TYPES = (STATEMENT_V1, STATEMENT_V01)
MAX_SUBJECTS = 1024

_HEX = re.compile(r"^[0-9a-fA-F]+$")
#: digest algorithms whose values are hex (gitCommit is hex too); others are kept as given
_HEX_ALGORITHMS = {"sha256": 64, "sha384": 96, "sha512": 128, "sha1": 40, "gitCommit": None}


@dataclass(frozen=True)
class Subject:
    name: str
    digest: dict[str, str]

    def digests(self) -> list[tuple[str, str]]:
        """(algorithm, lowercase value) pairs."""
        return [(alg, value.lower()) for alg, value in sorted(self.digest.items())]


@dataclass(frozen=True)
class Statement:
    type: str
    subjects: tuple[Subject, ...]
    predicate_type: str
    predicate: Any


def parse_statement(payload: bytes) -> Statement:
    """Parse and check an in-toto Statement. Subjects must carry digests (matched by digest)."""
    try:
        doc = json.loads(payload)
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedError(f"statement is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise MalformedError("statement must be a JSON object")
    stype = doc.get("_type")
    if stype not in STATEMENT_TYPES:
        raise MalformedError(f"statement _type must be one of {', '.join(STATEMENT_TYPES)}, got {stype!r}")
    predicate_type = doc.get("predicateType")
    if not isinstance(predicate_type, str) or not predicate_type:
        raise MalformedError("statement predicateType must be a non-empty string")
    raw_subjects = doc.get("subject")
    if not isinstance(raw_subjects, list) or not raw_subjects:
        raise MalformedError("statement subject must be a non-empty list")
    if len(raw_subjects) > MAX_SUBJECTS:
        raise MalformedError(f"statement has {len(raw_subjects)} subjects, more than {MAX_SUBJECTS}")
    subjects = []
    for i, s in enumerate(raw_subjects):
        if not isinstance(s, dict):
            raise MalformedError(f"statement subject {i} must be an object")
        name = s.get("name", "")
        if not isinstance(name, str):
            raise MalformedError(f"statement subject {i} name must be a string")
        digest = s.get("digest")
        if not isinstance(digest, dict) or not digest:
            raise MalformedError(f"statement subject {i} must have a non-empty digest object")
        for alg, value in digest.items():
            if not isinstance(value, str) or not value:
                raise MalformedError(f"statement subject {i} digest {alg!r} must be a non-empty string")
            if alg in _HEX_ALGORITHMS:
                size = _HEX_ALGORITHMS[alg]
                if not _HEX.match(value) or (size is not None and len(value) != size):
                    raise MalformedError(f"statement subject {i} digest {alg} is not {size or ''} hex".replace("  ", " "))
        subjects.append(Subject(name=name, digest=dict(digest)))
    if "predicate" in doc and not isinstance(doc["predicate"], dict | list | type(None)):
        raise MalformedError("statement predicate must be a JSON object")
    return Statement(type=stype, subjects=tuple(subjects), predicate_type=predicate_type, predicate=doc.get("predicate"))
