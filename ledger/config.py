"""Configuration from the environment (see ../shared/GUIDE.md, Contracts: Configuration)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from ledger.errors import ConfigurationError
from ledger.tlog.note.encoding import is_valid_key_name

__all__ = ["DEFAULT_ORIGIN", "MAX_PROCESSES", "MAX_THREADS", "Settings", "check_database_url", "create_private_file", "env_int"]

#: the most processes a command may start (serve's workers, import's and audit's pools), and the
#: most threads ``serve`` gives each: more than any machine's cores, few enough to start without
#: running out of descriptors or threads
MAX_PROCESSES = 256
MAX_THREADS = 1024

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
        origin = env.get("PROVLEDGER_ORIGIN") or DEFAULT_ORIGIN
        check_database_url(url)
        redis_url = env.get("PROVLEDGER_REDIS_URL") or None
        if redis_url is not None and redis_url.partition("://")[0].lower() not in ("redis", "rediss", "unix"):
            raise ConfigurationError(
                "PROVLEDGER_REDIS_URL must be a Redis URL: redis://HOST:PORT/DB, rediss://… (TLS) or unix:///PATH"
            )
        if not is_valid_key_name(origin):
            raise ConfigurationError(
                f"PROVLEDGER_ORIGIN {origin[:100]!r} is not a log origin: it must be non-empty, with no space, "
                "no '+' and no control character (e.g. example.com/provenance-ledger)"
            )
        return cls(home=home, database_url=url, redis_url=redis_url, origin=origin)

    @property
    def log_key_path(self) -> Path:
        return self.home / "log.key"


def env_int(name: str, default: int, low: int, high: int, environ: Mapping[str, str] | None = None) -> int:
    """A whole number from the environment (``default`` when unset or empty): ASCII digits from
    ``low`` to ``high``, else a ConfigurationError naming the variable and the range."""
    raw = (os.environ if environ is None else environ).get(name, "").strip()
    if not raw:
        return default
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 19 or not low <= int(raw) <= high:
        raise ConfigurationError(f"{name} must be a whole number from {low} to {high}, not {raw[:40]!r}")
    return int(raw)


#: the databases the ledger runs on, and the driver of each
_BACKENDS = {"sqlite": "pysqlite", "postgresql": "psycopg"}


def check_database_url(url: str) -> None:
    """Refuse, naming what works, a PROVLEDGER_DATABASE_URL that is no URL of a database the
    ledger runs on (SQLite, or PostgreSQL through psycopg)."""
    hint = "sqlite:///PATH or postgresql+psycopg://USER@HOST:PORT/DATABASE"
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:
        raise ConfigurationError(f"PROVLEDGER_DATABASE_URL is not a database URL ({exc}); give {hint}") from None
    backend = parsed.get_backend_name()
    if backend not in _BACKENDS or parsed.get_driver_name() != _BACKENDS[backend]:
        raise ConfigurationError(
            f"PROVLEDGER_DATABASE_URL names {parsed.drivername!r}; the ledger runs on SQLite and on PostgreSQL "
            f"through psycopg: give {hint}"
        )


def create_private_file(path: Path, data: bytes) -> bool:
    """Create ``path`` holding ``data``, owner-only (0600), unless it exists: True when this call
    created it, False when it was already there (it is never overwritten).

    The bytes go to a temporary file beside it, are flushed to disk, and the file is then linked
    into place (a link never replaces). So a process that reads ``path`` at the same moment —
    another ``serve`` worker starting, a second ``init`` — finds no file or the whole file, never
    a partial one.
    """
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # mode 0600
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(temporary, path)
        except FileExistsError:
            return False
        except OSError:  # a file system without hard links: create it in place (not atomic)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                return False
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        return True
    finally:
        os.unlink(temporary)
