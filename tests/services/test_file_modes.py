"""The embedded store is private: PROVLEDGER_HOME 0700, the SQLite file and the keys 0600
(issue 10, done-when 7), whatever a permissive umask would have given."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from tests.fixtures import REPO, open_store


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def loose_umask():
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def test_init_creates_home_0700_and_database_and_keys_0600(tmp_path, loose_umask):
    home = tmp_path / "deep" / "home"
    with open_store("sqlite", home, None) as st:
        st.fill([3])  # writes through WAL: the -wal/-shm files exist now
        assert _mode(home) == 0o700
        for name in ("ledger.db", "log.key", "admin.key"):
            assert _mode(home / name) == 0o600, name
        for name in ("ledger.db-wal", "ledger.db-shm"):
            if (home / name).exists():
                assert _mode(home / name) & 0o077 == 0, name


def test_provledger_init_and_serve_secret_are_private(tmp_path, loose_umask):
    home = tmp_path / "var"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROVLEDGER_")}
    env.update(PROVLEDGER_HOME=str(home), PYTHONPATH=str(REPO))
    subprocess.run([sys.executable, "-m", "ledger.cli.main", "init"], env=env, check=True, capture_output=True, timeout=120)
    assert _mode(home) == 0o700
    assert {p.name: _mode(p) for p in home.iterdir() if not p.name.endswith(("-wal", "-shm"))} == {
        "ledger.db": 0o600,
        "log.key": 0o600,
        "admin.key": 0o600,
    }
