"""``provledger init`` run by several processes at once (every instance of a deployment at its
start, say): one creates the keys, the schema and the first rows; the others wait for it and
find them there. Each of them succeeds and names the same log. Before the init lock, two
Alembic runs on one fresh PostgreSQL database both tried CREATE TABLE and all but one failed,
and two inits on one fresh home raced to create the log key and one died with a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from ledger.config import DEFAULT_ORIGIN, Settings
from ledger.db import migrate
from ledger.db.engine import make_engine
from ledger.services import setup
from ledger.services.log import load_log_identity
from tests.fixtures import REPO, _pg_url, require_postgres

PROCESSES = 6


def _env(home: Path, url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROVLEDGER_")}
    env.update(PROVLEDGER_HOME=str(home), PYTHONPATH=str(REPO))
    if url is not None:
        env["PROVLEDGER_DATABASE_URL"] = url
    return env


def _init(home: Path, url: str | None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "ledger.cli.main", "init"], env=_env(home, url),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


@pytest.fixture(params=["sqlite", "postgres"])
def empty_database(request, tmp_path, postgres_databases):
    """(home, database URL or None for the home's SQLite file) of a store nobody initialised."""
    home = tmp_path / "home"
    if request.param == "sqlite":
        yield home, None
        return
    dbs = require_postgres(postgres_databases)
    name = f"provledger_init_{os.getpid()}_{time.monotonic_ns()}"
    with dbs.admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))  # empty: not the migrated template
    try:
        yield home, _pg_url(name)
    finally:
        dbs.drop(name)


def _settings(home: Path, url: str | None) -> Settings:
    return Settings(home=home, database_url=url or f"sqlite:///{home / 'ledger.db'}", redis_url=None, origin=DEFAULT_ORIGIN)


def _rows(url: str) -> dict[str, object]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return {
                "log_info": conn.execute(text("SELECT count(*) FROM log_info")).scalar(),
                "trust_root": conn.execute(text("SELECT count(*) FROM trust_root")).scalar(),
                "checkpoints": conn.execute(text("SELECT count(*) FROM checkpoints")).scalar(),
                "revision": migrate.current_revision(engine),
            }
    finally:
        engine.dispose()


def test_inits_at_once_on_one_fresh_store_all_succeed_and_agree(empty_database):
    home, url = empty_database
    procs = [_init(home, url) for _ in range(PROCESSES)]
    outputs = [p.communicate(timeout=180) for p in procs]
    for p, (out, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err[-2000:]
        assert "Traceback" not in err
    vkey = load_log_identity(_settings(home, url)).vkey
    assert all(out.strip().splitlines()[-1] == vkey for out, _ in outputs), [o[-200:] for o, _ in outputs]
    assert _rows(_settings(home, url).database_url) == {
        "log_info": 1, "trust_root": 1, "checkpoints": 1, "revision": migrate.head_revision(),
    }
    # and once more, after the fact: nothing changes
    again = _init(home, url)
    out, err = again.communicate(timeout=120)
    assert again.returncode == 0, err
    assert out.strip().splitlines()[-1] == vkey


def test_init_waits_while_another_holds_the_init_lock(empty_database):
    home, url = empty_database
    settings = _settings(home, url)
    setup.make_private_home(home)
    engine = make_engine(settings.database_url)
    try:
        with migrate.init_lock(engine):
            waiting = _init(home, url)
            # a free init makes its tables within about a second; this one must make none
            deadline = time.monotonic() + 3.0
            while time.monotonic() < deadline:
                assert waiting.poll() is None, waiting.communicate()
                with engine.connect() as conn:
                    assert "alembic_version" not in inspect(conn).get_table_names()
                time.sleep(0.2)
        out, err = waiting.communicate(timeout=120)
        assert waiting.returncode == 0, err
    finally:
        engine.dispose()
    assert _rows(settings.database_url)["checkpoints"] == 1


def test_init_takes_the_key_another_init_wrote_meanwhile(tmp_path, monkeypatch):
    """The key files are checked, then created: another init may create one in between. The one
    that is there is loaded (a key file appears whole or not at all), never a traceback."""
    home = tmp_path / "home"
    settings = _settings(home, None)
    written: dict[str, object] = {}
    real_log_key, real_admin_key = setup.create_log_key, setup.create_admin_key

    def log_key_raced(path, origin):
        written["log"] = real_log_key(path, origin)  # the other init, first
        return real_log_key(path, origin)  # ours: the file is there now

    def admin_key_raced(path):
        written["admin"] = real_admin_key(path)
        return real_admin_key(path)

    monkeypatch.setattr(setup, "create_log_key", log_key_raced)
    monkeypatch.setattr(setup, "create_admin_key", admin_key_raced)
    log = setup.init_store(settings)
    assert log.vkey == written["log"].vkey
    assert setup.load_admin_key(settings).key_id == written["admin"].key_id


def test_init_lock_on_sqlite_leaves_no_file_behind(tmp_path):
    home = tmp_path / "home"
    setup.init_store(_settings(home, None))
    assert sorted(p.name for p in home.iterdir() if not p.name.endswith(("-wal", "-shm"))) == ["admin.key", "ledger.db", "log.key"]
