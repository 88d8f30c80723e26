"""The server's one source of time, an edge that tests control.

Every deadline is an absolute time read from ``now()``. Production reads the wall clock
(timezone-aware UTC). A test freezes time with ``frozen()`` and moves it with ``advance()``, so
no test ever sleeps to reach a deadline. Not here: the loop that fires deadlines (``ticker``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator

_frozen_at: dt.datetime | None = None


def now() -> dt.datetime:
    """Return the current time (UTC, aware): the frozen time in a test, else the wall clock."""
    if _frozen_at is not None:
        return _frozen_at
    return dt.datetime.now(dt.UTC)


class FrozenClock:
    """A handle on frozen time, returned by ``frozen()``."""

    def now(self) -> dt.datetime:
        """Return the frozen time."""
        return now()

    def advance(self, seconds: float) -> dt.datetime:
        """Move frozen time forward by ``seconds``; return the new time."""
        global _frozen_at
        if _frozen_at is None:
            raise RuntimeError("the clock is not frozen")
        _frozen_at = _frozen_at + dt.timedelta(seconds=seconds)
        return _frozen_at


@contextlib.contextmanager
def frozen(at: dt.datetime | None = None) -> Iterator[FrozenClock]:
    """Freeze time at ``at`` (default: the wall clock now) for the duration of the block."""
    global _frozen_at
    previous = _frozen_at
    _frozen_at = at if at is not None else dt.datetime.now(dt.UTC)
    try:
        yield FrozenClock()
    finally:
        _frozen_at = previous
