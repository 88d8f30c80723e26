"""The clock loop: every server process fires the deadlines that have passed.

Deadlines are absolute times in the database, so they fire with no browser connected and after
a restart. Every process runs this loop (started with the ASGI app, see ``install``); several
processes may find the same deadline due, and ``services.game_expire_phase`` decides under the
game's row lock, so it fires exactly once. Beside it a second loop sends the rooms' coalesced
progress and keeps the process's sockets alive (``run_progress``), so a slow beat of progress
never holds up a deadline. ``tick`` is one beat of both, which tests call directly with a frozen
clock (``permitgame.clock``) instead of sleeping.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random
import sys
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from channels.db import database_sync_to_async
from django.db import transaction
from django.db.models import Q, QuerySet

from permitgame import broadcast, clock, prepared, realtime, services, sqlite
from permitgame.models import Game, Status

logger = logging.getLogger(__name__)

#: Seconds between two beats of the loop: how late a deadline may fire.
TICK_SECONDS = 0.25

_loop_task: asyncio.Task[None] | None = None
#: The order in which a beat goes through the due games (``tick``).
ORDER = random.Random()


def _clocked() -> QuerySet[Game]:
    """The games the clock serves: running, or a lobby set to start."""
    return Game.objects.filter(Q(status=Status.RUNNING) | Q(status=Status.LOBBY))


# Every beat of every process's clock runs both: compiled once (``permitgame.prepared``).
_DUE: prepared.Prepared[int] = prepared.Prepared(
    lambda now: (
        _clocked().filter(phase_deadline__lte=now).order_by("pk").values_list("pk", flat=True)
    ),
    dt.datetime,
)
_SOONEST_AFTER: prepared.Prepared[dt.datetime] = prepared.Prepared(
    lambda after: (
        _clocked()
        .filter(phase_deadline__gt=after)
        .order_by("phase_deadline")
        .values_list("phase_deadline", flat=True)[:1]
    ),
    dt.datetime,
)


def due_games() -> list[int]:
    """Return the ids of games whose deadline has passed (running, or a lobby set to start)."""
    return _DUE.all(clock.now())


def seconds_to_next_deadline(after: dt.datetime) -> float | None:
    """Return the seconds until the soonest deadline later than ``after``; None: there is none.
    Negative if it has passed already (it fell due after ``after``)."""
    soonest = _SOONEST_AFTER.first(after)
    return None if soonest is None else (soonest - clock.now()).total_seconds()


def tick(*, heartbeat: bool = True, deadlines: bool = True, progress: bool = True) -> int:
    """Run one beat: keep this process's sockets alive, fire every passed deadline, send the
    coalesced progress of the games that changed (``broadcast.flush_due``). The clock's loop
    beats the deadlines alone, the progress loop the other two (``run_forever``).

    The heartbeat comes first: a deadline sees who is present as of now (an absent player's
    seat gets a bot, a present one's a default).

    Returns:
        How many deadlines this call fired (another process may have fired the rest).
    """
    if heartbeat:
        _heartbeat()
    fired = _fire_due() if deadlines else 0
    if progress:
        broadcast.flush_due()
    return fired


def _fire_due() -> int:
    """Fire every passed deadline; return how many this process fired."""
    fired = 0
    # Every due game's phase changes first, then every event is sent. Rooms whose deadlines
    # coincide (a lecture hall's classes started together) all change within the few ms a
    # transaction takes, instead of each waiting behind the sending of the rooms before it and
    # the moves that sending sets off (their players answer the new phase at once).
    sends: list[Callable[[], None]] = []
    # In an order of this beat's own: no room is always the last one served when deadlines
    # coincide, and the clocks of several processes (each skips a game another is firing,
    # ``game_expire_phase``) start on different rooms (20 x 30 on two: 33 and 27 of 60 fired).
    due = due_games()
    ORDER.shuffle(due)
    for game_id in due:
        try:
            with sqlite.ahead():  # before a hall's joins (the embedded SQLite)
                fired += services.game_expire_phase(game_id=game_id, publish_later=sends)
        except Exception:  # one broken game must not stop the clock of the others
            logger.exception("firing the deadline of game %s failed", game_id)
    # Sent once the games' transactions have committed: at once, or, inside a caller's
    # transaction (a test's), when it commits, after each game's own hook has kept its event.
    transaction.on_commit(partial(services.publish_deferred, sends))
    return fired


def _heartbeat() -> None:
    """Keep this process's sockets alive, and note its open consoles, as of now."""
    services.presence_heartbeat(realtime.LOCAL_CHANNELS)
    consoles = set(realtime.LOCAL_HOSTS.values())
    if consoles:
        realtime.note_consoles(consoles)


def _beat() -> float | None:
    """One beat of deadlines, then the seconds to the next one (one thread trip for both).

    The next one is the soonest after the beat began: a deadline that fell due while this beat
    fired the others (two rooms' deadlines 20 ms apart) is fired at once by the next beat, not a
    whole beat later. One due before the beat began was tried in it (fired, or skipped: another
    process is firing it) and waits for the next beat as usual.
    """
    began = clock.now()
    _fire_due()
    return seconds_to_next_deadline(after=began)


async def run_forever(interval: float = TICK_SECONDS) -> None:
    """Fire the deadlines until cancelled, with the progress loop beside it (``run_progress``).

    A beat every ``interval`` seconds; a deadline closer than that is not waited past: the loop
    sleeps until it (so a phase changes at its deadline plus the work of changing it, not up to
    a beat later). The progress and the heartbeat go on in a loop of their own, on a thread of
    their own: under a lecture hall's load a beat of the rooms' progress took up to a quarter
    of a second, and a deadline that passed meanwhile waited for it.
    """
    progress = asyncio.ensure_future(run_progress(interval))
    try:
        while True:
            pause = interval
            try:
                # Its own thread, not the one the sockets' commands share: under a room's load
                # the deadlines still fire on time (each beat is one short transaction a game).
                upcoming = await database_sync_to_async(_beat, thread_sensitive=False)()
                if upcoming is not None:
                    pause = min(interval, max(0.005, upcoming + 0.005))
            except Exception:
                logger.exception("clock loop beat failed")
            await asyncio.sleep(pause)
    finally:
        progress.cancel()


async def run_progress(interval: float = TICK_SECONDS) -> None:
    """Send the games' coalesced progress every ``interval`` seconds until cancelled; keep this
    process's sockets alive every ``HEARTBEAT_SECONDS`` (and purge dead ones now and then)."""
    last_heartbeat = -float("inf")
    beats = 0
    while True:
        heartbeat = time.monotonic() - last_heartbeat >= realtime.HEARTBEAT_SECONDS
        try:
            await database_sync_to_async(tick, thread_sensitive=False)(
                heartbeat=heartbeat, deadlines=False
            )
            if heartbeat:
                last_heartbeat = time.monotonic()
                beats += 1
                if beats % 30 == 0:
                    await database_sync_to_async(services.presence_purge, thread_sensitive=False)()
        except Exception:
            logger.exception("progress loop beat failed")
        await asyncio.sleep(interval)


def _spawn() -> None:
    global _loop_task
    if _loop_task is None:
        _loop_task = asyncio.get_running_loop().create_task(run_forever())
        logger.info("clock loop started")


def install() -> None:
    """Start the loop in this process once Daphne's event loop runs.

    Daphne has no ASGI lifespan, but it runs Twisted's asyncio reactor, which is imported before
    the application: the loop is scheduled with ``reactor.callWhenRunning``, so it starts with
    the server, with or without any request. Elsewhere (tests, management commands) the reactor
    never runs and nothing starts.
    """
    if "twisted.internet.reactor" not in sys.modules:
        return
    from twisted.internet import reactor

    scheduler: Any = reactor
    scheduler.callWhenRunning(lambda: scheduler.callLater(0, _spawn))
