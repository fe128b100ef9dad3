"""The integrity flag ``serve``'s worker processes share.

A worker that finds the store compromised (its sequencer's right-edge check, its background
audit) stops its own writes at once. The others would find out only at their own next write, and
meanwhile answer ``/healthz`` with "ok". ``SharedFlag`` holds the first report in anonymous shared
memory, created before the workers fork, so every worker reports it and refuses writes as soon as
one has found it.
"""

from __future__ import annotations

import json
import mmap
import multiprocessing
import struct
from typing import Any

__all__ = ["SharedFlag"]

#: room for the report (JSON); a longer one keeps its first bad index and message only
SIZE = 64 * 1024
_LENGTH = struct.Struct("=Q")


class SharedFlag:
    """Set once (the first report wins); never cleared while the server runs."""

    def __init__(self) -> None:
        self._buffer = mmap.mmap(-1, SIZE)  # MAP_SHARED | MAP_ANONYMOUS: the children see it
        self._lock = multiprocessing.get_context("fork").Lock()

    def read(self) -> dict[str, Any] | None:
        (length,) = _LENGTH.unpack_from(self._buffer, 0)
        if length == 0:
            return None
        return json.loads(self._buffer[_LENGTH.size : _LENGTH.size + length])  # type: ignore[no-any-return]

    def set(self, report: dict[str, Any]) -> None:
        data = json.dumps(report, separators=(",", ":")).encode()
        if len(data) > SIZE - _LENGTH.size:
            short = {"first_bad_index": report.get("first_bad_index"), "message": str(report.get("message", ""))[:4096],
                     "truncated": True}
            data = json.dumps(short, separators=(",", ":")).encode()
        with self._lock:
            if _LENGTH.unpack_from(self._buffer, 0)[0]:
                return
            self._buffer[_LENGTH.size : _LENGTH.size + len(data)] = data
            _LENGTH.pack_into(self._buffer, 0, len(data))  # last: a reader sees all of it or nothing
