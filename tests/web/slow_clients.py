"""Helpers shared by the slow-client test and its benchmark: a real `provledger serve`, and
sockets that stall in the headers or in the body."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running_server(provledger: str, env: dict[str, str], log_path: Path, *args: str) -> Iterator[int]:
    """`provledger serve` on a free localhost port; yields the port once /healthz answers."""
    port = free_port()
    with log_path.open("wb") as log:
        proc = subprocess.Popen(  # noqa: S603
            [provledger, "serve", "--host", "127.0.0.1", "--port", str(port), *args],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                if proc.poll() is not None:
                    raise RuntimeError("serve exited: " + log_path.read_text(errors="replace"))
                try:
                    if request(port, "GET", "/healthz", timeout=2)[0] in (200, 503):
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("serve did not answer /healthz within 60 s")
                time.sleep(0.2)
            yield port
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def request(port: int, method: str, path: str, *, body: bytes | None = None, headers: dict[str, str] | None = None,
            timeout: float = 10.0) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        data = response.read()
        try:
            return response.status, json.loads(data)
        except ValueError:
            return response.status, data
    finally:
        conn.close()


def stalled_header(port: int) -> socket.socket:
    """A connection whose request line and first header arrive, and then nothing."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    return s


def stalled_upload(port: int, token: str) -> socket.socket:
    """A POST whose headers promise 200 kB and whose body stops after 1 kB."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(
        b"POST /api/v1/entries HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        + f"Authorization: Bearer {token}\r\nContent-Length: 200000\r\n\r\n".encode()
        + b'{"payload": "' + b"A" * 1000
    )
    return s


def closed_by_server(s: socket.socket, within: float) -> bool:
    """Whether the server closes (or answers and closes) ``s`` within ``within`` seconds."""
    s.settimeout(within)
    try:
        while s.recv(4096):
            pass
        return True
    except TimeoutError:
        return False
    except OSError:
        return True
