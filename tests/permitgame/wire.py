"""Helpers to play a game over the real websocket routes with Channels' WebsocketCommunicator."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from permitgame.asgi import application

ORIGIN = [(b"origin", b"http://localhost"), (b"host", b"localhost")]


class Socket:
    """One client socket: JSON (the protocol) or HTML (htmx fragments); keeps all it received."""

    def __init__(self, path: str, *, fmt: str) -> None:
        self.fmt = fmt
        self.path = path
        self.communicator = WebsocketCommunicator(application, path, headers=ORIGIN)
        self.received: list[Any] = []

    async def connect(self) -> Any:
        connected, _ = await self.communicator.connect(timeout=5)
        assert connected
        return await self.next()

    async def next(self, timeout: float = 5) -> Any:
        text = await self.communicator.receive_from(timeout=timeout)
        message = json.loads(text) if self.fmt == "json" else text
        self.received.append(message)
        return message

    async def drain(self, quiet: float = 0.15) -> list[Any]:
        """Collect messages until none arrives for ``quiet`` seconds."""
        got = []
        # receive_nothing waits without cancelling the application (a receive timeout would).
        while not await self.communicator.receive_nothing(timeout=quiet, interval=0.01):
            got.append(await self.next())
        return got

    async def send(self, message: dict[str, Any]) -> Any:
        """Send a command and return the reply (ack/error, or the #flash fragment)."""
        if self.fmt == "html":
            message = {**message, "HEADERS": {"HX-Request": "true", "HX-Trigger": None}}
        await self.communicator.send_to(text_data=json.dumps(message))
        while True:
            reply = await self.next()
            if self.fmt == "json" and reply["type"] in ("ack", "error"):
                return reply
            if self.fmt == "html" and 'id="flash"' in reply:
                return reply

    async def close(self) -> None:
        await self.communicator.disconnect()


#: The channel layer of the setups with Redis (settings.CHANNEL_LAYERS).
REDIS_LAYER = "channels_redis.pubsub.RedisPubSubChannelLayer"


def redis_layers(redis_url: str, *aliases: str) -> dict[str, Any]:
    """One Redis layer per alias (``default`` if none): each is what one process has."""
    return {
        alias: {"BACKEND": REDIS_LAYER, "CONFIG": {"hosts": [redis_url]}}
        for alias in (aliases or ("default",))
    }


def api_path(code: str, token: str) -> str:
    return f"/ws/api/games/{code}/?token={token}"


def html_path(code: str, token: str) -> str:
    return f"/ws/games/{code}/?token={token}"


def db(function: Any) -> Any:
    """Run a sync (database) function from a test coroutine, the way consumers do."""
    return database_sync_to_async(function)


def at_once(work: Callable[[int], None], count: int, *, timeout: float = 60) -> None:
    """Run ``work(0)`` ... ``work(count - 1)`` in threads released together, as that many
    server processes would at the same moment; each thread has its own database connection,
    closed when it ends. Returns once all have ended (or ``timeout`` seconds each)."""
    start = threading.Barrier(count)

    def run(index: int) -> None:
        from django.db import connection

        start.wait()
        try:
            work(index)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)


async def assert_sync_sends_the_current_state(socket: Socket, game: Any) -> None:
    """Send ``sync`` (what a client does on a gap) and check the snapshot is the game now."""
    await socket.communicator.send_to(text_data=json.dumps({"type": "sync"}))
    snapshot = await socket.next()
    current = await db(lambda: type(game).objects.get(pk=game.pk))()
    assert snapshot["type"] == "state" and snapshot["seq"] == current.seq
    assert snapshot["game"]["phase"] == current.phase
