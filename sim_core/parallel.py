"""Both cores for a sweep: a list of jobs split over forked worker processes.

Here: ``fork_map``. Threads do not help a sweep: its numpy calls are many and short, and handing
the GIL back and forth between two threads at that rate costs more than the second core gives
(``np.partition`` even keeps the GIL). Forked processes share the parent's memory copy-on-write,
start in milliseconds and send back only their results. Where ``os.fork`` does not exist the
jobs run in this process. Not here: what the jobs do (``sweep.py``).
"""

from __future__ import annotations

import os
import pickle
import select
from collections.abc import Callable, Sequence
from typing import TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


def fork_map(
    function: Callable[[Item], Result],
    items: Sequence[Item],
    *,
    workers: int,
    on_done: Callable[[int], None] | None = None,
) -> list[Result]:
    """Return ``[function(item) for item in items]``, computed by up to ``workers`` processes.

    The items are split into contiguous parts, one per process; this process computes the first
    part while forked children compute the others and send their results back pickled. A child's
    exception is raised here. ``function`` must not rely on state changed after the fork.

    Args:
        function: the job.
        items: the jobs' arguments, in order.
        workers: processes to use, this one included (1: no fork).
        on_done: called with the number of items finished so far, in this process, as they finish
            (children report through a pipe).
    """
    parts = _split(items, workers)
    if len(parts) <= 1 or not hasattr(os, "fork"):
        return _serial(function, items, on_done)
    progress_read, progress_write = os.pipe()
    children: list[tuple[int, int]] = []
    for part in parts[1:]:
        result_read, result_write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: compute its part, send it, and leave without cleanup
            os.close(result_read)
            os.close(progress_read)
            _child(function, part, result_write, progress_write)
        os.close(result_write)
        children.append((pid, result_read))
    os.close(progress_write)
    os.set_blocking(progress_read, False)
    finished = 0

    def drain() -> bool:
        """Count the children's finished items; return False once every child has closed."""
        nonlocal finished
        try:
            chunk = os.read(progress_read, 1 << 16)
        except BlockingIOError:
            return True
        finished += len(chunk)
        return bool(chunk)

    results: list[Result] = []
    try:
        for item in parts[0]:
            results.append(function(item))
            finished += 1
            drain()
            if on_done is not None:
                on_done(finished)
        payloads = _collect(children, progress_read, drain, on_done, lambda: finished)
    finally:
        os.close(progress_read)
        for pid, _ in children:
            os.waitpid(pid, 0)
    for payload in payloads:
        status, value = pickle.loads(payload)
        if status == "error":
            raise value
        results.extend(value)
    return results


def _split(items: Sequence[Item], workers: int) -> list[Sequence[Item]]:
    count = max(1, min(workers, len(items)))
    bounds = [round(index * len(items) / count) for index in range(count + 1)]
    return [items[bounds[index] : bounds[index + 1]] for index in range(count)]


def _serial(
    function: Callable[[Item], Result],
    items: Sequence[Item],
    on_done: Callable[[int], None] | None,
) -> list[Result]:
    results = []
    for index, item in enumerate(items, start=1):
        results.append(function(item))
        if on_done is not None:
            on_done(index)
    return results


def _child(
    function: Callable[[Item], Result],
    part: Sequence[Item],
    result_write: int,
    progress_write: int,
) -> None:
    status = 1
    try:
        try:
            results = []
            for item in part:
                results.append(function(item))
                os.write(progress_write, b".")
            payload = pickle.dumps(("ok", results), protocol=pickle.HIGHEST_PROTOCOL)
        except BaseException as exc:  # sent to the parent, which raises it
            try:
                payload = pickle.dumps(("error", exc))
            except Exception:
                payload = pickle.dumps(("error", RuntimeError(repr(exc))))
        view = memoryview(payload)
        while view:
            view = view[os.write(result_write, view) :]
        status = 0
    finally:
        os._exit(status)  # no atexit handlers, no flushing of the parent's buffers


def _collect(
    children: list[tuple[int, int]],
    progress_read: int,
    drain: Callable[[], bool],
    on_done: Callable[[int], None] | None,
    finished: Callable[[], int],
) -> list[bytes]:
    """Read every child's pickled result to its end, reporting progress meanwhile."""
    buffers = {fd: bytearray() for _, fd in children}
    open_fds = set(buffers)
    progress_open = True
    try:
        while open_fds:
            watched = [*open_fds, progress_read] if progress_open else [*open_fds]
            ready, _, _ = select.select(watched, [], [])
            for fd in ready:
                if fd == progress_read:
                    progress_open = drain()
                    if on_done is not None:
                        on_done(finished())
                    continue
                chunk = os.read(fd, 1 << 20)
                if chunk:
                    buffers[fd] += chunk
                else:
                    open_fds.discard(fd)
    finally:
        for fd in buffers:
            os.close(fd)
    payloads = [bytes(buffers[fd]) for _, fd in children]
    if any(not payload for payload in payloads):
        raise RuntimeError("a sweep worker process ended without sending its results")
    return payloads
