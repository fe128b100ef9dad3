"""The one error tree of the ledger.

Every failure the ledger reports is one of these. The web layer maps them to HTTP statuses and
the command line to exit codes (see ../shared/GUIDE.md):

=====================  ==========  =========
error                  HTTP        exit code
=====================  ==========  =========
MalformedError         400         2
TooLargeError          413         2
VerificationError      422         1
NotTrustedError        403         1
IntegrityError         500 / 503   1
NotFoundError          404         2
ConflictError          409         1
ConfigurationError     500         3
UnavailableError       503         3
=====================  ==========  =========

Library exceptions are wrapped at the boundary (``raise MalformedError(...) from exc``): a
verifier never leaks ``KeyError``, ``IndexError``, ``binascii.Error`` or a ``nacl`` exception.
"""

from __future__ import annotations

__all__ = [
    "MAX_DIAGNOSTIC_CHARS",
    "ConfigurationError",
    "ConflictError",
    "ConsistencyError",
    "IntegrityError",
    "LedgerError",
    "MalformedError",
    "NotFoundError",
    "NotTrustedError",
    "RootMismatchError",
    "SignatureError",
    "TooLargeError",
    "UnavailableError",
    "VerificationError",
    "shorten",
]


class LedgerError(Exception):
    """Base of every error the ledger raises on purpose."""

    #: snake_case word used as the HTTP error ``code``
    code = "error"
    http_status = 500
    exit_code = 1

    def diagnostics(self) -> str:
        """One clear sentence for a person (CLI stderr, UI, JSON ``message``), at most
        ``MAX_DIAGNOSTIC_CHARS``: a message that quotes an untrusted value (a 3 MB payloadType,
        say) is cut there rather than sent back whole."""
        return shorten(str(self))


#: the most of an error's message a person is shown (CLI, UI, the API's JSON ``message``)
MAX_DIAGNOSTIC_CHARS = 2000


def shorten(text: str, limit: int = MAX_DIAGNOSTIC_CHARS) -> str:
    """``text``, or its first ``limit`` characters and how long it was."""
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text):,} characters in all)"


class MalformedError(LedgerError):
    """Untrusted bytes that do not parse, or are not in the one accepted encoding."""

    code = "malformed"
    http_status = 400
    exit_code = 2


class TooLargeError(MalformedError):
    """Input over a named size limit; the message names the limit."""

    code = "too_large"
    http_status = 413


class VerificationError(LedgerError):
    """Well-formed input that does not verify (a signature, a proof, evidence)."""

    code = "verification_failed"
    http_status = 422
    exit_code = 1


class SignatureError(VerificationError):
    """A signature that does not verify, or no known key that verifies."""


class RootMismatchError(VerificationError):
    """A proof that leads to a root other than the one expected."""

    def __init__(self, message: str, *, expected: bytes = b"", calculated: bytes = b"") -> None:
        super().__init__(message)
        self.expected = expected
        self.calculated = calculated


class ConsistencyError(VerificationError):
    """Two views of the log that cannot both be true (a fork or a rollback)."""


class NotTrustedError(VerificationError):
    """A record that verifies but is not trusted: unknown key, outside its grant, revoked."""

    code = "not_trusted"
    http_status = 403


class IntegrityError(LedgerError):
    """The store disagrees with itself or with its own signed checkpoints."""

    code = "integrity_failure"
    http_status = 503
    exit_code = 1

    def __init__(self, message: str, *, first_bad_index: int | None = None) -> None:
        super().__init__(message)
        self.first_bad_index = first_bad_index


class NotFoundError(LedgerError):
    """A thing asked for by index or id that does not exist."""

    code = "not_found"
    http_status = 404
    exit_code = 2


class ConflictError(LedgerError):
    """A request that contradicts the current state."""

    code = "conflict"
    http_status = 409
    exit_code = 1


class ConfigurationError(LedgerError):
    """The ledger cannot start: missing key, store not initialised, bad settings."""

    code = "configuration_error"
    http_status = 500
    exit_code = 3


class UnavailableError(LedgerError):
    """A service the request needs cannot be reached (database, Redis) or writes are stopped."""

    code = "unavailable"
    http_status = 503
    exit_code = 3
