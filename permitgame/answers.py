"""A page's answer to its own move: its seat's fragments, rendered with the others waiting.

A browser's move is answered with the seat's own panel and action card as they now stand
(``broadcast.own_html_many``), so the student sees the bid taken at once; the room hears of it
only as coalesced progress. Rendered one answer at a time, each read the game and built the
public view again, one after another on the process's shared database thread: in a hall of
200 phones about 1-4 ms each, and the last of a phase's answers waited about half a second
(``bench.load --pages``). Here the answers a process owes for one game are rendered together,
on a thread of their own: the game read once, its screens built once, then each seat's
fragments. Answers asked for meanwhile wait for the next round; there is no timer, so a lone
answer goes at once and the busier the process, the more answers share a round (as
``movequeue`` does for the moves).
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from concurrent.futures import ThreadPoolExecutor

from channels.db import database_sync_to_async
from django.db import close_old_connections

from permitgame import broadcast

logger = logging.getLogger(__name__)

#: The thread that renders the answers (not the shared one, where joins and snapshots queue).
RENDERER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="answers")

Waiter = tuple[int, int, "asyncio.Future[str]"]  # seat id, the last event its page had, answer

#: Per event loop (a process has one; tests start several): game id -> the answers waiting.
_waiting: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, list[Waiter]]] = (
    weakref.WeakKeyDictionary()
)
#: Rendering tasks running (a task nobody refers to may be collected before it ends).
_tasks: set[asyncio.Task[None]] = set()


async def own_html(game_id: int, seat_id: int, seen: int) -> str:
    """Return seat ``seat_id``'s own fragments now, rendered with the other answers waiting.

    ``seen``: the last event the seat's page has been sent. "" if the page is behind an event
    of the game (that event brings its fragments: a move that ended the phase), if the seat is
    no longer in the game, or if rendering failed (logged): the answer is then the flash alone.
    """
    loop = asyncio.get_running_loop()
    games = _waiting.setdefault(loop, {})
    future: asyncio.Future[str] = loop.create_future()
    waiting = games.get(game_id)
    if waiting is None:  # no round of this game under way: start one
        games[game_id] = [(seat_id, seen, future)]
        task = loop.create_task(_render(game_id, games))
        _tasks.add(task)
        task.add_done_callback(_tasks.discard)
    else:
        waiting.append((seat_id, seen, future))
    return await future


def _round(game_id: int, seen: dict[int, int]) -> dict[int, str]:
    """One round, on the answers' thread: the fragments, then the thread's connection let go.

    Let go as the settings say (``close_old_connections``: back to PostgreSQL's pool after each
    round; SQLite's is kept), from inside the round: with only the wrapper's clean-up around
    it, the round's connection stayed open between rounds (the tests' PostgreSQL found a
    session still open at the end), holding one of the pool's connections for good.
    """
    try:
        return broadcast.own_html_many(game_id, seen)
    finally:
        close_old_connections()


async def _render(game_id: int, games: dict[int, list[Waiter]]) -> None:
    """Render the game's waiting answers, round after round, until none is left."""
    render = database_sync_to_async(_round, thread_sensitive=False, executor=RENDERER)
    try:
        while games[game_id]:
            taken, games[game_id] = games[game_id], []
            try:
                # A page that asked twice in a round: the fragments are the same for both.
                html = await render(game_id, {seat_id: seen for seat_id, seen, _ in taken})
            except Exception:  # answered with the flash alone; the next event mends the page
                logger.exception("the answers of game %s could not be rendered", game_id)
                html = {}
            for seat_id, _, future in taken:
                if not future.done():  # (the socket went away meanwhile)
                    future.set_result(html.get(seat_id, ""))
    finally:
        for _, _, future in games.pop(game_id, []):  # cancelled: nobody renders these
            future.cancel()
