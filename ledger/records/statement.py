"""in-toto Statements (v1, and v0.1 which real data still carries) inside DSSE payloads."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from ledger.errors import MalformedError, shorten
from ledger.untrusted.json import parse_json
from ledger.untrusted.text import UNSEEN

__all__ = [
    "IN_TOTO_PAYLOAD_TYPE",
    "STATEMENT_TYPES",
    "Statement",
    "MAX_PREDICATE_TYPE_CHARS",
    "MAX_SUBJECT_NAME_CHARS",
    "Subject",
    "check_plain_text",
    "check_subject_name",
    "parse_statement",
]

IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_V1 = "https://in-toto.io/Statement/v1"
STATEMENT_V01 = "https://in-toto.io/Statement/v0.1"
STATEMENT_TYPES = (STATEMENT_V1, STATEMENT_V01)
MAX_SUBJECTS = 1024

#: lowercase hex only (in-toto DigestSet values are lowercase hex); ``fullmatch``, never ``$``
_HEX = re.compile(r"[0-9a-f]+")
#: a subject name is at most this many characters
MAX_SUBJECT_NAME_CHARS = 1024
#: a predicate type is at most this many characters (the store's column)
MAX_PREDICATE_TYPE_CHARS = 512
#: a digest algorithm name, and a digest value of an algorithm the ledger does not know as hex
_ALGORITHM = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,31}")
_DIGEST_VALUE = re.compile(r"[\x21-\x7e]{1,256}")
#: control characters (C0, DEL, C1), Unicode format characters such as bidi overrides and
#: zero-width marks, line/paragraph separators and surrogates: never part of a name
_NAME_FORBIDDEN = UNSEEN
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
    #: the whole statement as decoded (strictly), for those that keep it
    document: Any = field(default=None, compare=False, repr=False)

    def check_names(self) -> None:
        """Every subject name follows the grammar (``check_subject_name``): records judged by
        grants. Key events are not (their one subject is fixed by ``parse_key_event``)."""
        for i, s in enumerate(self.subjects):
            check_subject_name(s.name, where=f"statement subject {i} name")


def check_plain_text(value: str, *, where: str) -> None:
    """Text the ledger shows people (a key event's principal or reason) holds no control or
    invisible format character: none could rewrite a terminal line or reorder what a reader sees.
    Checked where such text enters the ledger (its parsers stay lenient with what is stored)."""
    bad = _NAME_FORBIDDEN.search(value)
    if bad is not None:
        raise MalformedError(f"{where} holds the control or format character U+{ord(bad.group()):04X} (it may hold none)")


def check_subject_name(name: str, *, where: str = "subject name") -> None:
    """The subject-name grammar the ledger judges grants by (README, "Subject names").

    A name is 1 to ``MAX_SUBJECT_NAME_CHARS`` characters of ``/``-separated segments; no segment
    is empty (so no leading, trailing or doubled ``/``), ``.`` or ``..``; no character is a
    control or invisible format character (NUL, newline, DEL, C1, bidi overrides, zero-width).
    Grants match names segment by segment, so a name that could be read as another path
    (``myorg/../otherorg``) is refused rather than normalised.
    """
    if not name:
        raise MalformedError(f"{where} is empty (a subject name is 1 to {MAX_SUBJECT_NAME_CHARS} characters)")
    if len(name) > MAX_SUBJECT_NAME_CHARS:
        raise MalformedError(f"{where} is {len(name)} characters, over the limit of {MAX_SUBJECT_NAME_CHARS}")
    bad = _NAME_FORBIDDEN.search(name)
    if bad is not None:
        raise MalformedError(
            f"{where} holds the control or format character U+{ord(bad.group()):04X} (names may hold none)"
        )
    for segment in name.split("/"):
        if segment in ("", ".", ".."):
            shown = "an empty segment (a leading, trailing or doubled '/')" if not segment else f"a {segment!r} segment"
            raise MalformedError(f"{where} {json.dumps(name)} has {shown}; segments may not be empty, '.' or '..'")


def parse_statement(payload: bytes) -> Statement:
    """Parse and check an in-toto Statement. Subjects must carry digests (matched by digest)."""
    doc = parse_json(payload, what="statement")
    if not isinstance(doc, dict):
        raise MalformedError("statement must be a JSON object")
    stype = doc.get("_type")
    if stype not in STATEMENT_TYPES:
        raise MalformedError(f"statement _type must be one of {', '.join(STATEMENT_TYPES)}, got {shorten(repr(stype), 100)}")
    predicate_type = doc.get("predicateType")
    if not isinstance(predicate_type, str) or not predicate_type:
        raise MalformedError("statement predicateType must be a non-empty string")
    if len(predicate_type) > MAX_PREDICATE_TYPE_CHARS or _NAME_FORBIDDEN.search(predicate_type):
        raise MalformedError(
            f"statement predicateType must be at most {MAX_PREDICATE_TYPE_CHARS} characters, none of them control characters"
        )
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
            if not _ALGORITHM.fullmatch(alg):
                raise MalformedError(
                    f"statement subject {i} digest algorithm {json.dumps(alg[:40])} is not 1 to 32 letters, digits, '_', '-', '.' or '+'"
                )
            if not isinstance(value, str) or not value:
                raise MalformedError(f"statement subject {i} digest {alg!r} must be a non-empty string")
            if alg not in _HEX_ALGORITHMS and not _DIGEST_VALUE.fullmatch(value):
                raise MalformedError(f"statement subject {i} digest {alg} must be 1 to 256 printable ASCII characters")
            if alg in _HEX_ALGORITHMS:
                size = _HEX_ALGORITHMS[alg]
                if not _HEX.fullmatch(value) or (size is not None and len(value) != size):
                    raise MalformedError(
                        f"statement subject {i} digest {alg} is not {size or ''} lowercase hex digits".replace("  ", " ")
                    )
        subjects.append(Subject(name=name, digest=dict(digest)))
    if "predicate" in doc and not isinstance(doc["predicate"], dict | list | type(None)):
        raise MalformedError("statement predicate must be a JSON object")
    return Statement(type=stype, subjects=tuple(subjects), predicate_type=predicate_type, predicate=doc.get("predicate"), document=doc)
