"""Background jobs of this server process: a function run in a daemon thread.

The contract:

- ``start(key, function, *args)`` runs ``function(*args)`` in a new daemon thread and returns at
  once. A job whose ``key`` is still running in this process is not started twice (``start``
  returns False).
- The job's thread has its own database connection, closed when the job ends.
- The function records its own outcome (in the database: the page that waits for it reads it
  there). An exception that escapes it is logged, and the job ends.
- ``wait(timeout)`` returns when every job this process started has ended, or the timeout has
  passed (tests, shutdown).
- Jobs live only as long as the process. Work that must survive a restart keeps its state in a
  row that a later request can take over (the debrief's cache does: ``debrief.ensure``).

Threads, not a task queue: the jobs are a few seconds of numpy each, started by an instructor's
page, and the server must run as one process with no worker beside it (``make run``). A queue
library (Celery, RQ, django-tasks' database backend) would add that second process.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable

from django.db import close_old_connections, connection

logger = logging.getLogger(__name__)

_running: dict[Hashable, threading.Thread] = {}
_lock = threading.Lock()


def start(key: Hashable, function: Callable[..., object], *args: object, name: str = "") -> bool:
    """Run ``function(*args)`` in a daemon thread; return False if ``key`` is already running."""
    thread = threading.Thread(
        target=_run, args=(key, function, args), name=name or f"job-{key}", daemon=True
    )
    with _lock:
        if key in _running:
            return False
        _running[key] = thread
        thread.start()  # under the lock, so that ``wait`` never joins a thread not yet started
    return True


def _run(key: Hashable, function: Callable[..., object], args: tuple[object, ...]) -> None:
    try:
        close_old_connections()
        function(*args)
    except Exception:
        logger.exception("background job %s failed", key)
    finally:
        connection.close()  # this thread's own connection
        with _lock:
            _running.pop(key, None)


def running() -> list[Hashable]:
    """Return the keys of the jobs running in this process."""
    with _lock:
        return list(_running)


def wait(timeout: float = 60.0) -> None:
    """Wait until every job this process started has ended, or ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        with _lock:
            threads = list(_running.values())
        if not threads:
            return
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if time.monotonic() >= deadline:
            return
