"""HTTP to witnesses (urllib: no new dependency): one POST, its whole exchange bounded in time.

A socket timeout bounds each read, not a request: a witness that drips its headers or its body a
byte at a time would keep the asking thread reading for as long as it liked. ``http_post`` cuts
the request's sockets at its deadline instead, so the blocked read returns and the thread ends.
Replies are capped at ``MAX_REPLY_BYTES``; redirects are not followed.
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["MAX_REPLY_BYTES", "HttpReply", "http_post"]

#: A witness replies with a few signature lines; anything longer is not read.
MAX_REPLY_BYTES = 64 * 1024


@dataclass(frozen=True)
class HttpReply:
    status: int
    content_type: str
    body: bytes


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # A witness answers add-checkpoint itself; a redirect would turn the POST into a GET.
    def redirect_request(self, *_args: object, **_kwargs: object) -> None:
        return None


class _Deadline:
    """Cuts every connection of one request when its time is up. A socket timeout bounds each
    read, not the request: a witness that drips its headers or body a byte at a time would keep
    the asking thread reading for as long as it likes. At the deadline this shuts the sockets
    down, so the blocked read returns and the thread ends (its request fails as unreachable)."""

    def __init__(self, timeout: float) -> None:
        self.at = time.monotonic() + timeout
        self.passed = False
        self._lock = threading.Lock()
        self._connections: list[http.client.HTTPConnection] = []
        self._timer = threading.Timer(timeout, self.cut)
        self._timer.daemon = True

    def __enter__(self) -> _Deadline:
        self._timer.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._timer.cancel()

    def connection(self, kind: type[http.client.HTTPConnection]) -> Callable[..., http.client.HTTPConnection]:
        """A connection factory for ``urllib``'s handlers: each connection it makes is cut too."""

        def make(host: str, **kwargs: Any) -> http.client.HTTPConnection:
            conn = kind(host, **kwargs)
            connect = conn.connect

            def connect_then_check() -> None:
                connect()
                with self._lock:
                    if self.passed:  # connected just after the cut
                        _shut(conn)

            conn.connect = connect_then_check  # type: ignore[method-assign]
            with self._lock:
                self._connections.append(conn)
            return conn

        return make

    def cut(self) -> None:
        with self._lock:
            self.passed = True
            for conn in self._connections:
                _shut(conn)


def _shut(conn: http.client.HTTPConnection) -> None:
    if conn.sock is not None:
        try:  # the plain socket's shutdown (a TLS socket's own would also drop its TLS state)
            socket.socket.shutdown(conn.sock, socket.SHUT_RDWR)
        except OSError:
            pass


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, deadline: _Deadline) -> None:
        super().__init__()
        self._deadline = deadline

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(self._deadline.connection(http.client.HTTPConnection), req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, deadline: _Deadline) -> None:
        super().__init__()
        self._deadline = deadline

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(self._deadline.connection(http.client.HTTPSConnection), req, context=self._context)  # type: ignore[attr-defined]


def _read_capped(stream: http.client.HTTPResponse | urllib.error.HTTPError, deadline: _Deadline) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while True:
        if time.monotonic() > deadline.at:
            raise TimeoutError("the witness's reply took too long")
        chunk = stream.read1(min(4096, MAX_REPLY_BYTES + 1 - total))  # what has arrived, not 4 KiB
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        total += len(chunk)
        if total > MAX_REPLY_BYTES:
            raise OSError(f"the witness's reply is over {MAX_REPLY_BYTES} bytes")


def http_post(url: str, body: bytes, timeout: float) -> HttpReply:
    """POST ``body`` to ``url``; any status is a reply. Raises OSError when there is none, and
    when the whole exchange (connect, headers, body) takes longer than ``timeout``."""
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={"Content-Type": "text/plain; charset=utf-8", "User-Agent": "provenance-ledger"},
    )
    with _Deadline(timeout) as deadline:
        opener = urllib.request.build_opener(_NoRedirect, _HTTPHandler(deadline), _HTTPSHandler(deadline))
        try:
            with opener.open(request, timeout=timeout) as response:
                return HttpReply(response.status, response.headers.get("Content-Type", ""), _read_capped(response, deadline))
        except urllib.error.HTTPError as exc:
            with exc:
                try:
                    return HttpReply(exc.code, exc.headers.get("Content-Type", ""), _read_capped(exc, deadline))
                except (http.client.HTTPException, ValueError) as broken:  # an error reply whose body breaks off
                    raise OSError(_cut_short(deadline, timeout) or str(broken)) from broken
                except OSError as broken:
                    raise OSError(_cut_short(deadline, timeout) or str(broken)) from broken
        except (urllib.error.URLError, http.client.HTTPException, ValueError, OSError) as exc:
            raise OSError(_cut_short(deadline, timeout) or str(getattr(exc, "reason", exc))) from exc


def _cut_short(deadline: _Deadline, timeout: float) -> str | None:
    return f"no complete reply within {timeout:g} s" if deadline.passed else None
