"""Group commit of the moves that sockets send: one database call per game for all that wait.

The moves are recorded on threads of their own (``RECORDERS``: one with SQLite, whose writers
queue for the file's lock anyway; a few with PostgreSQL, so a game locked by another process's
batch holds up only its own moves). Every other database call of a Daphne's sockets and pages
runs on ONE shared thread (Channels' and Django's thread-sensitive calls: the joins, the
snapshots), and a lecture hall's joins there must not hold up the moves of the rooms already
playing. Each move joins its game's queue; a call on a recording thread locks the game, takes
every move of the game queued by then and records them with ``services.round_submit_moves``
(one transaction, the game locked once, one resolve): with several processes, the moves that
arrive while another process's batch holds the game go in this batch, not the next. Moves that
arrive after the take are taken by the next call. There is no timer: a lone move is sent on at
once, and the busier the thread, the more moves share one call.

A socket's ``submit`` returns only once the transaction holding its move has committed (or the
move was refused): the move is acknowledged when it is durably stored, never before. Several
processes each keep their own queues; the game row's lock orders their calls.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import NamedTuple

from channels.db import database_sync_to_async
from django.conf import settings

from permitgame import services, sqlite
from permitgame.errors import GameError
from permitgame.services import MoveCommand, MoveResult, Outcome


class Waiter(NamedTuple):
    """A move waiting to be recorded, its socket's answer, and whether that socket is a page's."""

    command: MoveCommand
    future: asyncio.Future[Outcome]
    page: bool


logger = logging.getLogger(__name__)

#: The threads that record the moves (``settings.MOVE_THREADS``), apart from the shared one.
RECORDERS = ThreadPoolExecutor(max_workers=settings.MOVE_THREADS, thread_name_prefix="moves")


@dataclass(slots=True)
class _Queue:
    """One game's moves waiting for the database thread, in arrival order."""

    waiting: list[Waiter] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)  # the thread takes, sockets add
    running: bool = False  # a drain task is on its way (touched on the event loop only)


#: Per event loop (a process has one; tests start several), game id -> queue.
_queues: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, _Queue]] = (
    weakref.WeakKeyDictionary()
)
#: Drain tasks running (a task nobody refers to may be collected before it ends).
_tasks: set[asyncio.Task[None]] = set()


async def submit(game_id: int, command: MoveCommand, *, page: bool = False) -> MoveResult:
    """Record ``command`` (a move of game ``game_id``) with the others waiting; its result.

    ``page``: the move came from a player's page, whose answer is its own card (see ``_record``).

    Raises:
        GameError: the move was refused (nothing of it stored).
        Exception: recording the batch failed (a bug; nothing of the batch stored).
    """
    loop = asyncio.get_running_loop()
    queues = _queues.setdefault(loop, {})
    queue = queues.setdefault(game_id, _Queue())
    future: asyncio.Future[Outcome] = loop.create_future()
    with queue.lock:
        queue.waiting.append(Waiter(command, future, page))
    if not queue.running:
        queue.running = True
        task = loop.create_task(_drain(game_id, queue, queues))
        _tasks.add(task)
        task.add_done_callback(_tasks.discard)
    outcome = await future
    if isinstance(outcome, GameError):
        raise outcome
    return outcome


def waiting(game_id: int) -> int:
    """Return how many moves of ``game_id`` wait in this event loop's queue (for tests)."""
    queue = _queues.get(asyncio.get_running_loop(), {}).get(game_id)
    if queue is None:
        return 0
    with queue.lock:
        return len(queue.waiting)


async def _drain(game_id: int, queue: _Queue, queues: dict[int, _Queue]) -> None:
    """Record the game's waiting moves, batch after batch, until none is left.

    Runs on the event loop; only ``submit`` (same loop) adds moves, so once the queue is seen
    empty here it stays empty until this task has ended.
    """
    loop = asyncio.get_running_loop()
    try:
        while True:
            record = database_sync_to_async(_record, thread_sensitive=False, executor=RECORDERS)
            await record(game_id, queue, loop)
            with queue.lock:
                if not queue.waiting:
                    break
    except BaseException:
        # Cancelled (the process shuts down): nobody will record the moves still waiting.
        with queue.lock:
            left, queue.waiting = queue.waiting, []
        for waiter in left:
            waiter.future.cancel()
        raise
    finally:
        queue.running = False
        if queues.get(game_id) is queue:
            del queues[game_id]


def _record(game_id: int, queue: _Queue, loop: asyncio.AbstractEventLoop) -> None:
    """On a recording thread: take every waiting move of the game and record them together.

    The moves are taken once the game is locked and its rows read (``round_submit_moves``), so
    those that arrive while another process's batch holds the lock go in this batch. The
    sockets are answered once the transaction has committed (handed to the event loop), and
    the event the batch may have caused (its moves ended a phase) is published from here, so
    the game's events keep their order. Which goes first:

    - The event, when the batch's moves all came from programs (the JSON protocol): it is
      rendered for the whole room while no answer is being sent. Answered first, a hall's
      batch had the process's event loop send its hundred acks while this thread rendered,
      two threads taking turns at one interpreter, and the phase change reached the room 2-3
      ms later; the acks wait for the publish instead, a few milliseconds, on the phase's last
      batch only (bench/RESULTS.md, "After c05aa45").
    - The answers, when a move came from a page: a page's answer is its own card and flash,
      and an event with pages in the room renders every page's card first (15-20 ms for 200),
      which the students' answers waited for (ack p95 98-127 ms against 73-88).
    """
    taken: list[Waiter] = []

    def take() -> list[MoveCommand]:
        with queue.lock:
            taken.extend(queue.waiting)
            queue.waiting = []
        return [waiter.command for waiter in taken]

    later: list[Callable[[], None]] = []
    outcomes: list[Outcome] | Exception
    try:
        with sqlite.ahead():  # a room playing goes before a hall's joins (the embedded SQLite)
            outcomes = services.round_submit_moves(
                game_id=game_id, commands=take, publish_later=later
            )
    except Exception as error:  # answered to every waiting socket; the transaction rolled back
        if not taken:  # it failed before taking them (the lock): they are answered with it
            take()
        outcomes = error
    if not taken:
        return
    answers_first = any(waiter.page for waiter in taken)  # a page's answer is its own card
    if answers_first:
        loop.call_soon_threadsafe(_answer, taken, outcomes)
    services.publish_deferred(later)  # the moves are committed: their event, in order
    if not answers_first:
        loop.call_soon_threadsafe(_answer, taken, outcomes)


def _answer(taken: list[Waiter], outcomes: list[Outcome] | Exception) -> None:
    for index, waiter in enumerate(taken):
        future = waiter.future
        if future.done():  # the socket went away; its move is recorded all the same
            continue
        if isinstance(outcomes, Exception):
            future.set_exception(outcomes)
        else:
            future.set_result(outcomes[index])
