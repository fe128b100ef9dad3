"""`provledger worker` and `provledger audit` as an operator runs them (issue 17): every Celery
worker option passes through; `audit --workers` gives up on an audit no worker picks up, and
leaves nothing behind; `audit --signatures` gives the workers' report in one process.

Real Redis and PostgreSQL for the worker tests (skipped, or failed under
PROVLEDGER_REQUIRE_SERVICES=1, when they are down).
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
import uuid

import pytest
from sqlalchemy import func, select

from ledger.cli.main import _split_worker_args, main
from ledger.cli.worker import progress_bar
from ledger.db.models import AuditRun, AuditShard
from ledger.services import shards
from tests.fixtures import REPO
from tests.services.test_tamper import BATCHES, CASES
from tests.workers.conftest import worker_env
from tests.workers.factory import bulk_ledger_into
from tests.workers.test_worker_shards import distributed

PROVLEDGER = [sys.executable, "-m", "ledger.cli.main"]


def provledger(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PROVLEDGER, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def start_worker(env: dict[str, str], logs, *args: str) -> subprocess.Popen[bytes]:
    name = f"cli-{uuid.uuid4().hex[:6]}@localhost"
    log = open(logs / f"{name.split('@')[0]}.log", "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(
        [*PROVLEDGER, "worker", *args, "-n", name, "--without-gossip", "--without-mingle", "--without-heartbeat"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    log.close()
    return proc


def audit_rows(st) -> tuple[int, int]:
    with st.sessions() as session:
        return (
            session.execute(select(func.count()).select_from(AuditRun)).scalar_one(),
            session.execute(select(func.count()).select_from(AuditShard)).scalar_one(),
        )


# ------------------------------------------------------------------------------ the command line


def test_worker_hands_every_option_to_celery():
    assert _split_worker_args(["worker", "--concurrency", "2", "--beat", "-Q", "a,b", "--loglevel", "DEBUG"]) == (
        ["worker"], ["--concurrency", "2", "--beat", "-Q", "a,b", "--loglevel", "DEBUG"]
    )
    assert _split_worker_args(["worker", "--", "-c", "2"]) == (["worker"], ["-c", "2"])  # `--` is not Celery's
    assert _split_worker_args(["worker"]) == (["worker"], [])
    assert _split_worker_args(["worker", "-c", "2", "--help"]) == (["worker", "--help"], [])
    assert _split_worker_args(["audit", "--workers"]) == (["audit", "--workers"], [])


def test_worker_help_says_options_pass_through(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["worker", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "handed unchanged to Celery's worker command" in out
    for option in ("--concurrency", "--beat", "--queues", "--loglevel", "--hostname"):
        assert option in out, option  # Celery's own list, from its click command


def test_embedded_worker_refuses_options_it_cannot_honour(sqlite_store, monkeypatch, capsys):
    for name, value in sqlite_store.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("PROVLEDGER_REDIS_URL", raising=False)
    assert main(["worker", "-Q", "other"]) == 3
    err = capsys.readouterr().err.strip()
    assert "PROVLEDGER_REDIS_URL" in err and "-Q other" in err and err.count("\n") == 0
    assert main(["worker", "--concurrency", "many"]) == 2
    capsys.readouterr()
    for count in ("0", "257", "100000"):  # 100000 threads: refused, not started until something breaks
        assert main(["worker", "--concurrency", count]) == 2
        assert "--concurrency must be from 1 to 256" in capsys.readouterr().err


def test_audit_option_combinations_are_refused(sqlite_store, monkeypatch, capsys):
    for name, value in sqlite_store.env.items():
        monkeypatch.setenv(name, value)
    assert main(["audit", "--wait", "3"]) == 2
    assert main(["audit", "--processes", "2"]) == 2
    assert main(["audit", "--signatures", "--processes", "0"]) == 2
    assert main(["audit", "--workers", "--wait", "-1"]) == 2
    with pytest.raises(SystemExit) as exc:
        main(["audit", "--workers", "--signatures"])
    assert exc.value.code == 2
    assert audit_rows(sqlite_store) == (0, 0)


def test_progress_bar_shows_an_eta():
    now = [100.0]
    out = io.StringIO()
    show = progress_bar(out, width=10, clock=lambda: now[0])
    show(0, 1000)
    assert "ETA …" in out.getvalue()
    now[0] = 110.0
    show(250, 1000)  # 250 entries in 10 s: 750 more take 30 s
    assert out.getvalue().rsplit("\r", 1)[1].startswith("audit [##--------]  25.0%  250/1000 entries  ETA 30s")
    now[0] = 200.0
    show(900, 1000)
    assert "ETA 11s" in out.getvalue().rsplit("\r", 1)[1]  # 900 in 100 s: 100 more take 11 s
    now[0] = 230.0
    show(1000, 1000)
    assert out.getvalue().endswith("took 2m10s\x1b[K\n")


# ------------------------------------------------------------------------------ --signatures


@pytest.mark.parametrize("processes", [1, 2])
def test_audit_signatures_gives_the_workers_report(store, processes):
    store.fill(BATCHES)
    # one forged signature, every hash consistent: only the signature-level audits see it
    bulk_ledger_into(store, store.size() + 20, corrupt_signature_at=store.size() + 7)
    forged = store.size() - 20 + 7
    for case in (None, "swap-entries-10-25"):
        if case is not None:
            CASES[case](store)
        local = shards.audit_signatures(
            store.sessions, store.log, database_url=store.settings.database_url, processes=processes, shard_level=3
        )
        workers = distributed(store, 3)
        checked = workers.pop("checked")
        assert local.to_json() == workers
        assert local.checked() == checked
        assert local.signatures_checked == store.size() - 1
        assert not local.ok and forged in [p.index for p in local.problems if p.kind == "signature"]
    assert local.first_bad_index == 10


def test_audit_signatures_on_the_command_line(sqlite_store, monkeypatch, capsys):
    for name, value in sqlite_store.env.items():
        monkeypatch.setenv(name, value)
    bulk_ledger_into(sqlite_store, 40, checkpoint_every=16)
    assert main(["audit", "--signatures"]) == 0
    assert capsys.readouterr().out.strip() == "OK: 40 entries, 40 signatures, 4 checkpoints re-measured"  # sizes 0, 16, 32, 40
    bulk_ledger_into(sqlite_store, 50, corrupt_signature_at=44)
    assert main(["audit"]) == 0  # the hash-level audit does not look at signatures
    capsys.readouterr()
    assert main(["audit", "--signatures", "--json", "--processes", "2"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["first_bad_index"] == 44 and doc["problems"][0]["kind"] == "signature"
    assert audit_rows(sqlite_store) == (0, 0)  # it only reads


# ------------------------------------------------------------------------------ real workers


@pytest.fixture
def cluster_env(postgres_store, redis_ns, tmp_path):
    env = worker_env(postgres_store, redis_ns)
    logs = tmp_path / "logs"
    logs.mkdir()
    procs: list[subprocess.Popen[bytes]] = []
    yield postgres_store, env, logs, procs
    import os  # noqa: PLC0415
    import signal  # noqa: PLC0415

    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def log_text(logs) -> str:
    return "\n".join(p.read_text(errors="replace")[-4000:] for p in sorted(logs.glob("*.log")))


@pytest.mark.redis
@pytest.mark.postgres
def test_provledger_worker_with_concurrency_2_runs_an_audit(cluster_env):
    st, env, logs, procs = cluster_env
    st.fill(BATCHES)
    procs.append(start_worker(env, logs, "--concurrency", "2", "--loglevel", "INFO"))
    result = provledger(env, "audit", "--workers", "--json", "--wait", "120")
    assert result.returncode == 0, result.stderr + log_text(logs)
    doc = json.loads(result.stdout)
    assert doc["ok"] is True and doc["tree_size"] == st.size()
    assert "concurrency: 2 (prefork)" in log_text(logs)  # Celery took the option
    with st.sessions() as session:
        run = session.execute(select(AuditRun)).scalar_one()
        assert run.state == "done" and json.loads(run.result)["checked"]["signatures"] == st.size()
    CASES["edit-byte-entry-22"](st)
    result = provledger(env, "audit", "--workers", "--wait", "120")
    assert result.returncode == 1 and "first bad index 22" in result.stderr


@pytest.mark.redis
@pytest.mark.postgres
def test_audit_workers_gives_up_when_no_worker_picks_it_up(cluster_env):
    st, env, logs, procs = cluster_env
    st.fill([3, 4])
    result = provledger(env, "audit", "--workers", "--wait", "2", timeout=120)  # it returns at all: it gave up
    assert result.returncode == 3, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    gave_up = "no worker picked up the audit within 2 seconds"
    assert gave_up in last and "start one with `provledger worker`" in last
    assert audit_rows(st) == (0, 0)  # nothing half-written
    # A worker started later finds the withdrawn audit's tasks and does nothing with them, and
    # runs the next audit.
    procs.append(start_worker(env, logs, "-c", "1"))
    result = provledger(env, "audit", "--workers", "--wait", "120")
    assert result.returncode == 0, result.stderr + log_text(logs)
    deadline = time.monotonic() + 30
    while "was withdrawn" not in log_text(logs) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "was withdrawn" in log_text(logs)
    with st.sessions() as session:
        assert [r.state for r in session.execute(select(AuditRun)).scalars()] == ["done"]


def test_withdraw_leaves_a_started_audit_alone(sqlite_store):
    st = sqlite_store
    bulk_ledger_into(st, 10)
    with st.sessions() as session, session.begin():
        first = shards.create_audit(session, st.log, now=1, source="cli", shard_level=2).id
        second = shards.create_audit(session, st.log, now=1, source="cli", shard_level=2).id
    shards.run_shard(st.sessions, second, 0, 0, 4)
    assert shards.withdraw_audit(st.sessions, second) is False  # a worker has started it
    assert shards.withdraw_audit(st.sessions, first) is True
    assert shards.withdraw_audit(st.sessions, first) is False  # gone already
    with st.sessions() as session:
        assert [r.id for r in session.execute(select(AuditRun)).scalars()] == [second]
        assert session.execute(select(func.count()).select_from(AuditShard).where(AuditShard.audit_id == first)).scalar_one() == 0
