"""Configuration from the environment (see ../shared/GUIDE.md, Contracts: Configuration)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DEFAULT_ORIGIN", "Settings"]

#: C2SP origin: a schema-less URL-like name. Deployments set PROVLEDGER_ORIGIN to their own.
DEFAULT_ORIGIN = "localhost/provenance-ledger"


@dataclass(frozen=True)
class Settings:
    home: Path
    database_url: str
    redis_url: str | None
    origin: str

    @classmethod
    def from_env(cls, environ: os._Environ[str] | dict[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        home = Path(env.get("PROVLEDGER_HOME") or "./var").expanduser()
        url = env.get("PROVLEDGER_DATABASE_URL") or f"sqlite:///{(home / 'ledger.db').resolve()}"
        return cls(
            home=home,
            database_url=url,
            redis_url=env.get("PROVLEDGER_REDIS_URL") or None,
            origin=env.get("PROVLEDGER_ORIGIN") or DEFAULT_ORIGIN,
        )

    @property
    def log_key_path(self) -> Path:
        return self.home / "log.key"
