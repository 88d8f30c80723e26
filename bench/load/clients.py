"""Protocol clients of the benchmark: players of a game, and the sockets of the bare floor.

Every loop here is bounded: a game is abandoned at its time limit, a floor fire waits at most
``FIRE_TIMEOUT`` seconds, a join is tried at most ``JOIN_ATTEMPTS`` times and a handshake
``PLAYER_HANDSHAKE_ATTEMPTS`` times (a floor socket's ``HANDSHAKE_ATTEMPTS``). Clients move the
moment the server says they owe a move, as bots do, and record when each message arrived
(``time.time()``: the servers run on the same machine, so a deadline in a message is on the same
clock).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import json
import random
import re
import secrets
import socket
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection
from websockets.frames import DATA_OPCODES, Frame
from websockets.typing import Origin

from permitgame.client import event_frames, frame_messages

#: The events a client must not miss (docs/protocol.md section 2.1), counted per client.
TRACKED = ("phase", "market", "audit", "round_results", "your_results", "game_over")
PHASES = ("bidding", "compliance", "audit", "results")
#: Messages that are not events: they carry the seq of the last event sent before them.
NOT_EVENTS = frozenset({"progress", "ack", "error", "reconnect"})
JOIN_ATTEMPTS = 3
#: Retries of a join refused for the server's rate limit (429), 5 s apart.
RATE_LIMITED_ATTEMPTS = 24
JOIN_TIMEOUT = 30.0
HANDSHAKE_ATTEMPTS = 3
#: A player's tries of its websocket handshake: as a phone's page or client.py does, it keeps
#: trying (within the game's time limit) rather than give up after three; every failure is
#: still counted and reported ("failed handshakes"), but one player who gave up no longer keeps
#: the whole room from starting, so the rest of the game is measured too.
PLAYER_HANDSHAKE_ATTEMPTS = 30
HANDSHAKE_TIMEOUT = 30.0
FIRE_TIMEOUT = 10.0
#: Players joining at the same moment, over all rooms (a hall's students do not all tap "Join"
#: within the same millisecond; and one client process can hold only so many handshakes).
JOINING_AT_ONCE = 100
#: What a client sends when a sequence number shows it missed something (the server's snapshot
#: command, docs/protocol.md); a server without it answers `unknown_command`, harmlessly.
RESYNC_COMMAND: dict[str, Any] | None = {"type": "sync"}
#: How a player's socket takes the events (docs/protocol.md, section 2): ``event``, each event
#: as one frame of its messages (``?frames=event``, as the pages take an event's fragments in
#: one frame); ``message``, one frame per message.
FRAMES = "event"
#: ``--pages``: the labs play on the pages' sockets (HTML fragments, ``PagePlayer``), as a
#: lecture hall's phones do; the governor keeps the JSON protocol.
PAGES = False
#: ``--console``: each game's console is open throughout, as a class's projector shows it.
CONSOLE = False

#: Linux's option for a socket's receive times (``socket`` names it on some builds only).
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
_STAMP_SPACE = socket.CMSG_SPACE(16)


class _StampingSocket:
    """A connected socket whose ``recv`` also notes when the bytes it returns arrived.

    The kernel stamps each packet as it reaches the socket (``SO_TIMESTAMPNS``); ``recvmsg``
    hands the stamp of the last packet read beside the bytes. Everything else is the socket's.
    """

    def __init__(self, sock: socket.socket, note: Callable[[float], None]) -> None:
        self._sock = sock
        self._note = note

    def recv(self, size: int) -> bytes:
        data, ancillary, _, _ = self._sock.recvmsg(size, _STAMP_SPACE)
        for level, kind, value in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(value) >= 16:
                seconds, nanoseconds = struct.unpack("qq", value[:16])
                self._note(seconds + nanoseconds / 1e9)
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class StampedConnection(ClientConnection):
    """A client socket that knows when each message reached this machine (``arrived``).

    The benchmark's one client process plays hundreds of seats: a seat's coroutine runs only
    when the process gets to it, after the other seats' work (their messages parsed, their
    moves sent), so a time taken when ``recv`` returns measures this process as much as the
    servers. Each message is stamped instead with the kernel's receive time of the last bytes
    read with it (``SO_TIMESTAMPNS``, read with the bytes): messages read in one go all carry
    the last one's time, never a time before their own. The game's seats and the floor's are
    timed alike. Where the kernel gives no stamp, the time the bytes were read is used.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._arrivals: collections.deque[float] = collections.deque()
        self._read_at: float | None = None
        self.kernel_stamps = False

    def connection_made(self, transport: Any) -> None:
        sock = getattr(transport, "_sock", None)  # asyncio's socket transport reads it
        if isinstance(sock, socket.socket) and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
                transport._sock = _StampingSocket(sock, self._note_read)
                self.kernel_stamps = True
        super().connection_made(transport)

    def _note_read(self, at: float) -> None:
        self._read_at = at

    def data_received(self, data: bytes) -> None:
        if not self.kernel_stamps:
            self._read_at = time.time()
        super().data_received(data)

    def process_event(self, event: Any) -> None:
        if isinstance(event, Frame) and event.opcode in DATA_OPCODES and event.fin:
            self._arrivals.append(self._read_at if self._read_at is not None else time.time())
        super().process_event(event)

    def arrived(self) -> float:
        """When the message ``recv`` just returned reached this machine."""
        return self._arrivals.popleft() if self._arrivals else time.time()


WS_OPTIONS: dict[str, Any] = {
    "compression": None,  # browsers' deflate is not what is measured; saves the client's CPU
    "ping_interval": None,  # phones do not ping: a slow pong must not close a socket here
    "max_queue": 4096,
    "open_timeout": HANDSHAKE_TIMEOUT,
    "close_timeout": 2,
    "create_connection": StampedConnection,
}


def parse_time(value: str | None) -> float | None:
    if not value:
        return None
    return dt.datetime.fromisoformat(value).timestamp()


async def post_json(url: str, path: str, body: dict[str, Any], timeout: float) -> tuple[int, Any]:
    """POST a JSON body over one HTTP/1.1 connection (Connection: close); return status, JSON."""
    host, port = url.removeprefix("http://").split(":")
    data = json.dumps(body).encode()
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), timeout)
    try:
        writer.write(
            (
                f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
                "Connection: close\r\n\r\n"
            ).encode()
            + data
        )
        raw = await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    head, _, payload = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    if b"transfer-encoding: chunked" in head.lower():
        chunks, rest = [], payload
        while rest:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                break
            chunks.append(rest[:size])
            rest = rest[size + 2 :]
        payload = b"".join(chunks)
    return status, json.loads(payload or b"{}")


# ------------------------------------------------------------------------------------ game


@dataclass
class Player:
    """One seat: joins over HTTP, plays over one websocket, records what arrived and when."""

    code: str
    nickname: str
    role: str
    join_url: str  # the server this client joins through
    ws_base: str  # the server this client's websocket goes to
    rng: random.Random
    player_id: int | None = None
    ws_url: str = ""
    join_seconds: float | None = None
    join_failures: int = 0
    handshake_failures: int = 0
    connected_at: float | None = None
    received: dict[tuple[Any, ...], float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    deadlines: dict[tuple[int, str], float] = field(default_factory=dict)
    #: (round, phase) -> when the server changed to that phase (its ``phase`` message's
    #: ``started``: the server's own record of the change, on this machine's clock).
    started: dict[tuple[int, str], float] = field(default_factory=dict)
    sent: dict[tuple[int, str], float] = field(default_factory=dict)
    acks: list[float] = field(default_factory=list)
    #: Per message read: how long it waited in this client process between reaching the
    #: machine and its seat's coroutine (``StampedConnection``; not part of what is timed).
    client_delays: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    pending: float | None = None
    gaps: int = 0
    resyncs: int = 0
    resync_wanted: bool = False
    last_seq: int | None = None
    states: int = 0
    winners: dict[int, set[int]] = field(default_factory=dict)
    signals: dict[str, Any] | None = None
    you: dict[str, Any] = field(default_factory=dict)
    position: tuple[int, str] | None = None
    finished: bool = False
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    async def join(self) -> None:
        key = secrets.token_urlsafe(16)
        body = {"nickname": self.nickname, "role": self.role, "join_key": key}
        started = time.time()
        attempt = limited = 0
        while attempt < JOIN_ATTEMPTS:
            try:
                status, data = await post_json(
                    self.join_url, f"/api/games/{self.code}/join", body, JOIN_TIMEOUT
                )
            except (OSError, TimeoutError, ValueError, IndexError):
                self.join_failures += 1
                attempt += 1
                await asyncio.sleep(0.5 * attempt)
                continue
            if status == 429 and limited < RATE_LIMITED_ATTEMPTS:
                # The server's join limit per address (permitgame/throttle.py): every client
                # here has the same address, as a class behind one router does. Wait, retry.
                limited += 1
                self.errors["join rate_limited"] = self.errors.get("join rate_limited", 0) + 1
                await asyncio.sleep(5.0)
                continue
            if status == 201:
                self.player_id = int(data["player_id"])
                self.ws_url = self.socket_url(
                    self.ws_base.replace("http://", "ws://"), data["token"]
                )
                self.join_seconds = time.time() - started
                return
            self.join_failures += 1
            raise RuntimeError(f"join of {self.nickname} refused: {status} {data}")
        raise RuntimeError(f"join of {self.nickname} failed {JOIN_ATTEMPTS} times")

    def socket_url(self, base: str, token: str) -> str:
        """The websocket this seat plays on: the JSON protocol's."""
        url = f"{base}/ws/api/games/{self.code}/?token={token}"
        return event_frames(url) if FRAMES == "event" else url

    async def play(self, stop: asyncio.Event) -> None:
        """Connect (retrying a failed handshake), play until game_over or ``stop``."""
        for attempt in range(PLAYER_HANDSHAKE_ATTEMPTS):
            if stop.is_set():
                return
            try:
                async with websockets.connect(
                    self.ws_url, origin=Origin(self.ws_base), **WS_OPTIONS
                ) as socket:
                    self.connected_at = time.time()
                    await self._converse(socket, stop)
                    return
            except (OSError, TimeoutError, websockets.exceptions.InvalidHandshake) as error:
                self.handshake_failures += 1
                status = getattr(getattr(error, "response", None), "status_code", "")
                why = f"handshake {type(error).__name__} {status}".strip()
                self.errors[why] = self.errors.get(why, 0) + 1
                await asyncio.sleep(min(5.0, 0.5 * (attempt + 1)) * (0.5 + self.rng.random()))
            except websockets.exceptions.ConnectionClosed:
                self.errors["closed"] = self.errors.get("closed", 0) + 1
                if self.finished or stop.is_set():
                    return
                await asyncio.sleep(0.2)

    async def _converse(self, socket: Any, stop: asyncio.Event) -> None:
        # One wait for the whole conversation, not one per message: a client reads its socket
        # as the floor's sockets do (``floor``), so the two sides of the ratio pay the same
        # cost per message in this one client process.
        reader = asyncio.ensure_future(self._read(socket))
        reader.add_done_callback(_retrieve)
        stopper = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({reader, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
            if not reader.done():  # stopped: the game's time is up
                reader.cancel()
        if reader.done() and not reader.cancelled():
            reader.result()  # a closed socket raises: ``play`` connects again

    def arrival(self, socket: Any) -> float:
        """When the message ``socket.recv`` just returned reached this machine."""
        now = socket.arrived()
        self.client_delays.append(time.time() - now)
        return now

    async def _read(self, socket: Any) -> None:
        while not self.finished:
            text = await socket.recv()
            now = self.arrival(socket)
            # An event's messages one at a time, as if each were a frame: a move is sent (and
            # noted) as soon as a message calls for it, so the next one does not call for it
            # again (a hall's lab moves on its ``phase`` or on its ``you``, whichever says so).
            for message in frame_messages(text):
                for command in self.take(message, now):
                    if command.get("type") in ("bid", "decide", "audit"):
                        moved = time.time()
                        self.sent[(int(command["round"]), _PHASE_OF[command["type"]])] = moved
                        self.pending = moved
                    await socket.send(json.dumps(command))

    # -------------------------------------------------------------- what arrived

    def take(self, message: dict[str, Any], now: float) -> list[dict[str, Any]]:
        """Record one message; return the commands to send."""
        kind = str(message.get("type"))
        self.counts[kind] = self.counts.get(kind, 0) + 1
        out: list[dict[str, Any]] = []
        seq = message.get("seq")
        if isinstance(seq, int) and kind != "state":
            out += self.note_seq(seq, event=kind not in NOT_EVENTS)
        if kind == "state":
            self.note_snapshot(seq if isinstance(seq, int) else None)
            game = message.get("game") or {}
            self.you = dict(message.get("you") or {})
            if message.get("signals"):
                self.signals = message["signals"]
            if game.get("status") == "finished":
                self.finished = True
            if game.get("round") and game.get("phase"):
                self.position = (int(game["round"]), str(game["phase"]))
                self._note_deadline(self.position, game)
            out += self._act(_listed(game))
            return out
        if kind == "phase":
            key = (int(message["round"]), str(message["phase"]))
            self.received.setdefault(("phase", *key), now)
            self._note_deadline(key, message)
            began = parse_time(message.get("started"))
            if began is not None:
                self.started.setdefault(key, began)
            self.position = key
            out += self._act(_listed(message))
        elif kind == "market":
            round_no = int(message["round"])
            self.received.setdefault(("market", round_no), now)
            # A lecture hall's market counts its holders (``winners`` null): ``you`` says.
            if message.get("winners") is not None:
                self.winners[round_no] = {int(w) for w in message["winners"]}
        elif kind in ("audit", "round_results", "your_results"):
            self.received.setdefault((kind, int(message["round"])), now)
        elif kind == "game_over":
            self.received.setdefault(("game_over",), now)
            self.finished = True
        elif kind == "signals":
            self.signals = message
            out += self._act(None)
        elif kind == "you":
            self.you = {**self.you, **message}
            out += self._act(None)
        elif kind == "ack":
            if self.pending is not None:
                self.acks.append(now - self.pending)
                self.pending = None
        elif kind == "error":
            code = str(message.get("code"))
            self.errors[code] = self.errors.get(code, 0) + 1
            self.pending = None
        return out

    def note_seq(self, seq: int, *, event: bool) -> list[dict[str, Any]]:
        """Check a message's seq against the last event's; return the resync to send, if any.

        docs/protocol.md, "Delivery": an event carries the seq of the event before it or one
        more; the other messages carry the seq of the last event sent before them.
        """
        out: list[dict[str, Any]] = []
        if self.last_seq is None:
            return out
        if seq > self.last_seq + (1 if event else 0):
            self.gaps += 1
            if RESYNC_COMMAND is not None and not self.resync_wanted:
                self.resync_wanted = True
                out.append(dict(RESYNC_COMMAND))
        if event and seq > self.last_seq:
            self.last_seq = seq
        return out

    def note_snapshot(self, seq: int | None) -> None:
        """A snapshot (``state``): where the socket now stands, a resync answered."""
        self.states += 1
        if self.resync_wanted:
            self.resyncs += 1
            self.resync_wanted = False
        if seq is not None:
            self.last_seq = seq
        self.ready.set()

    def _note_deadline(self, key: tuple[int, str], message: dict[str, Any]) -> None:
        deadline = parse_time(message.get("deadline"))
        if deadline is not None:
            self.deadlines[key] = deadline

    def _owes(self, key: tuple[int, str], waiting_for: Any) -> bool:
        if isinstance(waiting_for, list):
            return self.player_id in waiting_for
        if self.you.get("round") == key[0] and self.you.get("phase") == key[1]:
            return bool(self.you.get("owes_move")) and not self.you.get("bot_playing")
        if key[1] == "compliance" and key[0] in self.winners:
            return self.player_id not in self.winners[key[0]]
        return key[1] == "bidding" and self.role == "lab"

    def _act(self, waiting_for: Any) -> list[dict[str, Any]]:
        if self.position is None or self.finished or self.position in self.sent:
            return []
        round_no, phase = self.position
        if self.role == "lab" and phase in ("bidding", "compliance"):
            if not self._owes(self.position, waiting_for):
                return []
            if phase == "bidding":
                wealth = float(self.you.get("wealth") or 1.0)
                value = float(self.you.get("net_value") or 0.5)
                amount = round(self.rng.uniform(0.0, max(0.0, min(wealth, value))), 4)
                return [{"type": "bid", "round": round_no, "amount": amount}]
            return [{"type": "decide", "round": round_no, "run": self.rng.random() < 0.5}]
        if self.role == "governor" and phase == "audit":
            signals = self.signals
            if not signals or int(signals.get("round", -1)) != round_no:
                return []
            flagged = [int(row["player_id"]) for row in signals["labs"] if row.get("signal")]
            cap = signals.get("max_audits")
            return [
                {
                    "type": "audit",
                    "round": round_no,
                    "labs": flagged[:cap] if cap is not None else flagged,
                }
            ]
        return []

    def expected(self, rounds: int, *, saw_start: bool) -> list[tuple[Any, ...]]:
        """The tracked events this seat must receive in a game of ``rounds`` rounds."""
        keys: list[tuple[Any, ...]] = []
        for round_no in range(1, rounds + 1):
            for phase in PHASES:
                if (round_no, phase) != (1, "bidding") or saw_start:
                    keys.append(("phase", round_no, phase))
            keys += [("market", round_no), ("round_results", round_no)]
            keys.append(
                ("audit", round_no) if self.role == "governor" else ("your_results", round_no)
            )
        keys.append(("game_over",))
        return keys


def _listed(position: dict[str, Any]) -> list[int] | None:
    """Whom a ``phase`` or a ``state``'s game waits for, if it names them all (else None).

    In a room of more than 40 seats it names only the governor and counts the rest
    (docs/protocol.md, ``phase``): a lab then reads its own ``you``, which follows.
    """
    waiting_for = position.get("waiting_for")
    if not isinstance(waiting_for, list) or position.get("waiting") != len(waiting_for):
        return None
    return waiting_for


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Mark a receive's outcome as seen (a socket closed while the game was being stopped)."""
    if not task.cancelled():
        task.exception()


_SEQ = re.compile(r'id="seq"[^>]*data-seq="(\d+)" data-kind="(\w+)"')
_PHASE = re.compile(r'id="phase"[^>]*data-status="(\w+)" data-round="(\d+)" data-phase="(\w*)"')


class PagePlayer(Player):
    """A lab on its page's socket (``/ws/games/<code>/``): the HTML fragments a phone's htmx takes.

    It reads what a page shows: the ``#seq`` marker of each frame (an event's number: a gap is
    a lost event, mended with ``sync`` as play.js does), the ``#phase`` bar (round, phase,
    status), the ``#flash`` that answers its move, and its action card: a bid form in bidding, the
    run-or-idle forms in compliance, each sent the moment it is shown, as ``ws-send`` sends a
    form (its fields as text). Only the phase changes and the game's end are told apart in the
    fragments, so those are the events it counts (``expected``); its seq numbers cover the rest.
    """

    def socket_url(self, base: str, token: str) -> str:
        return f"{base}/ws/games/{self.code}/?token={token}"

    async def _read(self, socket: Any) -> None:
        while not self.finished:
            text = await socket.recv()
            now = self.arrival(socket)
            for command in self.take_html(str(text), now):
                if command.get("type") in ("bid", "decide"):
                    moved = time.time()
                    self.sent[(int(command["round"]), _PHASE_OF[command["type"]])] = moved
                    self.pending = moved
                await socket.send(json.dumps(command))

    def take_html(self, text: str, now: float) -> list[dict[str, Any]]:
        """Record one frame of fragments; return the commands to send."""
        out: list[dict[str, Any]] = []
        marker = _SEQ.search(text)
        kind = marker.group(2) if marker else "none"
        self.counts[kind] = self.counts.get(kind, 0) + 1
        if marker is not None:
            if kind == "snapshot":
                self.note_snapshot(int(marker.group(1)))
            else:  # an event, or a progress (the seq of the last event)
                out += self.note_seq(int(marker.group(1)), event=kind == "event")
        bar = _PHASE.search(text)
        if bar is not None:
            status, round_no, phase = bar.group(1), int(bar.group(2)), bar.group(3)
            if status == "finished":
                self.received.setdefault(("game_over",), now)
                self.finished = True
            elif round_no and phase:
                self.received.setdefault(("phase", round_no, phase), now)
                self.position = (round_no, phase)
        if 'class="flash flash-ok"' in text and self.pending is not None:
            self.acks.append(now - self.pending)
            self.pending = None
        elif 'class="flash flash-error"' in text:
            self.errors["error"] = self.errors.get("error", 0) + 1
            self.pending = None
        if self.position is None or self.finished or self.position in self.sent:
            return out
        round_no, phase = self.position
        form = {"HEADERS": {"HX-Request": "true"}, "round": str(round_no)}
        if phase == "bidding" and 'id="bid-form"' in text:  # within any lab's starting wealth
            out.append({**form, "type": "bid", "amount": f"{self.rng.uniform(0.0, 0.5):.4f}"})
        elif phase == "compliance" and 'value="decide"' in text:
            out.append({**form, "type": "decide", "run": str(self.rng.random() < 0.5).lower()})
        return out

    def expected(self, rounds: int, *, saw_start: bool) -> list[tuple[Any, ...]]:
        """The phase changes and the game's end (the events a page's fragments tell apart)."""
        return [
            key
            for key in super().expected(rounds, saw_start=saw_start)
            if key[0] in ("phase", "game_over")
        ]


_PHASE_OF = {"bid": "bidding", "decide": "compliance", "audit": "audit"}
_NEXT = {"bidding": "compliance", "compliance": "audit", "audit": "results"}


@dataclass(frozen=True)
class PhaseChange:
    """A phase ended by moves, as the clients noted it: its moves sent, the next phase's
    arrivals, and the server's stamps of the change (``started``)."""

    round_no: int
    phase: str
    following: str
    sent: list[float]
    got: list[float]
    began: list[float]


@dataclass
class GameRun:
    """One game played by ``players``: the governor first, labs after; the last lab starts it."""

    code: str
    players: list[Player]
    rounds: int
    join_started: float = 0.0
    joined_at: float | None = None
    start_sent: float | None = None
    complete: bool = False
    #: ``--console``: the game's console, open throughout (frames and bytes it was sent).
    console_frames: int = 0
    console_bytes: int = 0
    console_error: str | None = None
    console_finished: bool = False  # its last update showed the game over

    def happened(self) -> set[tuple[Any, ...]]:
        """The tracked events some client of the game received (a seat's own: its round's)."""
        keys = {key for player in self.players for key in player.received}
        for key in list(keys):
            if key[0] == "round_results":
                keys |= {("audit", key[1]), ("your_results", key[1])}
        return keys

    def lost(self) -> int:
        """Events that happened but never reached a client that was connected for them.

        A game cut off by its time limit counts only what happened before (``games ended``
        says it was cut off).
        """
        happened = self.happened()
        total = 0
        for player in self.players:
            if player.player_id is None or player.connected_at is None:
                continue
            saw_start = player is not self.players[-1]
            total += sum(
                key not in player.received and key in happened
                for key in player.expected(self.rounds, saw_start=saw_start)
            )
        return total

    def noted(self, field: str, key: tuple[Any, ...]) -> list[float]:
        """The times the players noted under ``key`` in ``field`` (sent, received, started,
        deadlines)."""
        return [getattr(p, field)[key] for p in self.players if key in getattr(p, field)]

    def phase_changes(self) -> Iterator[PhaseChange]:
        """Each phase ended by moves that some client saw end, in order."""
        for round_no in range(1, self.rounds + 1):
            for phase, following in _NEXT.items():
                sent = self.noted("sent", (round_no, phase))
                got = self.noted("received", ("phase", round_no, following))
                if sent and got:
                    began = self.noted("started", (round_no, following))
                    yield PhaseChange(round_no, phase, following, sent, got, began)

    def phase_latencies(self, *, from_last_move: bool = False) -> list[float]:
        """Per phase ended by moves: the phase change -> the next phase at the last client.

        The change is the server's (``started`` of the next phase's ``phase`` message), as the
        floor is timed from its server's ``group_send``. ``from_last_move``: from the last move
        of the phase leaving its client instead, which adds that move's own way to the
        database (its queue, its batch, the lock) to the phase change's way to the players.
        """
        out = []
        for change in self.phase_changes():
            start = max(change.sent) if from_last_move else min(change.began, default=None)
            if start is not None:
                out.append(max(change.got) - start)
        return out

    def deadline_lateness(self) -> list[float]:
        """Per results phase (ended by its deadline): deadline -> next event at the last client."""
        out = []
        for round_no in range(1, self.rounds + 1):
            deadlines = self.noted("deadlines", (round_no, "results"))
            nxt = ("phase", round_no + 1, "bidding") if round_no < self.rounds else ("game_over",)
            got = self.noted("received", nxt)
            if deadlines and got:
                out.append(max(got) - min(deadlines))
        return out

    def deadline_changes(self) -> list[float]:
        """Per results phase followed by a round: deadline -> the server's change (its
        ``started``). What ``deadline_lateness`` adds to it is the event's way to the last
        client."""
        out = []
        for round_no in range(1, self.rounds):
            deadlines = self.noted("deadlines", (round_no, "results"))
            began = self.noted("started", (round_no + 1, "bidding"))
            if deadlines and began:
                out.append(min(began) - min(deadlines))
        return out


def make_runs(
    codes: list[str], *, players: int, rounds: int, game_urls: list[str], seed: int
) -> list[GameRun]:
    """Each game's seats: its governor, then ``players`` labs (the last starts the game).

    Joins and sockets are spread over the servers: a seat joins through one and connects its
    socket to the next, so every room has sockets in every process.
    """
    rng = random.Random(seed)
    runs: list[GameRun] = []
    count = 0
    for code in codes:
        seats = []
        for index in range(players + 1):
            role = "governor" if index == 0 else "lab"
            join_url = game_urls[count % len(game_urls)]
            ws_base = game_urls[(count + 1) % len(game_urls)]
            count += 1
            seats.append(
                (PagePlayer if PAGES and role == "lab" else Player)(
                    code,
                    f"{role}-{index + 1}",
                    role,
                    join_url,
                    ws_base,
                    random.Random(rng.random()),
                )
            )
        runs.append(GameRun(code, seats, rounds))
    return runs


async def take_seat(
    player: Player, gate: asyncio.Semaphore, stop: asyncio.Event
) -> asyncio.Future[None]:
    """Join and connect ``player`` in its turn (``gate``), up to its first state; return its
    playing, which goes on until ``stop`` (or the game's end)."""
    async with gate:  # a join and its handshake, up to the first state
        await player.join()
        playing = asyncio.ensure_future(player.play(stop))
        ready = asyncio.ensure_future(player.ready.wait())
        await asyncio.wait({playing, ready}, return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
    return playing


async def play_games(
    codes: list[str],
    *,
    players: int,
    rounds: int,
    game_urls: list[str],
    time_limit: float,
    seed: int,
    joined: Callable[[], None] | None = None,
    console_cookie: str | None = None,
) -> list[GameRun]:
    """Join ``players`` labs and a governor to each game, play all games at once to the end.

    Each game's governor and labs but one join and connect first (joins spread over the
    servers, sockets too); the last lab's join, the last seat, starts the game (it connects
    during round 1's bidding, which waits for its bid). Returns the runs, complete or not.
    ``joined`` is called once every game's early seats are connected (the joins are over).
    ``console_cookie``: each game's console is open from the start (an instructor's session,
    ``gamectl --console``), on the first server, as a class's projector shows it.
    """
    stop = asyncio.Event()
    runs = make_runs(codes, players=players, rounds=rounds, game_urls=game_urls, seed=seed)
    gate = asyncio.Semaphore(JOINING_AT_ONCE)

    async def seat(player: Player) -> None:
        await (await take_seat(player, gate, stop))

    async def one_game(run: GameRun) -> None:
        *early, starter = run.players
        run.join_started = time.time()
        tasks = [asyncio.ensure_future(seat(p)) for p in early]
        watchers = (
            [asyncio.ensure_future(watch_console(run, game_urls[0], console_cookie))]
            if console_cookie is not None
            else []
        )
        readies = [asyncio.ensure_future(p.ready.wait()) for p in early]
        try:
            done, _ = await asyncio.wait(readies, timeout=time_limit)
            if len(done) < len(readies):
                return
            run.joined_at = time.time()
            if joined is not None and all(r.joined_at is not None for r in runs):
                joined()
            run.start_sent = time.time()
            await starter.join()
            tasks.append(asyncio.ensure_future(starter.play(stop)))
            await asyncio.gather(*tasks)
            run.complete = all(p.finished for p in run.players)
            # The console's last update comes a moment after the game's end (rendered after
            # the players'): it is waited for, a few seconds at most.
            for _ in range(50 if watchers and run.complete else 0):
                if run.console_finished:
                    break
                await asyncio.sleep(0.1)
        finally:
            for task in (*tasks, *readies, *watchers):
                task.cancel()

    games = [asyncio.ensure_future(one_game(run)) for run in runs]
    try:
        await asyncio.wait(games, timeout=time_limit)
    finally:
        stop.set()
        await asyncio.sleep(0.1)
        for task in games:
            task.cancel()
        await asyncio.gather(*games, return_exceptions=True)
    return runs


async def watch_console(run: GameRun, base: str, cookie: str) -> None:
    """Keep the game's console open and read what it is sent until cancelled (``--console``)."""
    url = f"{base.replace('http://', 'ws://')}/ws/host/{run.code}/"
    try:
        async with websockets.connect(
            url, origin=Origin(base), additional_headers={"Cookie": cookie}, **WS_OPTIONS
        ) as socket:
            async for text in socket:
                run.console_frames += 1
                run.console_bytes += len(text)
                if 'data-status="' in text:
                    run.console_finished = 'data-status="finished"' in text
    except asyncio.CancelledError:
        raise
    except Exception as error:  # noted in the report: the console is what it measures with
        run.console_error = f"{type(error).__name__}: {error}"


# ------------------------------------------------------------------------------------ floor


async def floor(urls: list[str], sockets: int, fires: int) -> dict[str, Any]:
    """Connect ``sockets`` to the floor servers; time ``fires`` group sends to all of them.

    Returns the last client's latency of each fire (seconds), from the server's ``group_send``
    (``latencies``: the time its server stamped in the message, as a game's phase change is
    timed from the server's change) and from the fire command leaving the client
    (``command_latencies``), each delivery's time reaching this machine
    (``StampedConnection``), how many deliveries never arrived, and how long the deliveries
    waited in this process before their reader ran (``client_delays``, not part of the timing).
    """
    arrivals: dict[int, list[float]] = {}
    delays: list[float] = []
    stamped: dict[int, float] = {}
    connections: list[Any] = []
    stop = asyncio.Event()

    async def reader(socket: Any) -> None:
        with contextlib.suppress(websockets.exceptions.ConnectionClosed, asyncio.CancelledError):
            async for text in socket:
                now = socket.arrived()
                delays.append(time.time() - now)
                message = json.loads(text)
                arrivals.setdefault(int(message["n"]), []).append(now)
                stamped.setdefault(int(message["n"]), float(message["at"]))

    async def connect(index: int) -> Any:
        base = urls[index % len(urls)]
        for attempt in range(HANDSHAKE_ATTEMPTS):
            try:
                return await websockets.connect(
                    base.replace("http://", "ws://") + "/ws/floor/",
                    origin=Origin(base),
                    **WS_OPTIONS,
                )
            except (OSError, TimeoutError, websockets.exceptions.InvalidHandshake):
                await asyncio.sleep(0.5 * (attempt + 1))
        raise RuntimeError("floor: a socket could not connect")

    readers = []
    try:
        for start in range(0, sockets, 100):
            batch = await asyncio.gather(
                *(connect(i) for i in range(start, min(sockets, start + 100)))
            )
            connections += batch
        readers = [asyncio.ensure_future(reader(s)) for s in connections]
        await asyncio.sleep(0.3)  # every group_add has landed
        latencies, from_command, lost = [], [], 0
        for n in range(1, fires + 1):
            sent = time.time()
            try:
                await connections[n % len(connections)].send(json.dumps({"type": "fire", "n": n}))
            except websockets.exceptions.ConnectionClosed:
                lost += sockets  # that socket's server closed it: this fire reached no one
                continue
            limit = sent + FIRE_TIMEOUT
            while len(arrivals.get(n, ())) < sockets and time.time() < limit:
                await asyncio.sleep(0.002)
            got = arrivals.get(n, [])
            lost += sockets - len(got)
            if got:
                latencies.append(max(got) - stamped[n])
                from_command.append(max(got) - sent)
            await asyncio.sleep(0.1)
        return {
            "latencies": latencies,
            "command_latencies": from_command,
            "lost": lost,
            "client_delays": delays,
        }
    finally:
        stop.set()
        for task in readers:
            task.cancel()
        await asyncio.gather(*(c.close() for c in connections), return_exceptions=True)
