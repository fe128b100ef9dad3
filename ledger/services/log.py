"""The log's identity: its origin and Ed25519 note key (``log.key`` in PROVLEDGER_HOME, mode 0600)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ledger.config import Settings, create_private_file
from ledger.errors import ConfigurationError, LedgerError
from ledger.tlog.note import Ed25519NoteSigner, Verifier, generate_signer, parse_skey

__all__ = ["LogIdentity", "create_log_key", "load_log_identity"]


@dataclass(frozen=True)
class LogIdentity:
    origin: str
    signer: Ed25519NoteSigner

    @property
    def vkey(self) -> str:
        return self.signer.vkey

    @property
    def verifier(self) -> Verifier:
        return self.signer.verifier()


def create_log_key(path: Path, origin: str) -> Ed25519NoteSigner:
    """Write a new log key (Go ``PRIVATE+KEY+…`` signer key) with mode 0600; never overwrite."""
    signer = generate_signer(origin)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not create_private_file(path, (signer.skey + "\n").encode("ascii")):
        raise FileExistsError(f"{path} exists: a log key is never overwritten")
    return signer


def load_log_identity(settings: Settings) -> LogIdentity:
    path = settings.log_key_path
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        raise ConfigurationError(f"the log key {path} does not exist: run `provledger init`") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"the log key {path} cannot be read: {exc}") from exc
    try:
        signer = parse_skey(text)
    except LedgerError as exc:
        raise ConfigurationError(f"the log key {path} is not a valid signer key") from exc
    if signer.name != settings.origin:
        raise ConfigurationError(
            f"the log key {path} is for origin {signer.name!r}, but PROVLEDGER_ORIGIN is {settings.origin!r}"
        )
    return LogIdentity(origin=settings.origin, signer=signer)
