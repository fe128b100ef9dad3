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


# ------------------------------------------------------------------------------ files made at once


def test_create_private_file_never_overwrites_and_leaves_nothing_behind(tmp_path, loose_umask):
    from ledger.config import create_private_file  # noqa: PLC0415

    path = tmp_path / "secret"
    assert create_private_file(path, b"first\n") is True
    assert create_private_file(path, b"second\n") is False
    assert path.read_bytes() == b"first\n" and _mode(path) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secret"]  # no temporary file left


def _load_secret(home: str, barrier, results) -> None:  # type: ignore[no-untyped-def]
    from pathlib import Path  # noqa: PLC0415

    from web.ui.security import load_secret_key  # noqa: PLC0415

    barrier.wait()
    try:
        results.put(load_secret_key(Path(home), {}))
    except Exception as exc:  # noqa: BLE001 - the test reports what each process met
        results.put(f"error: {exc!r}")


def test_serve_workers_starting_at_once_read_one_whole_session_secret(tmp_path):
    """Every `serve` worker loads the UI's session secret as it starts, all at the same moment on
    a fresh home: none may read the file half-written (that worker would die at start and the
    server would run on fewer cores)."""
    import multiprocessing  # noqa: PLC0415

    context = multiprocessing.get_context("fork")
    for trial in range(10):
        home = tmp_path / f"home-{trial}"
        barrier, results = context.Barrier(8), context.Queue()
        processes = [context.Process(target=_load_secret, args=(str(home), barrier, results)) for _ in range(8)]
        for p in processes:
            p.start()
        keys = {results.get(timeout=60) for _ in processes}
        for p in processes:
            p.join(timeout=60)
        assert len(keys) == 1 and len(keys.pop()) == 64, f"trial {trial}: {keys}"


def test_create_private_file_without_hard_links_still_creates_it_once(tmp_path, loose_umask, monkeypatch):
    """On a file system that refuses hard links the file is created in place (O_EXCL)."""
    from ledger.config import create_private_file  # noqa: PLC0415

    def no_links(*_args: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    path = tmp_path / "secret"
    assert create_private_file(path, b"first\n") is True
    assert create_private_file(path, b"second\n") is False
    assert path.read_bytes() == b"first\n" and _mode(path) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secret"]
