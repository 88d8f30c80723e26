"""Django's SQLite backend, with writers queued in the process and no query log unless asked.

The settings begin every transaction ``IMMEDIATE`` (the database's write lock, taken at once;
see settings.py). SQLite makes a writer that finds the lock taken sleep and try again, up to
100 ms at a time, so under many writers (a lecture hall's joins while its first classes play)
whoever waited longest sleeps longest and a room's batch of moves could wait for seconds. Here
the threads of a process queue for the lock on a lock of their own first, and each is woken as
soon as the one before it commits or rolls back; SQLite's own wait is left for other processes
(a management command), with the same 30 s limit. A room's batches of moves and the clock go
ahead of the other writers (``ahead``): a hall's joins do not hold up the rooms already playing.

With ``DEBUG`` on (``make run``), Django logs every query of every connection, and its SQLite
backend makes the logged text by running a second statement (``SELECT QUOTE(?), ...``) for each
statement with parameters. A batch of moves cost a third more that way (12.4 against 8.3 ms of
CPU for 40 moves in a room of 200, ``python -m bench.load.cpu``). Nothing here reads the log;
the debug pages do not need it. A caller who wants it asks as usual: ``CaptureQueriesContext``
and ``assertNumQueries`` force the debug cursor, which still logs.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator

from django.db import OperationalError
from django.db.backends.sqlite3 import base

#: How long a writer waits for the others, as SQLite's own ``timeout`` (settings.py) would.
WRITER_TIMEOUT = 30.0

_thread = threading.local()


@contextlib.contextmanager
def ahead() -> Iterator[None]:
    """Let this thread's transactions go ahead of the process's other waiting writers.

    For what a room already playing waits on (a batch of moves, the clock's deadlines): a
    lecture hall's joins then wait a few ms more, not the rooms' moves. Nothing with PostgreSQL,
    whose locks are per game row.
    """
    before = getattr(_thread, "ahead", False)
    _thread.ahead = True
    try:
        yield
    finally:
        _thread.ahead = before


class Writers:
    """The process's writers, one transaction at a time; those marked ``ahead`` go first.

    Each release wakes one waiter: the next of those ahead if any wait, else the next other.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._first = threading.Condition(self._lock)
        self._others = threading.Condition(self._lock)
        self._busy = False
        self._first_waiting = 0

    def locked(self) -> bool:
        return self._busy

    def acquire(self, *, first: bool, timeout: float) -> bool:
        """Wait for the turn (``first``: ahead of the others); False after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        with self._lock:
            if first:
                self._first_waiting += 1
            try:
                while self._busy or (not first and self._first_waiting):
                    left = deadline - time.monotonic()
                    if left <= 0 or not (self._first if first else self._others).wait(left):
                        if not self._busy and not (not first and self._first_waiting):
                            break  # freed just as the wait ran out
                        self._wake()  # pass on a wake-up this waiter may have taken
                        return False
                self._busy = True
                return True
            finally:
                if first:
                    self._first_waiting -= 1

    def release(self) -> None:
        with self._lock:
            self._busy = False
            self._wake()

    def _wake(self) -> None:
        (self._first if self._first_waiting else self._others).notify()


#: The process's writers (a transaction holds its turn from BEGIN to COMMIT or ROLLBACK).
WRITER = Writers()


class DatabaseWrapper(base.DatabaseWrapper):
    """SQLite as Django has it; writers queue in the process; queries logged only when forced."""

    _holds_writer = False

    @property
    def queries_logged(self) -> bool:
        return bool(self.force_debug_cursor)

    def _start_transaction_under_autocommit(self) -> None:
        first = getattr(_thread, "ahead", False)
        if not WRITER.acquire(first=first, timeout=WRITER_TIMEOUT):
            raise OperationalError("database is locked (another thread's transaction held on)")
        self._holds_writer = True
        try:
            super()._start_transaction_under_autocommit()  # type: ignore[misc]
        except BaseException:
            self._release_writer()
            raise

    def _release_writer(self) -> None:
        if self._holds_writer:
            self._holds_writer = False
            WRITER.release()

    def _ending(self, step: Callable[[], object]) -> None:
        """Run what ends this connection's transaction, then give the turn on, whatever happens."""
        try:
            step()
        finally:
            self._release_writer()

    def _commit(self) -> None:
        self._ending(super()._commit)  # type: ignore[misc]

    def _rollback(self) -> None:
        self._ending(super()._rollback)  # type: ignore[misc]

    def _close(self) -> None:
        self._ending(super()._close)  # type: ignore[misc]

    def _set_autocommit(self, autocommit: bool) -> None:
        super()._set_autocommit(autocommit)  # type: ignore[misc]
        if autocommit:  # back to autocommit: no transaction of this connection is open
            self._release_writer()
