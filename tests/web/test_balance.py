"""web.balance: serve's worker processes share out connections evenly."""

from __future__ import annotations

import copy
import os

from web import balance
from web.balance import Balancer


def _pair() -> tuple[Balancer, Balancer]:
    first = Balancer(2)
    second = copy.copy(first)  # the same shared table and pipes, as a forked child sees them
    first._me, second._me = 0, 1
    return first, second


def test_a_process_stops_listening_while_a_live_sibling_holds_fewer_connections() -> None:
    first, second = _pair()
    assert first.may_accept(0) and second.may_accept(0)  # equal: both listen
    assert not first.may_accept(1)  # the sibling published 0
    assert second.may_accept(0)
    assert second.may_accept(1)
    assert first.may_accept(1)  # equal again


def test_a_silent_sibling_is_not_waited_for(monkeypatch) -> None:
    first, second = _pair()
    second.may_accept(0)
    assert not first.may_accept(5)
    now = balance.time.monotonic()
    monkeypatch.setattr(balance.time, "monotonic", lambda: now + balance.STALE_SECONDS + 1)
    assert first.may_accept(5)  # the sibling stopped publishing (died): accept anyway


def test_a_nudge_reaches_every_sibling_and_never_blocks() -> None:
    first, second = _pair()
    for _ in range(70_000):  # more than a pipe holds (64 KiB): a full pipe is not an error
        first.nudge()
    assert os.read(first._pipes[1][0], 1) == b"\0"
    try:
        os.read(first._pipes[0][0], 1)
        raise AssertionError("a process nudged itself")
    except BlockingIOError:
        pass
