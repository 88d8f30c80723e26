"""Websocket consumers: parse, delegate to a service, relay. No game rules, no game state.

Two wire formats over one design: ``ApiConsumer`` (``/ws/api/games/<code>/?token=...``) speaks
the JSON protocol of ``docs/protocol.md``; ``PlayConsumer`` (``/ws/games/<code>/``) sends HTML
fragments for htmx's ws extension and takes ``ws-send`` forms. A socket registers with its
process's hub (``permitgame.hub``), which hands it every event and progress and tells it when
its seat changes role; on connect it gets the seat's full
snapshot, then every update rendered for its audiences (``broadcast``), dropping any older than
the snapshot. The only state a consumer keeps: its seat and game ids and the snapshot version.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from permitgame import answers, broadcast, delivery, hub, movequeue, realtime, selectors, services
from permitgame.errors import BadRequest, GameError, InvalidInput, UnknownCommand
from permitgame.forms import (
    AskForm,
    AuditForm,
    BeliefForm,
    BidForm,
    DecideForm,
    KeepForm,
    clean_json,
    form_errors,
)
from permitgame.models import Action, Seat
from permitgame.services import MoveCommand, MoveResult

#: Close code for a socket whose game or token is unknown.
CLOSE_UNKNOWN = 4003
#: Close code for a socket opened with an option the server does not know (``frames``).
CLOSE_INVALID = 4400
#: Close code asking the client to reconnect: its seat changed role in the lobby and it must
#: join its new role's groups. (1012, "service restart", may not be sent by a server's socket
#: here; a code of 4000-4999 is the application's own: the pages reload, client.py reconnects.)
CLOSE_RECONNECT = 4012
NOT_AN_OBJECT = "Every message must be a JSON object."
TOO_DEEP = "This message is nested too deeply to be read."
SERVER_ERROR = "The server could not process this command; nothing was changed."
ROLE_CHANGED = "The instructor changed your role; loading your new screen."
FRAMES_INVALID = 'frames: "event" (each event\'s messages as one frame), or leave it out.'

logger = logging.getLogger(__name__)


class ServerError(GameError):
    """The server failed on a command (a bug, logged); nothing was changed."""

    code = "server_error"


ACK_TEXT = {
    "bid": "Bid received.",
    "ask": "Ask received.",
    "keep": "You keep your permit.",
    "decide": "Choice received.",
    "audit": "Audits received.",
}


def authenticate(code: str, token: str | None, session: Any) -> Seat:
    """Return the seat of game ``code`` held with ``token`` (or the session's token for it)."""
    if token:
        return selectors.seat_by_code_and_token(code, token)
    return selectors.seat_from_session(selectors.game_by_code(code), session)


CommandForm = type[BidForm | DecideForm | AuditForm | BeliefForm | AskForm | KeepForm]


def _cleaned(form_class: CommandForm, content: dict[str, Any]) -> Any:
    """Return a command's fields as its form cleans them.

    Raises:
        InvalidInput: a field is missing or unreadable; also whatever else parsing a field
            raised (a number too large for a float, a nesting too deep): a frame the form did not
            foresee is refused like any bad field, never with a traceback.
    """
    fast = clean_json(form_class, content)
    if fast is not None:  # the plain JSON of a well-formed command: what the form would clean
        return fast
    try:
        form = form_class(content)
        valid = form.is_valid()
    except (ArithmeticError, ValueError, TypeError, RecursionError) as error:
        raise InvalidInput(f"This command could not be read ({type(error).__name__}).") from None
    if not valid:
        raise InvalidInput(form_errors(form))
    data = form.cleaned_data
    try:
        json.dumps(data, allow_nan=False)  # what is logged and echoed must be plain JSON
    except (ValueError, TypeError, OverflowError, RecursionError) as error:
        raise InvalidInput(f"This command could not be read ({type(error).__name__}).") from None
    return data


#: Each command's form and the log action it becomes (an ask without an amount keeps).
_FORMS: dict[str, tuple[CommandForm, str]] = {
    "bid": (BidForm, Action.BID),
    "ask": (AskForm, Action.ASK),  # MODEL.md §3b: a granted permit's holder in trading
    "keep": (KeepForm, Action.ASK),
    "decide": (DecideForm, Action.DECIDE),
    "belief": (BeliefForm, Action.BELIEF),
    "audit": (AuditForm, Action.AUDIT),
}


def parse_command(seat_id: int, content: dict[str, Any]) -> MoveCommand:
    """Return a command's move, its shape checked (no database work: before the queue).

    Raises:
        UnknownCommand, InvalidInput: not a command, or a field missing or unreadable.
    """
    command = content.get("type")
    if not isinstance(command, str) or command not in _FORMS:
        raise UnknownCommand(
            f"Unknown command {command!r}; send one of: bid, ask, keep, decide, audit, belief."
            if command is not None
            else 'Every message needs a "type": bid, ask, keep, decide or audit.'
        )
    form_class, action = _FORMS[command]
    data = _cleaned(form_class, content)
    payload: dict[str, Any]
    if command in ("bid", "ask"):
        payload = {"amount": data["amount"]}
    elif command == "keep":
        payload = {"amount": None}
    elif command == "decide":
        payload = {"run": data["run"]}
    elif command == "belief":
        payload = {"percent": int(data["percent"])}
    else:
        payload = {"labs": sorted({player_id - 1 for player_id in data["labs"]})}
    return MoveCommand(seat_id=seat_id, action=action, round_no=data["round"], payload=payload)


def ack_message(command: str, move: MoveCommand, result: MoveResult) -> dict[str, Any]:
    """Return the ``ack`` of a recorded move (or of a repeat of the logged one)."""
    payload = result.payload
    echo: dict[str, Any]
    if command in ("bid", "ask"):
        echo = {"amount": payload["amount"]}
    elif command == "keep":
        echo = {}
    elif command == "decide":
        echo = {"run": payload["run"]}
    elif command == "belief":
        echo = {"percent": payload["percent"]}
    else:
        echo = {"labs": [lab + 1 for lab in payload["labs"]]}
    return {
        "type": "ack",
        "command": command,
        "round": move.round_no,
        **echo,
        "duplicate": result.duplicate,
    }


class SeatConsumer(hub.Inbox, AsyncWebsocketConsumer):  # type: ignore[misc]
    """One socket of one seat; subclasses choose the wire format.

    It reads its client and what the process's hub hands it (``hub.Inbox``: no channel of its
    own on the layer): the game's events and progress, and a change of its seat's role.

    Sequence numbers (docs/protocol.md, "Delivery"): every event reaches the socket as one
    message stamped with the game's ``seq``, handed over by the process's hub (``give``); the
    socket forwards it unless the snapshot it sent already holds it. Progress messages carry the
    seq of the last event; one that is older than what was forwarded is dropped. Events and
    progress are forwarded in seq order (``delivery.SeqStream``: one that arrives ahead of an
    event waits for it, for a grace period), so the client sees a gap only when an event was
    really lost; it then sends ``{"type": "sync"}`` to get a fresh snapshot.
    """

    fmt = "json"

    seat_id: int | None = None
    game_id: int | None = None
    stream: delivery.SeqStream | None = None
    _release: asyncio.TimerHandle | None = None
    _release_at: float | None = None
    _expiring: asyncio.Future[None] | None = None  # kept: the loop holds tasks weakly
    _forwarding: asyncio.Lock | None = None
    _hub: hub.Hub | None = None
    _snapshotting = 0  # snapshots being read or sent

    async def give(self, event: dict[str, Any]) -> bool:
        """Forward an event the hub hands this socket at once if it can, else queue it (``take``).

        At once when nothing could come between: the socket has sent its snapshot and is not
        sending one, none of the hub's events waits in its queue, and it is not forwarding.
        Then the hub's one task sends it, instead of waking the socket's reader for one
        message (a new task and a wait over its sources, per socket per event: most of what a
        room's event cost its process). An event that still overtakes one being read from
        the queue is put back in order by the stream (``delivery.SeqStream``). Returns False
        if the queue was full (dropped).
        """
        if (
            self.stream is not None
            and not self._snapshotting
            and self._inbox is not None
            and self._inbox.empty()
            and (self._forwarding is None or not self._forwarding.locked())
        ):
            await self.dispatch(event)  # game_send or game_progress
            return True
        return self.take(event)

    @property
    def seq(self) -> int:
        """The last event this socket forwarded (or its snapshot held)."""
        return self.stream.seq if self.stream is not None else 0

    @seq.setter
    def seq(self, value: int) -> None:
        # A snapshot was sent (``send_snapshot``): the events it holds are not forwarded.
        if self.stream is None:
            self.stream = delivery.SeqStream()
        self.stream.snapshot(value)

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Handle one message, without Channels' hop to the database thread first.

        Channels' ``AsyncConsumer.dispatch`` runs ``close_old_connections`` before every
        message on the one thread that all of a process's websocket database work shares: each
        event fanned out to a room and each command would wait there behind the moves and
        snapshots of everyone. Every database call of these consumers goes through
        ``database_sync_to_async``, which closes old connections itself, on that thread.
        """
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def connect(self) -> None:
        code = self.scope["url_route"]["kwargs"]["code"]
        query = parse_qs(self.scope.get("query_string", b"").decode())
        token = (query.get("token") or [None])[0]
        await self.accept()
        try:
            # A read of two rows, in a thread of its own: not queued on the database thread
            # that the room's moves and snapshots share. The hub takes the socket before the
            # snapshot is read, so no event can fall between the two.
            seat = await database_sync_to_async(authenticate, thread_sensitive=False)(
                code, token, self.scope.get("session")
            )
        except GameError as error:
            await self.send_error(error)
            await self.close(code=CLOSE_UNKNOWN)
            return
        self.seat_id, self.game_id = seat.pk, seat.game_id
        if self.channel_layer is not None:  # the events: through this process's hub
            self._hub = hub.hub_for(self.channel_layer)
            await self._hub.add(seat.game_id, seat.pk, self)
        realtime.LOCAL_CHANNELS.add(self.channel_name)
        realtime.LOCAL_GAMES[self.channel_name] = seat.game_id
        # One trip to the database thread for the connection and the snapshot (a room filling
        # up queues every socket's database work on that thread).
        await self.send_snapshot(connect=True)

    def _snapshot(self, connect: bool) -> tuple[int, list[str]]:
        assert self.seat_id is not None and self.game_id is not None
        seat = Seat(pk=self.seat_id, game_id=self.game_id)  # both read the row themselves
        if connect:
            html = self.fmt == "html"
            services.seat_connect(seat=seat, channel_name=self.channel_name, html=html)
        return broadcast.snapshot(seat, self.fmt)

    async def send_snapshot(self, *, connect: bool = False) -> None:
        """Send the seat's whole screen; later events are forwarded from its seq on."""
        # Meanwhile the hub queues the socket's events (``give``): none goes out before the
        # screen it follows.
        self._snapshotting += 1
        try:
            seq, texts = await database_sync_to_async(self._snapshot)(connect)
            self.seq = max(self.seq, seq)
            for text in texts:
                await self.send(text_data=text)
        finally:
            self._snapshotting -= 1

    async def disconnect(self, code: int) -> None:
        if self._release is not None:
            self._release.cancel()
        if self.seat_id is None:
            return
        if self._hub is not None:
            assert self.game_id is not None
            await self._hub.discard(self.game_id, self.seat_id, self)
            self._hub = None
        realtime.LOCAL_CHANNELS.discard(self.channel_name)
        realtime.LOCAL_GAMES.pop(self.channel_name, None)
        await database_sync_to_async(services.seat_disconnect)(channel_name=self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.seat_id is None:
            return
        try:
            content = json.loads(text_data or "")
        except RecursionError:
            await self.send_error(InvalidInput(TOO_DEEP))
            return
        except ValueError:
            await self.send_error(BadRequest(NOT_AN_OBJECT))
            return
        if not isinstance(content, dict):
            await self.send_error(BadRequest(NOT_AN_OBJECT))
            return
        content.pop("HEADERS", None)  # added by htmx's ws-send
        if content.get("type") == "sync":
            await self.send_snapshot()
            return
        assert self.game_id is not None
        try:
            # Shape first (no database); then the game's queue: the move is recorded with the
            # others that wait for the database thread, and acknowledged once committed.
            move = parse_command(self.seat_id, content)
            result = await movequeue.submit(self.game_id, move, page=self.fmt == "html")
            ack = ack_message(content["type"], move, result)
        except GameError as error:
            await self.send_error(error, command=content.get("type"))
            return
        except Exception:  # a bug must answer the client, not close the socket with 1011
            logger.exception("command of seat %s failed", self.seat_id)
            await self.send_error(ServerError(SERVER_ERROR), command=content.get("type"))
            return
        await self.send_ack(ack)

    async def game_send(self, event: dict[str, Any]) -> None:
        """Forward an event ("game.send") in seq order, unless the snapshot held it."""
        await self._deliver(lambda stream: stream.event(event))

    async def game_progress(self, event: dict[str, Any]) -> None:
        """Forward a coalesced progress message ("game.progress") after the events it follows."""
        await self._deliver(lambda stream: stream.progress(event))

    async def _deliver(
        self, take: Callable[[delivery.SeqStream], list[tuple[dict[str, Any], bool]]]
    ) -> None:
        # Events and progress may arrive out of order (sent by different processes and
        # threads): ``SeqStream`` puts them back in order and says when a gap is real.
        if self.stream is None:
            self.stream = delivery.SeqStream()
        if self._forwarding is None:
            self._forwarding = asyncio.Lock()
        async with self._forwarding:
            snapshots = self.stream.snapshots
            for message, gap in take(self.stream):
                if self.stream.snapshots != snapshots:
                    break  # a gap was mended with the whole screen, newer than the rest
                await self.forward(message, gap=gap)
            self._arm()

    def _arm(self) -> None:
        """Forward what is held once its grace period ends (the events it waits for were lost)."""
        assert self.stream is not None
        deadline = self.stream.deadline()
        if self._release is not None and deadline == self._release_at:
            return
        if self._release is not None:
            self._release.cancel()
            self._release = None
        self._release_at = deadline
        if deadline is not None:
            loop = asyncio.get_running_loop()
            # A little after the deadline: the loop may run a timer up to its clock's
            # resolution early, and ``expire`` forwards nothing before the deadline.
            delay = max(0.0, deadline - self.stream.clock()) + 0.01
            self._release = loop.call_later(delay, self._expire)

    def _expire(self) -> None:
        self._release = self._release_at = None  # fired: the next ``_arm`` sets a new one
        self._expiring = asyncio.ensure_future(self._deliver(lambda stream: stream.expire()))

    async def seat_moved(self, event: dict[str, Any]) -> None:
        """The seat changed role in the lobby ("seat.moved"): tell the client, then close."""
        await self.send_moved()
        await self.close(code=CLOSE_RECONNECT)

    # --- format-specific
    async def forward(self, event: dict[str, Any], *, gap: bool) -> None:
        # The JSON client sees the gap in the seq numbers and asks for a snapshot itself.
        for text in event["json"]:
            await self.send(text_data=text)

    async def send_moved(self) -> None:
        await self.send_json_message({"type": "reconnect", "reason": ROLE_CHANGED})

    async def send_ack(self, ack: dict[str, Any]) -> None:
        await self.send_json_message(ack)

    async def send_error(self, error: GameError, *, command: Any = None) -> None:
        message: dict[str, Any] = {"type": "error", "code": error.code, "message": error.message}
        if isinstance(command, str):
            message["command"] = command
        await self.send_json_message(message)

    async def send_json_message(self, message: dict[str, Any]) -> None:
        """Send a reply (not an event): it carries the seq of the last event forwarded."""
        await self.send(text_data=realtime.dumps({**message, "seq": self.seq}))


class ApiConsumer(SeatConsumer):
    """The JSON protocol for programs (docs/protocol.md)."""

    fmt = "json"
    #: ``?frames=event``: each event (and each progress) as one frame, a JSON array of its
    #: messages, as the pages get an event's fragments in one frame. A hall's phase change is
    #: then one frame per socket, not three to five (each costs the server ~45 us to send).
    event_frames = False

    async def connect(self) -> None:
        query = parse_qs(self.scope.get("query_string", b"").decode())
        frames = query.get("frames")
        if frames is not None and frames != ["event"]:
            await self.accept()
            await self.send_error(InvalidInput(FRAMES_INVALID))
            await self.close(code=CLOSE_INVALID)
            return
        self.event_frames = frames is not None
        await super().connect()

    async def forward(self, event: dict[str, Any], *, gap: bool) -> None:
        texts = event["json"]
        if self.event_frames and texts:  # the texts are JSON objects: joined, one array
            await self.send(text_data="[" + ",".join(texts) + "]")
            return
        await super().forward(event, gap=gap)


class PlayConsumer(SeatConsumer):
    """Browsers: HTML fragments for htmx's ws extension, forms sent with ``ws-send``.

    A gap in the events (one was lost on the way: a full channel) is mended here at once with
    the whole screen, so the page needs no script for it; play.js checks the ``#seq`` marker
    as well and asks for ``sync`` if a gap reaches it.
    """

    fmt = "html"

    async def forward(self, event: dict[str, Any], *, gap: bool) -> None:
        if gap:
            await self.send_snapshot()
        elif event["html"]:
            await self.send(text_data=event["html"])

    async def send_ack(self, ack: dict[str, Any]) -> None:
        # The move is recorded: the seat's own panel and action card show it at once (the
        # room hears of it only as coalesced progress).
        text = ACK_TEXT.get(ack["command"], "Received.")
        assert self.seat_id is not None
        assert self.game_id is not None
        own = await answers.own_html(self.game_id, self.seat_id, self.seq)
        await self.send(text_data=broadcast.flash_html(text, error=False) + own)

    async def send_error(self, error: GameError, *, command: Any = None) -> None:
        await self.send(text_data=broadcast.flash_html(error.message, error=True))

    async def send_moved(self) -> None:
        await self.send(text_data=broadcast.reload_html(ROLE_CHANGED))
