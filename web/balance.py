"""Spread connections evenly over ``serve``'s worker processes.

The processes accept on one listening socket. Left alone, whichever process is awake takes the
next connection, so the few busy keep-alive connections of a batch client (four, say) can all land
on one process while the other cores idle. Each process publishes how many connections it holds
in a small table of shared memory, and listens only while it holds no more than the least loaded
live sibling. After each accept it nudges its siblings (a byte on their pipes), so that one that
stopped listening re-decides at once instead of at its event loop's next timeout (a second).

A sibling that has not published for ``STALE_SECONDS`` (it died, or is stopping) is left out of
the comparison, so a lost process never stops the others from accepting.
"""

from __future__ import annotations

import mmap
import os
import struct
import time
from typing import Any

__all__ = ["Balancer"]

#: a sibling silent for this long is not compared with (its event loop wakes at least every second)
STALE_SECONDS = 5.0

_SLOT = struct.Struct("=qd")  # connections held, monotonic time of the last publication


class Balancer:
    """Created before the worker processes fork; each child then calls ``install`` once."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        # anonymous MAP_SHARED memory: the children inherit it and see each other's writes
        self._table = mmap.mmap(-1, _SLOT.size * workers)
        self._pipes = [os.pipe() for _ in range(workers)]
        for read_end, write_end in self._pipes:
            os.set_blocking(read_end, False)
            os.set_blocking(write_end, False)
        self._me = -1

    def _publish(self, connections: int) -> None:
        _SLOT.pack_into(self._table, self._me * _SLOT.size, connections, time.monotonic())

    def may_accept(self, connections: int) -> bool:
        """Publish ``connections`` (this process's count) and say whether to listen now."""
        self._publish(connections)
        now = time.monotonic()
        for worker in range(self.workers):
            if worker == self._me:
                continue
            theirs, seen = _SLOT.unpack_from(self._table, worker * _SLOT.size)
            if now - seen < STALE_SECONDS and theirs < connections:
                return False
        return True

    def nudge(self) -> None:
        for worker, (_read_end, write_end) in enumerate(self._pipes):
            if worker != self._me:
                try:
                    os.write(write_end, b"\0")
                except (BlockingIOError, BrokenPipeError):
                    pass  # a full pipe already wakes it; a closed one belongs to a stopped process

    def install(self, worker: int, server: Any) -> None:
        """Make ``server`` (a waitress server in worker process ``worker``) take part."""
        from waitress import wasyncore  # noqa: PLC0415 - only in a serving process

        self._me = worker
        for other, (read_end, write_end) in enumerate(self._pipes):
            if other != worker:
                os.close(read_end)
        wake = self._pipes[worker][0]

        class _Nudged(wasyncore.file_dispatcher):  # type: ignore[misc]
            def readable(self) -> bool:
                return True

            def writable(self) -> bool:
                return False

            def handle_read(self) -> None:
                try:
                    while os.read(wake, 4096):
                        pass
                except BlockingIOError:
                    pass

        _Nudged(wake, map=server._map)
        readable, handle_accept = server.readable, server.handle_accept

        def balanced_readable() -> bool:
            listening = readable()  # waitress's own checks (connection limit, maintenance)
            return self.may_accept(len(server._map)) and listening

        def balanced_accept() -> None:
            handle_accept()
            self._publish(len(server._map))
            self.nudge()

        server.readable = balanced_readable
        server.handle_accept = balanced_accept
