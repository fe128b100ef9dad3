"""Configuration from the environment is refused, naming what works, before anything uses it: a
database URL of a database or driver the ledger does not run on, an origin that is no log
origin, a Redis URL that is no Redis URL, a home that cannot be a folder. Each used to surface
later as a traceback (sqlalchemy's ArgumentError, a ModuleNotFoundError for MySQLdb or psycopg2,
a ValueError from the note signer, Celery's KeyError for an unknown transport, FileNotFoundError)."""

from __future__ import annotations

import pytest

from ledger.cli.main import main
from ledger.config import DEFAULT_ORIGIN, Settings
from ledger.errors import ConfigurationError
from ledger.services.setup import make_private_home


@pytest.mark.parametrize(
    "url",
    ["sqlite:///var/ledger.db", "sqlite://", "sqlite+pysqlite:///x.db", "postgresql://u@127.0.0.1:5432/d",
     "postgresql+psycopg://u:p@db.example/ledger"],
)
def test_database_urls_the_ledger_runs_on_are_taken(url, tmp_path):
    assert Settings.from_env({"PROVLEDGER_HOME": str(tmp_path), "PROVLEDGER_DATABASE_URL": url}).database_url == url


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("notaurl", "is not a database URL"),
        ("mysql://root@127.0.0.1/ledger", "names 'mysql'"),
        ("postgresql+psycopg2://u@h/d", "names 'postgresql+psycopg2'"),
        ("postgresql+asyncpg://u@h/d", "names 'postgresql+asyncpg'"),
        ("oracle://u:secret@h/d", "names 'oracle'"),
        ("nosuchdb://x", "names 'nosuchdb'"),
    ],
)
def test_other_database_urls_are_refused_naming_what_works(url, says, tmp_path):
    with pytest.raises(ConfigurationError) as refused:
        Settings.from_env({"PROVLEDGER_HOME": str(tmp_path), "PROVLEDGER_DATABASE_URL": url})
    message = str(refused.value)
    assert says in message and "sqlite:///PATH" in message and "postgresql+psycopg://" in message
    assert "secret" not in message  # a password in the URL is never echoed


@pytest.mark.parametrize("origin", ["a b", "a+b", "tab\there", "bell\x07", " "])
def test_an_origin_that_is_no_log_origin_is_refused(origin, tmp_path):
    with pytest.raises(ConfigurationError, match="PROVLEDGER_ORIGIN"):
        Settings.from_env({"PROVLEDGER_HOME": str(tmp_path), "PROVLEDGER_ORIGIN": origin})


def test_origins_default_and_taken(tmp_path):
    assert Settings.from_env({"PROVLEDGER_HOME": str(tmp_path), "PROVLEDGER_ORIGIN": ""}).origin == DEFAULT_ORIGIN
    assert Settings.from_env({"PROVLEDGER_HOME": str(tmp_path), "PROVLEDGER_ORIGIN": "ex.com/log"}).origin == "ex.com/log"


@pytest.mark.parametrize("url", ["redis://127.0.0.1:6379/0", "rediss://cache.example:6380/1", "unix:///run/redis.sock", "REDIS://h"])
def test_redis_urls_are_taken(url, tmp_path):
    assert Settings.from_env({"PROVLEDGER_HOME": str(tmp_path), "PROVLEDGER_REDIS_URL": url}).redis_url == url


@pytest.mark.parametrize("url", ["notredis", "http://127.0.0.1:6379", "amqp://guest@localhost//", "127.0.0.1:6379"])
def test_other_redis_urls_are_refused(url, tmp_path):
    with pytest.raises(ConfigurationError, match="PROVLEDGER_REDIS_URL must be a Redis URL"):
        Settings.from_env({"PROVLEDGER_HOME": str(tmp_path), "PROVLEDGER_REDIS_URL": url})


def test_a_home_that_cannot_be_a_folder_is_refused(tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(ConfigurationError, match="is not a folder"):
        make_private_home(a_file)
    with pytest.raises(ConfigurationError, match=r"cannot create PROVLEDGER_HOME .*file/home"):
        make_private_home(a_file / "home")


@pytest.mark.parametrize(
    ("name", "value"),
    [("PROVLEDGER_DATABASE_URL", "mysql://root@127.0.0.1/ledger"), ("PROVLEDGER_ORIGIN", "my log"),
     ("PROVLEDGER_REDIS_URL", "http://x")],
)
def test_provledger_init_says_so_in_one_line(name, value, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PROVLEDGER_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("PROVLEDGER_DATABASE_URL", raising=False)
    monkeypatch.setenv(name, value)
    assert main(["init"]) == ConfigurationError.exit_code
    err = capsys.readouterr().err
    assert err.startswith(f"provledger: {name}") and err.count("\n") == 1, err
    assert not (tmp_path / "home").exists()  # refused before anything was created


@pytest.mark.parametrize("raw", ["lots", "-1", "1e6", "١٠", "9" * 16])
def test_a_startup_audit_limit_that_is_no_count_is_refused(raw, monkeypatch):
    from ledger.services.integrity import full_check_limit  # noqa: PLC0415

    monkeypatch.setenv("PROVLEDGER_STARTUP_FULL_AUDIT_LIMIT", raw)
    with pytest.raises(ConfigurationError, match="PROVLEDGER_STARTUP_FULL_AUDIT_LIMIT must be a whole number"):
        full_check_limit()


def test_startup_audit_limit_default_and_taken(monkeypatch):
    from ledger.services.integrity import FULL_CHECK_LIMIT, full_check_limit  # noqa: PLC0415

    monkeypatch.delenv("PROVLEDGER_STARTUP_FULL_AUDIT_LIMIT", raising=False)
    assert full_check_limit() == FULL_CHECK_LIMIT
    monkeypatch.setenv("PROVLEDGER_STARTUP_FULL_AUDIT_LIMIT", "0")
    assert full_check_limit() == 0


@pytest.mark.parametrize("raw", ["0", "61", "x", "١", "-5", "9" * 40, "1.5"])
def test_one_reader_for_numbers_in_the_environment(raw):
    """ledger.config.env_int: serve's read timeout and connection limit, the start-up audit limit,
    the admin session lifetime and the Celery visibility timeout all read their numbers with it."""
    from ledger.config import env_int  # noqa: PLC0415

    env = {"PROVLEDGER_X": raw}
    if raw == "61":
        assert env_int("PROVLEDGER_X", 7, 1, 100, env) == 61
        return
    with pytest.raises(ConfigurationError, match=r"PROVLEDGER_X must be a whole number from 1 to 60, not '"):
        env_int("PROVLEDGER_X", 7, 1, 60, env)


def test_env_int_default_when_unset_or_blank():
    from ledger.config import env_int  # noqa: PLC0415

    assert env_int("PROVLEDGER_X", 7, 1, 60, {}) == 7
    assert env_int("PROVLEDGER_X", 7, 1, 60, {"PROVLEDGER_X": "  "}) == 7


def test_celery_visibility_timeout_takes_ascii_digits_only():
    from workers.app import _visibility_timeout  # noqa: PLC0415

    assert _visibility_timeout({"PROVLEDGER_CELERY_VISIBILITY_TIMEOUT": "4"}) == 4
    with pytest.raises(ConfigurationError, match="PROVLEDGER_CELERY_VISIBILITY_TIMEOUT"):
        _visibility_timeout({"PROVLEDGER_CELERY_VISIBILITY_TIMEOUT": "١"})  # was read as 1
