"""One relay channel per process: an event reaches each process once, and its sockets from there.

``broadcast.publish`` sends an event as ONE channel message to the game's hub group
(``realtime.hub_group``): the public part once and each seat's own part keyed by seat id
(``realtime.RoomEvent``). Every process with sockets of the game has its hub channel in that
group; its ``Hub`` reads the channel and hands each local socket of a seat the event as the
consumers have always taken it (``{"type": "game.send", "seq", "version", "html", "json"}``:
the public part followed by the seat's own), so a seat's socket gets its own part and never
another's. With Redis this is one group send per event however large the room (as Phoenix
PubSub sends one message per node and fans out locally), where one per seat cost several
Redis round trips each on the sending side and as many reads on the receiving one.

An event handed out here restarts this process's progress clock of the game
(``broadcast.event_handed_out``), as publishing one does in the process that published it.

A process's hub starts with its first socket (``hub_for``). It keeps game id -> seat id -> the
sockets open here; its channel joins a game's hub group when the first socket of the game
connects here, is renewed within the layer's group expiry while sockets of the game stay, and
leaves when the last one closes: a process without sockets of a game is sent nothing of it.

Nothing is lost silently (docs/protocol.md, "Delivery"): in memory, a hub message refused by a
full channel is counted and logged by the layer (``permitgame.layers``); with Redis (pub/sub,
pushed to the hub as it is published) a process whose subscription dropped misses what was
sent meanwhile, and the layer logs the error and subscribes again; an event a socket's own
queue has no room for is counted and logged here. A ready socket is sent its event by the
hub's task at once (``Receiver.give``); one that is sending its snapshot queues its events, and
one whose reader has not caught up for a long while has a full queue. Either way the socket's
next event or progress beacon shows the gap in the seq numbers and the client asks for a
snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

from autobahn.exception import Disconnected
from channels.exceptions import StopConsumer
from channels.layers import get_channel_layer
from channels.utils import await_many_dispatch
from django.conf import settings

from permitgame import broadcast, realtime

logger = logging.getLogger(__name__)

#: The group expiry assumed when the layer does not say (Channels' default, a day).
DEFAULT_GROUP_EXPIRY = 86400
#: The key of a game's consoles among its seats in ``Hub.games`` (no seat has it): a console
#: registers as ``add(game_id, CONSOLE, socket)`` and is handed the console's updates only.
CONSOLE = -1
#: The longest wait before the hub reads its channel again after reads that failed.
READ_RETRY_SECONDS = 1.0
_pause = asyncio.sleep  # the hub's waits between failed reads (tests watch them)


class Receiver(Protocol):
    """A socket the hub hands events to (``consumers.SeatConsumer``)."""

    async def give(self, event: dict[str, Any]) -> bool:
        """Send or queue ``event`` for the socket; return False if its queue was full (dropped)."""
        ...

    def take(self, event: dict[str, Any]) -> bool:
        """Queue ``event`` for the socket; return False if its queue was full (dropped)."""
        ...


class Inbox:
    """The socket side of the hub, for a Channels consumer: its client and the hub's queue.

    Channels' ``AsyncConsumer.__call__`` with the hub's queue (``take``) as the second source in
    place of a channel of the layer: the hub is the one reader of the layer in the process.
    (With Redis each socket's channel was read by a task of its own, all taking turns at the
    process's one blocking read; a socket that closed cancelled its task mid-read, and a message
    Redis had just handed that read, for any socket or the hub, was lost.) Messages are handled
    one at a time, as Channels does; the queue is bounded like a channel (a full one drops,
    counted by the hub). ``channel_name`` is a name of the socket's own, for its presence.
    """

    channel_layer_alias: str
    channel_layer: Any
    channel_name: str
    scope: Any
    base_send: Any
    _inbox: asyncio.Queue[dict[str, Any]] | None = None
    dispatch: Callable[[dict[str, Any]], Awaitable[None]]  # the consumer's (Channels')

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.scope = scope
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        self._inbox = asyncio.Queue(maxsize=socket_capacity(self.channel_layer))
        self.channel_name = f"socket.{secrets.token_hex(12)}"
        self.base_send = send
        with contextlib.suppress(StopConsumer):  # the socket closed
            await await_many_dispatch([receive, self._inbox.get], self.dispatch)

    def take(self, event: dict[str, Any]) -> bool:
        """Queue a message the hub hands this socket; return False if its queue is full."""
        assert self._inbox is not None
        try:
            self._inbox.put_nowait(event)
        except asyncio.QueueFull:
            return False
        return True


class Hub:
    """The relay of one process's channel layer (see the module's docstring).

    Attributes:
        channel: the hub's channel name (None until the first socket).
        games: game id -> seat id -> the sockets of that seat open in this process (and
            ``CONSOLE`` -> the game's consoles open here).
        joined: the games whose hub group holds ``channel``.
        received: hub messages read; ``dropped``: events a socket's full queue refused.
    """

    def __init__(self, layer: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.layer = layer
        self.loop = loop
        realtime.serve_on(loop)
        self.channel: str | None = None
        self.games: dict[int, dict[int, list[Receiver]]] = {}
        self.joined: set[int] = set()
        self.received = 0
        self.dropped = 0
        self._logged = -float("inf")
        self._lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []

    # ------------------------------------------------------------------ sockets

    async def add(self, game_id: int, seat_id: int, receiver: Receiver) -> None:
        """Hand ``receiver`` the events of its seat; return once the hub is in the game's group.

        A socket calls this before it reads its snapshot, so no event falls between the two.
        """
        await self.start()
        self.games.setdefault(game_id, {}).setdefault(seat_id, []).append(receiver)
        await self._sync(game_id)

    async def discard(self, game_id: int, seat_id: int, receiver: Receiver) -> None:
        """Stop handing ``receiver`` events; the last socket of a game takes the hub out of it."""
        seats = self.games.get(game_id, {})
        receivers = seats.get(seat_id, [])
        if receiver in receivers:
            receivers.remove(receiver)
        if not receivers:
            seats.pop(seat_id, None)
        if not seats:
            self.games.pop(game_id, None)
        await self._sync(game_id)

    async def _sync(self, game_id: int) -> None:
        # One change of membership at a time, decided from the sockets open now: a socket that
        # connects while the game's last one here closes never finds the hub out of the group.
        async with self._lock:
            wanted = game_id in self.games
            if wanted and game_id not in self.joined:
                assert self.channel is not None
                await self.layer.group_add(realtime.hub_group(game_id), self.channel)
                self.joined.add(game_id)
            elif not wanted and game_id in self.joined:
                assert self.channel is not None
                self.joined.discard(game_id)
                await self.layer.group_discard(realtime.hub_group(game_id), self.channel)

    # ------------------------------------------------------------------ the channel

    async def start(self) -> None:
        """Read the hub channel (made on first use) and renew its groups, if not yet doing so."""
        if self._tasks:
            return
        channel = self.channel or await self.layer.new_channel()
        if self._tasks:  # another socket started it meanwhile
            return
        self.channel = channel
        self._tasks = [
            self.loop.create_task(self._read()),
            self.loop.create_task(self._renew()),
        ]

    async def _read(self) -> None:
        assert self.channel is not None
        failures = 0
        while True:
            try:
                message = await self.layer.receive(self.channel)
            except asyncio.CancelledError:
                raise
            except Exception:  # a layer that is down: try again, the sockets resync after
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    # Cancelled while the layer was reading (channels-redis may turn the
                    # cancellation into an error of its own): stop, as cancelled.
                    raise
                logger.exception("the hub channel %s could not be read", self.channel)
                # A read that failed once (a dropped connection) is tried again at once: every
                # socket of the process waits on this loop. One that keeps failing (the layer
                # is down) waits longer each time, up to ``READ_RETRY_SECONDS``.
                await _pause(min(READ_RETRY_SECONDS, 0.05 * (2**failures - 1)))
                failures += 1
                continue
            failures = 0
            try:
                await self.deliver(message)
            except Exception:
                logger.exception("a hub message could not be handed to the sockets")

    async def _renew(self) -> None:
        """Add the hub to its games' groups again within the layer's group expiry."""
        expiry = float(getattr(self.layer, "group_expiry", DEFAULT_GROUP_EXPIRY))
        while True:
            await asyncio.sleep(max(0.5, expiry / 3))
            async with self._lock:
                for game_id in sorted(self.joined):
                    assert self.channel is not None
                    try:
                        await self.layer.group_add(realtime.hub_group(game_id), self.channel)
                    except Exception:
                        logger.exception("renewing the hub of game %s failed", game_id)

    async def deliver(self, message: dict[str, Any]) -> int:
        """Hand each local socket of the message's seats its event; return how many took it.

        The event is what a seat's channel message was: the public part, then the seat's own.
        One task hands it to every socket (``Receiver.give``): a socket that can forward it at
        once sends it from here, without a wake-up of its own.
        """
        kind = message.get("type")
        if kind not in (realtime.HUB_EVENT, realtime.HUB_SEATS_MOVED, realtime.HUB_HOST):
            logger.warning("the hub ignored a message of type %r", kind)
            return 0
        self.received += 1
        seats = self.games.get(int(message["game"]))
        if not seats:
            return 0
        if kind == realtime.HUB_HOST:
            return self._to_consoles(seats.get(CONSOLE, ()), message)
        if kind == realtime.HUB_SEATS_MOVED:
            return self._seats_moved(seats, message["seats"])
        parts: dict[str, Any] = message["seats"]
        public_json: list[str] = list(message["json"])
        public_html: str = message["html"]
        everyone = bool(message.get("everyone"))
        handed = 0
        for seat_id, receivers in list(seats.items()):
            if seat_id == CONSOLE:
                continue  # the consoles have updates of their own (``HUB_HOST``)
            if everyone:  # a progress: the same message for every socket of the game
                event = {
                    "type": message["kind"],
                    "seq": message["seq"],
                    "version": message["version"],
                    "html": public_html,
                    "json": public_json,
                }
            else:
                part = parts.get(str(seat_id))
                if part is None:
                    continue  # not a joined seat at this event (a bot plays it, or it just joined)
                event = {
                    "type": message["kind"],
                    "seq": message["seq"],
                    "version": message["version"],
                    "html": public_html + part["html"] if part["html"] else "",
                    "json": public_json + list(part["json"]),
                }
            for receiver in list(receivers):
                try:
                    taken = await receiver.give(event)
                except Disconnected:  # closed meanwhile: its disconnect takes it out of the hub
                    continue
                except Exception:  # one socket's failure must not keep the event from the rest
                    logger.exception("an event could not be handed to seat %s's socket", seat_id)
                    continue
                if taken:
                    handed += 1
                else:
                    self.note_dropped(f"seat {seat_id}'s socket queue full")
        if not everyone:  # an event: this process's progress of the game counts from it
            broadcast.event_handed_out(int(message["game"]), settled=bool(message.get("settled")))
        return handed

    def _seats_moved(self, seats: dict[int, list[Receiver]], seat_ids: list[int]) -> int:
        """Tell the local sockets of these seats that their role changed (they reconnect).

        Queued behind what each socket has yet to forward (``take``), not sent from here: the
        socket answers it by closing, which takes it out of the hub.
        """
        moved = {"type": realtime.SEAT_MOVED}
        return sum(
            self._queue(seats.get(int(seat_id), ()), moved, f"seat {seat_id}'s socket")
            for seat_id in seat_ids
        )

    def _to_consoles(self, consoles: Iterable[Receiver], message: dict[str, Any]) -> int:
        """Hand the game's consoles open here a console update (queued: they are few)."""
        update = {key: message[key] for key in ("seq", "version", "html", "json")}
        update["type"] = message["kind"]
        return self._queue(consoles, update, f"game {message['game']}'s console")

    def _queue(self, receivers: Iterable[Receiver], event: dict[str, Any], who: str) -> int:
        """Queue ``event`` for each of ``receivers`` (``take``); return how many took it."""
        took = 0
        for receiver in list(receivers):
            if receiver.take(event):
                took += 1
            else:
                self.note_dropped(f"{who} queue full")
        return took

    def note_dropped(self, what: str) -> None:
        """Count an event a socket's queue refused; log it once a second at most."""
        self.dropped += 1
        now = time.monotonic()
        if now - self._logged >= 1.0:
            self._logged = now
            logger.warning("the hub dropped an event (%s; %s in all)", what, self.dropped)

    def stop(self) -> None:
        """Stop reading its channel (a hub of a loop that ended; ``start`` reads it again)."""
        for task in self._tasks:
            with contextlib.suppress(RuntimeError):  # its loop is closed: nothing runs anyway
                task.cancel()
        self._tasks = []


#: The hub of each channel layer in this process (a process has one layer and one loop; tests
#: make a layer per settings change and a loop per test).
_hubs: dict[int, Hub] = {}


def hub_for(layer: Any) -> Hub:
    """Return this process's hub of ``layer`` (made with the first socket; call in the loop)."""
    loop = asyncio.get_running_loop()
    hub = _hubs.get(id(layer))
    if hub is None or hub.layer is not layer or hub.loop is not loop:
        if hub is not None:
            hub.stop()
        hub = _hubs[id(layer)] = Hub(layer, loop)
    return hub


def socket_capacity(layer: Any) -> int:
    """Return how many events a socket's queue holds: the layer's channel capacity, or
    ``settings.CHANNEL_CAPACITY`` for a layer without one (Redis pub/sub)."""
    return int(getattr(layer, "capacity", None) or settings.CHANNEL_CAPACITY)
