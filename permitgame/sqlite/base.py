"""Django's SQLite backend, with writers queued in the process and no query log unless asked.

The settings begin every transaction ``IMMEDIATE`` (the database's write lock, taken at once;
see settings.py). SQLite makes a writer that finds the lock taken sleep and try again, up to
100 ms at a time, so under many writers (a lecture hall's joins while its first classes play)
whoever waited longest sleeps longest and a room's batch of moves could wait for seconds. Here
the threads of a process queue for the lock on a lock of their own first, and each is woken as
soon as the one before it commits or rolls back; SQLite's own wait is left for other processes
(a management command), with the same 30 s limit.

With ``DEBUG`` on (``make run``), Django logs every query of every connection, and its SQLite
backend makes the logged text by running a second statement (``SELECT QUOTE(?), ...``) for each
statement with parameters. A batch of moves cost a third more that way (12.4 against 8.3 ms of
CPU for 40 moves in a room of 200, ``python -m bench.load.cpu``). Nothing here reads the log;
the debug pages do not need it. A caller who wants it asks as usual: ``CaptureQueriesContext``
and ``assertNumQueries`` force the debug cursor, which still logs.
"""

from __future__ import annotations

import threading

from django.db import OperationalError
from django.db.backends.sqlite3 import base

#: The process's writers, one at a time (a transaction holds it from BEGIN to COMMIT/ROLLBACK).
WRITER = threading.Lock()
#: How long a writer waits for the others, as SQLite's own ``timeout`` (settings.py) would.
WRITER_TIMEOUT = 30.0


class DatabaseWrapper(base.DatabaseWrapper):
    """SQLite as Django has it; writers queue in the process; queries logged only when forced."""

    _holds_writer = False

    @property
    def queries_logged(self) -> bool:
        return bool(self.force_debug_cursor)

    def _start_transaction_under_autocommit(self) -> None:
        if not WRITER.acquire(timeout=WRITER_TIMEOUT):
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

    def _commit(self) -> None:
        try:
            super()._commit()  # type: ignore[misc]
        finally:
            self._release_writer()

    def _rollback(self) -> None:
        try:
            super()._rollback()  # type: ignore[misc]
        finally:
            self._release_writer()

    def _close(self) -> None:
        try:
            super()._close()  # type: ignore[misc]
        finally:
            self._release_writer()
