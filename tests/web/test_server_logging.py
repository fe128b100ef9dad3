"""An overloaded server does not spend its time on waitress's queue-depth warning: one record
every few seconds gets through, the rest are dropped (web.server.EverySeconds)."""

from __future__ import annotations

import logging

from web.server import EverySeconds


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _record() -> logging.LogRecord:
    return logging.LogRecord("waitress.queue", logging.WARNING, __file__, 1, "Task queue depth is %d", (7,), None)


def test_one_record_per_period_gets_through():
    clock = _Clock()
    limit = EverySeconds(5.0, clock)
    assert limit.filter(_record())
    assert not any(limit.filter(_record()) for _ in range(1000))
    clock.now += 4.9
    assert not limit.filter(_record())
    clock.now += 0.2
    assert limit.filter(_record())
    assert not limit.filter(_record())


def test_the_filter_drops_records_on_a_real_logger(caplog):
    clock = _Clock()
    logger = logging.getLogger("provledger.test.every-seconds")
    limit = EverySeconds(5.0, clock)
    logger.addFilter(limit)
    try:
        with caplog.at_level(logging.WARNING, logger=logger.name):
            for depth in range(50):
                logger.warning("Task queue depth is %d", depth)
            clock.now += 6
            logger.warning("Task queue depth is %d", 99)
        assert [r.getMessage() for r in caplog.records] == ["Task queue depth is 0", "Task queue depth is 99"]
    finally:
        logger.removeFilter(limit)
