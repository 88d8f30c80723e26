"""A small Python client of the JSON protocol (docs/protocol.md) that plays one seat.

A lab plays any sim_core strategy (``rational``, ``truthful``, ``compliant``, ``reckless``,
``adaptive``, ``random``) from what the server tells it: its value, wealth and risk profile, the
announced p_eff and P, and the public news of caught violators; a governor audits by the
announced policy (π1 for a signal, π0 otherwise, at most ``max_audits``). The decisions are
sim_core's own functions. It needs no Django: students can copy it as a starting point.

    info = join("http://127.0.0.1:8000", "K7P3QX", "bot-1")
    result = asyncio.run(Player(info, strategy="rational").play())

``python -m permitgame.client URL CODE NICKNAME [--strategy NAME]`` plays one seat.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import secrets
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import websockets
from websockets.typing import Origin

from sim_core import STRATEGIES, perceived_penalties, unpermitted_value
from sim_core.governor import policy_audits
from sim_core.strategies import lab_asks, lab_bids, lab_runs

#: How this client declares itself when it joins (docs/protocol.md, "client").
CLIENT = {"kind": "program", "name": "permitgame.client", "version": "0.1.0"}
#: Tries of a join whose answer does not arrive (the same join key each time).
JOIN_ATTEMPTS = 3
#: How long a player keeps trying to reconnect to a server that is down (a restart, a laptop
#: lid closed and opened), and the longest wait between two tries (jittered: a whole class
#: does not come back in one burst).
RECONNECT_SECONDS = 300.0
RECONNECT_CAP_SECONDS = 10.0
#: Messages that carry the seq of the last event without being one (docs/protocol.md).
NOT_EVENTS = frozenset({"progress", "ack", "error", "reconnect"})

logger = logging.getLogger(__name__)


class ClientError(Exception):
    """The server answered with an error (``code`` and ``message`` as in the protocol)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class ServerClosed(Exception):
    """The server closed the socket before the game was over."""


@dataclass(frozen=True, slots=True)
class JoinInfo:
    """What ``POST /api/games/<code>/join`` returns."""

    player_id: int
    token: str
    role: str
    nickname: str
    rejoin_code: str
    game: str
    ws_url: str


def join(base_url: str, code: str, nickname: str, *, role: str | None = None) -> JoinInfo:
    """Join game ``code`` on the server at ``base_url`` (http://host:port).

    Raises:
        ClientError: unknown game, full or finished game, bad or taken nickname.
    """
    # The join key makes a retry safe: a request resent after a lost answer gets the same seat.
    body: dict[str, Any] = {"nickname": nickname, "join_key": secrets.token_urlsafe(16)}
    body["client"] = CLIENT  # a program says so: its seat is never counted as a student's
    if role:
        body["role"] = role
    request = urllib.request.Request(
        f"{base_url.rstrip('/')}/api/games/{code}/join",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    for attempt in range(JOIN_ATTEMPTS):
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                data = json.loads(response.read())
            break
        except urllib.error.HTTPError as error:
            payload = json.loads(error.read() or b"{}")
            code, message = payload.get("code", "http_error"), payload.get("message", str(error))
            raise ClientError(code, message) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError):
            if attempt == JOIN_ATTEMPTS - 1:
                raise
            time.sleep(1.0 + attempt)
    return JoinInfo(
        player_id=data["player_id"],
        token=data["token"],
        role=data["role"],
        nickname=data["nickname"],
        rejoin_code=data["rejoin_code"],
        game=data["game"],
        ws_url=data["ws_url"],
    )


def event_frames(ws_url: str) -> str:
    """Return ``ws_url`` asking for each event as one frame (docs/protocol.md, section 2)."""
    return f"{ws_url}{'&' if '?' in ws_url else '?'}frames=event"


def frame_messages(text: str | bytes) -> list[dict[str, Any]]:
    """Return the messages of one frame: an event's array (``frames=event``), or one message."""
    data = json.loads(text)
    return data if isinstance(data, list) else [data]


def origin_of(ws_url: str) -> str:
    """Return the http(s) origin a browser on that server would send."""
    parts = urlsplit(ws_url)
    scheme = "https" if parts.scheme == "wss" else "http"
    return f"{scheme}://{parts.netloc}"


@dataclass
class Player:
    """Plays one seat to the end of the game over the JSON protocol."""

    info: JoinInfo
    strategy: str = "rational"
    seed: int | None = None
    reconnect_seconds: float = RECONNECT_SECONDS
    reconnect_cap: float = RECONNECT_CAP_SECONDS
    rules: dict[str, Any] = field(default_factory=dict)
    you: dict[str, Any] = field(default_factory=dict)
    game: dict[str, Any] = field(default_factory=dict)
    signals: dict[str, Any] | None = None
    acted: set[tuple[int, str]] = field(default_factory=set)
    caught_total: int = 0
    violations_total: int = 0
    received: list[dict[str, Any]] = field(default_factory=list)
    seq: int | None = None  # the last event's number seen (None: waiting for a snapshot)
    gaps: int = 0  # how many times a number was skipped (each answered with a sync)
    reconnects: int = 0  # how many times the socket was opened again

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(
                f"unknown strategy {self.strategy!r}; choose from {sorted(STRATEGIES)}"
            )
        self.rng = np.random.default_rng(self.seed)

    # ------------------------------------------------------------------ decisions (sim_core's)

    def _penalty(self) -> tuple[np.ndarray, float]:
        code = np.array([STRATEGIES[self.strategy]])
        penalty = perceived_penalties(
            code,
            np.array([float(self.you["risk_profile"])]),
            float(self.you["p_eff"]),
            float(self.you["punishment"]),
            caught_total=self.caught_total,
            violations_total=self.violations_total,
        )
        return code, float(penalty[0])

    def bid(self) -> float:
        """Return this round's bid by the strategy (MODEL.md §5)."""
        code, penalty = self._penalty()
        bids = lab_bids(
            code,
            np.array([float(self.you["net_value"])]),
            np.array([penalty]),
            float(self.rules.get("racing_value", 0.0)),
            np.array([float(self.you["wealth"])]),
            self.rng.random(1),
        )
        return float(bids[0])

    def ask(self) -> float:
        """Return this round's ask for a granted permit by the strategy (MODEL.md §3b)."""
        code, penalty = self._penalty()
        asks = lab_asks(
            code,
            np.array([float(self.you["net_value"])]),
            np.array([penalty]),
            float(self.rules.get("racing_value", 0.0)),
            self.rng.random(1),
        )
        return float(asks[0])

    def run(self) -> bool:
        """Return whether to run without a permit, by the strategy (MODEL.md §5)."""
        code, penalty = self._penalty()
        unpermitted = unpermitted_value(
            float(self.you["net_value"]), float(self.rules.get("racing_value", 0.0)), penalty
        )
        return bool(lab_runs(code, np.array([unpermitted]), self.rng.random(1))[0])

    def audits(self) -> list[int]:
        """Return the player ids to audit by the announced policy (MODEL.md §6)."""
        assert self.signals is not None
        labs = self.signals["labs"]
        audited = policy_audits(
            signals=np.array([bool(row["signal"]) for row in labs]),
            won=np.array([bool(row["permit"]) for row in labs]),
            high_prob=float(self.rules.get("high_prob", 0.0)),
            base_prob=float(self.rules.get("base_prob", 0.0)),
            max_audits=self.signals.get("max_audits"),
            uniforms=self.rng.random(len(labs)),
            trim_keys=self.rng.random(len(labs)),
        )
        return [row["player_id"] for row, flag in zip(labs, audited, strict=True) if flag]

    # ------------------------------------------------------------------ the conversation

    def next_command(self) -> dict[str, Any] | None:
        """Return the command this seat owes now, or None."""
        if self.info.role == "lab":
            if not self.you.get("owes_move") or self.you.get("bot_playing"):
                return None
            key = (int(self.you["round"]), str(self.you["phase"]))
            if key in self.acted:
                return None
            self.acted.add(key)
            if key[1] == "bidding" and self.you.get("granted"):  # MODEL.md §3b: trading
                return {"type": "ask", "round": key[0], "amount": self.ask()}
            if key[1] == "bidding":
                return {"type": "bid", "round": key[0], "amount": self.bid()}
            if key[1] == "compliance":
                return {"type": "decide", "round": key[0], "run": self.run()}
            return None
        round_no = int(self.game.get("round") or 0)
        if (
            self.game.get("phase") == "audit"
            and 0 in self.game.get("waiting_for", [])
            and self.signals is not None
            and self.signals.get("round") == round_no
            and (round_no, "audit") not in self.acted
        ):
            self.acted.add((round_no, "audit"))
            return {"type": "audit", "round": round_no, "labs": self.audits()}
        return None

    def gap(self, message: dict[str, Any]) -> bool:
        """Check one message's ``seq`` against the stream; return whether an event was lost.

        A ``state`` sets the number; an event must be the next number (or repeat it: an event
        may be several messages); any other message repeats the last event's number.
        """
        kind = message.get("type")
        seq = message.get("seq")
        if not isinstance(seq, int):
            return False
        if kind == "state":
            self.seq = seq
            return False
        if self.seq is None:  # a snapshot was asked for: wait for it
            return False
        if seq > self.seq + (0 if kind in NOT_EVENTS else 1):
            return True
        if kind not in NOT_EVENTS:
            self.seq = max(self.seq, seq)
        return False

    def frame(self, text: str | bytes) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        """Take one frame from the server; return the commands to send, and game_over if over.

        An event comes as one frame, the array of its messages (``frames=event``); a reply
        (``state``, ``ack``, ``error``) as one message. A skipped ``seq`` is answered with
        ``{"type": "sync"}``, and nothing is played until the snapshot that answers it.
        """
        for message in frame_messages(text):
            if self.gap(message):
                self.gaps += 1
                self.seq = None  # until the snapshot comes; the rest of the event waits too
                logger.info("%s: an event was lost; sync", self.info.nickname)
                return [{"type": "sync"}], None
            over = self.take(message)
            if over is not None:
                return [], over
        if self.seq is None:  # a snapshot was asked for: act on it, not before
            return [], None
        command = self.next_command()
        return ([command] if command is not None else []), None

    def take(self, message: dict[str, Any]) -> dict[str, Any] | None:
        """Update what the seat knows from one server message; return game_over when over."""
        self.received.append(message)
        kind = message.get("type")
        if kind == "state":
            self.rules = message["rules"]
            self.game = message["game"]
            self.you = message["you"]
            self.signals = message.get("signals")
            self.caught_total = sum(r["metrics"]["caught"] for r in message["results"])
            self.violations_total = sum(r["metrics"]["violations"] for r in message["results"])
            if self.game["status"] == "finished":
                return {"type": "game_over", "standings": message.get("standings") or []}
        elif kind == "phase":
            self.game = {**self.game, **{k: v for k, v in message.items() if k != "type"}}
        elif kind == "progress" and "waiting_for" in message:
            self.game = {**self.game, "waiting_for": message["waiting_for"]}
        elif kind == "you":
            self.you = {**self.you, **message}
        elif kind == "signals":
            self.signals = message
        elif kind == "round_results":
            self.caught_total += int(message["metrics"]["caught"])
            self.violations_total += int(message["metrics"]["violations"])
        elif kind == "error" and message.get("code") != "stale":
            logger.warning("%s: %s", self.info.nickname, message.get("message"))
        elif kind == "game_over":
            return message
        return None

    def backoff(self, attempt: int) -> float:
        """Return the wait before reconnect try ``attempt`` (1, 2, ...): doubling from 0.2 s
        up to ``reconnect_cap``, each a random point in its upper half (jitter)."""
        ceiling = min(self.reconnect_cap, 0.2 * 2 ** min(attempt, 30))
        return float(ceiling / 2 + float(self.rng.random()) * ceiling / 2)

    async def play(self) -> dict[str, Any]:
        """Play until the game is over; return the ``game_over`` message.

        A dropped connection is retried for ``reconnect_seconds`` (from the first failed try;
        any open socket starts the count again); the server resends the full state on connect.
        A message whose ``seq`` shows a lost event is answered with ``{"type": "sync"}``.
        """
        attempts = 0
        down_since: float | None = None
        while True:
            try:
                async with websockets.connect(
                    event_frames(self.info.ws_url),
                    origin=Origin(origin_of(self.info.ws_url)),
                    open_timeout=30,
                ) as socket:
                    attempts, down_since = 0, None
                    self.seq = None
                    async for text in socket:
                        commands, over = self.frame(text)
                        if over is not None:
                            return over
                        for command in commands:
                            await socket.send(json.dumps(command))
                # The server closed the socket (a restart, a change of role): open it again.
                raise ServerClosed("the server closed the socket")
            except (
                OSError,
                TimeoutError,
                ServerClosed,
                websockets.exceptions.WebSocketException,
            ) as error:
                now = time.monotonic()
                down_since = now if down_since is None else down_since
                if now - down_since > self.reconnect_seconds:
                    raise
                attempts += 1
                self.reconnects += 1
                logger.info("%s: reconnecting after %s", self.info.nickname, error)
                self.acted.clear()  # the snapshot on reconnect says what is still owed
                await asyncio.sleep(self.backoff(attempts))


def add_reconnect_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the reconnect flags (also used by ``manage.py playbots``)."""
    parser.add_argument(
        "--reconnect-seconds",
        type=float,
        default=RECONNECT_SECONDS,
        help=f"seconds to keep reconnecting to a server that is down ({RECONNECT_SECONDS:g})",
    )
    parser.add_argument(
        "--reconnect-cap",
        type=float,
        default=RECONNECT_CAP_SECONDS,
        help=f"the longest wait between two reconnect tries (default {RECONNECT_CAP_SECONDS:g})",
    )


def main(argv: list[str] | None = None) -> None:
    """Play one seat from the command line."""
    parser = argparse.ArgumentParser(description="Play one seat of a PermitGame game.")
    parser.add_argument("url", help="the server, e.g. http://127.0.0.1:8000")
    parser.add_argument("code", help="the join code")
    parser.add_argument("nickname")
    parser.add_argument("--strategy", default="rational", choices=sorted(STRATEGIES))
    add_reconnect_arguments(parser)
    args = parser.parse_args(argv)
    info = join(args.url, args.code, args.nickname)
    player = Player(
        info,
        strategy=args.strategy,
        reconnect_seconds=args.reconnect_seconds,
        reconnect_cap=args.reconnect_cap,
    )
    result = asyncio.run(player.play())
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
