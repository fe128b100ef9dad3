"""What `make demo` prints and README's "Scaling out" section, run as written (issue 17).

The commands are parsed from the demo's printout and from README, not copied here: if either
changes, this runs the new text. Worker commands start real `provledger worker` / `celery`
processes on Redis (127.0.0.1:6379) and PostgreSQL; the rest must exit 0.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.fixtures import REPO
from tests.workers.conftest import worker_env

BIN = Path(sys.executable).parent
README = REPO / "README.md"


def _path_env(env: dict[str, str]) -> dict[str, str]:
    env = dict(env)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', os.environ.get('PATH', ''))}"
    return env


def scale_out_commands() -> list[str]:
    """Every `provledger …` / `celery …` command in README's "Scaling out" section: inline code
    and the lines of its shell blocks (comments dropped)."""
    text = README.read_text()
    start = text.index("### Scaling out")
    end = text.index("\n## ", start)
    section = text[start:end]
    commands: list[str] = []
    for block in re.findall(r"```sh\n(.*?)```", section, re.S):
        for line in block.splitlines():
            line = line.split(" #", 1)[0].strip()
            if line:
                commands.append(line)
    prose = re.sub(r"```sh\n.*?```", "", section, flags=re.S)
    commands += [c for c in re.findall(r"`([^`]+)`", prose) if re.match(r"(provledger|celery) ", c + " ")]
    return list(dict.fromkeys(c.replace("<cores>", "2") for c in commands))


def demo_hints(stdout: str) -> tuple[list[str], list[str], dict[str, str]]:
    """(commands, URLs to open, exported variables) from the demo's "Look around" printout."""
    commands, urls, exports = [], [], {}
    for line in stdout.split("Look around:", 1)[1].splitlines():
        body = re.sub(r"^\s*[A-Za-z -]+:\s+", "", line).strip() if re.match(r"^\s+[A-Za-z -]+:\s", line) else line.strip()
        body = re.split(r"\s{2,}\(", body)[0].strip()
        if body.startswith("export "):
            name, value = body[len("export "):].split("=", 1)
            exports[name] = value
        elif body.startswith(("provledger ", "curl ")):
            commands.append(body)
        elif body.startswith("http://"):
            urls.append(body)
    return commands, urls, exports


def is_worker(argv: list[str]) -> bool:
    return "worker" in argv[1:4] and not any(a in ("-h", "--help") for a in argv)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Background:
    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, argv: list[str], env: dict[str, str], name: str) -> subprocess.Popen[bytes]:
        log = open(self.logs / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.procs.append(proc)
        return proc

    def text(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def wait_for(self, name: str, needle: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.text(name):
            proc = self.procs[-1]
            assert time.monotonic() < deadline and proc.poll() is None, f"{name} never said {needle!r}:\n{self.text(name)[-3000:]}"
            time.sleep(0.2)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


@pytest.fixture
def background(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    bg = Background(logs)
    yield bg
    bg.stop()


def test_the_sections_have_commands():
    commands = scale_out_commands()
    assert any(c.startswith("provledger worker --concurrency") for c in commands), commands
    assert any(c.startswith("celery -A workers worker") for c in commands), commands
    assert "provledger worker --beat" in commands


@pytest.mark.redis
@pytest.mark.postgres
def test_readme_scaling_out_runs_as_written(postgres_store, redis_ns, background):
    st = postgres_store
    st.fill([5, 6, 7])
    env = _path_env(worker_env(st, redis_ns))
    ran = []
    for n, command in enumerate(scale_out_commands()):
        argv = shlex.split(command)
        if is_worker(argv):
            name = f"w{n}"
            if argv[0] == "provledger" or "-n" not in argv:
                argv += ["-n", f"{name}@%h"]  # distinct node names on one machine
            background.start(argv, env, name)
            background.wait_for(name, "[queues]")  # the banner (a plain `celery worker` logs nothing at INFO)
            if "--beat" in argv:
                background.wait_for(name, "beat: Starting")
        else:
            result = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
            assert result.returncode == 0, f"{command}: {result.stderr}"
        ran.append(command)
    assert any(c.startswith("provledger audit --workers") for c in ran)


@pytest.mark.redis
@pytest.mark.postgres
def test_demo_printout_runs_as_written(tmp_path, redis_ns, background):
    home = tmp_path / "demo"
    port = free_port()
    env = _path_env({k: v for k, v in os.environ.items() if not k.startswith("PROVLEDGER_")})
    demo = subprocess.run(
        ["provledger", "demo", "--home", str(home), "--port", str(port), "--no-serve"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert demo.returncode == 0, demo.stderr
    commands, urls, exports = demo_hints(demo.stdout)
    assert exports == {"PROVLEDGER_HOME": str(home)}
    assert any(c.startswith("provledger worker") for c in commands)
    assert any(c.startswith("provledger audit --signatures") for c in commands)
    assert any(c.startswith("provledger verify-receipt") for c in commands)
    assert sum(c.startswith("curl ") for c in commands) >= 3 and len(urls) >= 2, (commands, urls)
    env.update(exports)
    env["PROVLEDGER_TEE_TRUST_DIR"] = str(home / "tee-trust")
    # the demo serves what its hints talk to: the same server, on the printed port
    background.start(["provledger", "serve", "--port", str(port)], env, "serve")
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5).close()  # noqa: S310
            break
        except OSError:
            assert time.monotonic() < deadline, background.text("serve")[-3000:]
            time.sleep(0.3)
    for url in urls:
        with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 - the demo's own server
            assert response.status == 200, url
    redis_env = dict(env, PROVLEDGER_REDIS_URL=redis_ns.url, PROVLEDGER_REDIS_PREFIX=redis_ns.prefix)
    for n, command in enumerate(commands):
        argv = shlex.split(command)
        if argv[0] == "curl":
            argv[1:1] = ["--fail", "--silent", "--show-error"]
        if is_worker(argv):  # "with PROVLEDGER_REDIS_URL set", as the hint says
            name = f"demo-w{n}"
            background.start([*argv, "-n", f"{name}@%h"], redis_env, name)
            background.wait_for(name, "[queues]")  # the banner (a plain `celery worker` logs nothing at INFO)
            continue
        run_env = redis_env if "--workers" in argv else env
        result = subprocess.run(argv, cwd=tmp_path, env=run_env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, f"{command}: {result.stdout}{result.stderr}"
