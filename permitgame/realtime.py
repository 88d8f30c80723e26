"""Channel groups and the one way game messages leave the server.

The one group name comes from the function here (STYLE.md: no hand-built group names):
``hub_group`` (the hub channel of each process with sockets of the game: every event, the
coalesced progress, a change of seats' roles and the console's updates, ``permitgame.hub``).
No socket, a player's or the console's, has a channel of its own on the layer. A channel
message to sockets is ``{"type": "game.send" or "game.progress", "seq": s, "version": v,
"html": str, "json": [str, ...]}``: already-rendered bytes for both wire formats, the public part
rendered once per event (STYLE.md §3.6); a consumer forwards the format its client speaks and
drops events the snapshot it sent already holds (``seq``). An event goes to the hub group as ONE
message (``RoomEvent``: the public part once, each seat's own part keyed by its id); each
process's hub hands its sockets the message above, built from the public part and the seat's own.

Also here: presence timing (``CONNECTION_LEASE_SECONDS``, ``HEARTBEAT_SECONDS``) and the set of
sockets open in this process, which the clock loop keeps alive. Not here: what is sent
(``broadcast``).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Coroutine, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from channels_redis.pubsub import RedisPubSubChannelLayer

logger = logging.getLogger(__name__)

#: A socket counts as connected while its row was refreshed this recently.
CONNECTION_LEASE_SECONDS = 30
#: How often each process refreshes the rows of its open sockets.
HEARTBEAT_SECONDS = 10
#: The channel message type of an event (handled by the consumers' ``game_send``).
SEND = "game.send"
#: The channel message type of a coalesced progress message (``game_progress``).
PROGRESS = "game.progress"
#: The channel message type of an event for the processes' hubs (``RoomEvent``).
HUB_EVENT = "hub.event"
#: The channel message type of a change of seats' roles for the processes' hubs.
HUB_SEATS_MOVED = "hub.seats_moved"
#: The channel message type of a console update for the processes' hubs (``HostUpdate``).
HUB_HOST = "hub.host"
#: Tells a seat's sockets that the seat changed role in the lobby (handled by ``seat_moved``):
#: they close, and the client reconnects as its new role.
SEAT_MOVED = "seat.moved"

#: Channel names of the sockets open in this process (the clock loop's heartbeat reads it).
LOCAL_CHANNELS: set[str] = set()
#: Channel name -> game id of the players' sockets open in this process (the clock loop sends
#: these games a progress beacon).
LOCAL_GAMES: dict[str, int] = {}
#: Channel name -> game id of the console sockets open in this process. Each process notes in
#: the cache (shared through Redis by every process) that a game has a console open, renewed by
#: the clock loop's heartbeat: the console's fragments, the largest to render, are rendered only
#: while someone watches them.
LOCAL_HOSTS: dict[str, int] = {}
HOST_LEASE_SECONDS = 3 * HEARTBEAT_SECONDS


def _host_key(game_id: int) -> str:
    return f"console-open-{game_id}"


def note_consoles(game_ids: Iterable[int]) -> None:
    """Note that these games have a console open (call from sync code)."""
    from django.core.cache import cache

    cache.set_many({_host_key(game_id): 1 for game_id in game_ids}, HOST_LEASE_SECONDS)


def console_open(game_id: int) -> bool:
    """Return whether a console of the game is open in some process (within the lease)."""
    from django.core.cache import cache

    return cache.get(_host_key(game_id)) is not None


def _plain(value: Any) -> Any:
    # numpy's scalars (a float64 read from a resolve) as the Python numbers they hold.
    item = getattr(value, "item", None)
    if item is None:
        raise TypeError(f"{type(value).__name__} is not JSON")
    return item()


def dumps(message: Mapping[str, Any]) -> str:
    """Return a game message's JSON text as it goes on the wire (compact; the one encoder).

    (The one message below this layer, ``notfound``'s error for a path that is no socket,
    keeps the standard library's.)

    orjson, about 8x faster than the standard library's encoder on a lab's ``you`` (2 against
    14 us): a room's event is several hundred such texts. Keys that are not strings are written
    as strings, numpy scalars as the numbers they hold, a NaN or an infinity as null.
    """
    return orjson.dumps(message, default=_plain, option=orjson.OPT_NON_STR_KEYS).decode()


def hub_group(game_id: int) -> str:
    """Return the group of the hub channels of the processes with sockets of a game."""
    return f"game-{game_id}-hub"


@dataclass(frozen=True, slots=True)
class HostUpdate:
    """The console's fragments of an update, sent to the game's hubs, which hand them to the
    game's consoles open in their process (the consoles have no channel of their own)."""

    game_id: int
    html: str

    @property
    def group(self) -> str:
        return hub_group(self.game_id)

    @property
    def empty(self) -> bool:
        return not self.html

    def message(self, kind: str, seq: int, version: int) -> dict[str, Any]:
        """Return the hub message."""
        return _hub_message(HUB_HOST, self.game_id, kind, seq, version, self.html, [])


def _hub_message(
    hub_type: str, game_id: int, kind: str, seq: int, version: int, html: str, json: list[str]
) -> dict[str, Any]:
    """Return a message for a game's hubs: what, which game, and the sockets' message."""
    return {
        "type": hub_type,
        "kind": kind,
        "game": game_id,
        "seq": seq,
        "version": version,
        "html": html,
        "json": json,
    }


@dataclass(frozen=True, slots=True)
class SeatPart:
    """One seat's own part of an event: its JSON texts, and its HTML if a browser of it is open."""

    html: str
    json: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RoomEvent:
    """An event for every joined seat of a game, sent once to the game's hub group.

    ``html``/``json``: the public part (the same bytes for every seat; ``html`` only if some
    seat has a browser open); ``seats``: seat id -> its own part. A seat's socket is handed the
    public part followed by its own (``hub.Hub.deliver``), never another seat's.
    """

    game_id: int
    html: str
    json: tuple[str, ...]
    seats: Mapping[int, SeatPart]
    #: The public part alone to every socket of the game (a coalesced progress), ``seats`` empty.
    everyone: bool = False
    #: The event settled a round: each process that hands it out reads the round into its
    #: ledger of the game while the results phase lasts (``broadcast.event_handed_out``).
    settled: bool = False

    @property
    def group(self) -> str:
        return hub_group(self.game_id)

    @property
    def empty(self) -> bool:
        return not self.seats and not self.everyone

    def message(self, kind: str, seq: int, version: int) -> dict[str, Any]:
        """Return the hub message (seat ids as text: the Redis layer's msgpack maps need it)."""
        return {
            **_hub_message(HUB_EVENT, self.game_id, kind, seq, version, self.html, [*self.json]),
            "everyone": self.everyone,
            "settled": self.settled,
            "seats": {
                str(seat_id): {"html": part.html, "json": list(part.json)}
                for seat_id, part in self.seats.items()
            },
        }


def send(update: RoomEvent | HostUpdate, *, seq: int, version: int, kind: str = SEND) -> None:
    """Send an update to the game's hubs (call from sync code, e.g. an on_commit callback)."""
    layer = get_channel_layer()
    if layer is None or update.empty:
        return
    _run(layer, layer.group_send(update.group, update.message(kind, seq, version)))


#: Each sending thread's own event loop, for a layer that may be used from any loop (Redis).
_thread = threading.local()


def _own_loop(layer: Any) -> bool:
    """Whether ``layer`` may send from a thread's own event loop (channels-redis keeps its
    connections per loop), rather than only from the server's loop (the in-memory layer)."""
    return isinstance(layer, RedisPubSubChannelLayer)


#: The event loop of this process's sockets (``hub.Hub``), where the in-memory layer lives.
_server_loop: asyncio.AbstractEventLoop | None = None


def serve_on(loop: asyncio.AbstractEventLoop) -> None:
    """Note the loop of this process's sockets (the in-memory layer's sends go through it)."""
    global _server_loop
    _server_loop = loop


def _run(layer: Any, sending: Coroutine[Any, Any, None]) -> None:
    """Run ``sending`` to the end from sync code (a thread that records moves, the clock's).

    With Redis, on this thread's own event loop: the events a thread commits go out at once,
    not after whatever the server's loop is busy with (a room's hand-out, other sockets'
    moves), which under a lecture hall's load delayed them by tens of milliseconds. Otherwise on
    the server's loop: the sockets' loop if it runs (from any thread of the process, as the
    console's does), else through ``async_to_sync``.
    """
    if not _own_loop(layer):
        loop = _server_loop
        if loop is not None and loop.is_running() and not _in_loop(loop):
            asyncio.run_coroutine_threadsafe(_await(sending), loop).result()
            return
        async_to_sync(_await)(sending)
        return
    loop = getattr(_thread, "loop", None)
    if loop is None or loop.is_closed():
        loop = _thread.loop = asyncio.new_event_loop()
    loop.run_until_complete(sending)


async def _await(sending: Coroutine[Any, Any, None]) -> None:
    await sending


def _in_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def send_seat_moved(game_id: int, seat_ids: Iterable[int]) -> None:
    """Tell the sockets of these seats to reconnect (their role changed; an on_commit callback).

    One message to the game's hubs (``HUB_SEATS_MOVED``), each handing the seats' sockets in
    its process a ``seat.moved``.
    """
    layer = get_channel_layer()
    if layer is None:
        return
    message = {"type": HUB_SEATS_MOVED, "game": game_id, "seats": sorted(seat_ids)}
    _run(layer, layer.group_send(hub_group(game_id), message))
