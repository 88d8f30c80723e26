"""The host socket: the instructor's console and projector pages, live over htmx's ws extension.

``/ws/host/<code>/`` accepts only the game's owner or staff (the session's user, through
Channels' auth middleware; the whole origin is checked by ``permitgame.origins`` in
``asgi.py``). It registers with its process's hub (``permitgame.hub``: no channel of its own on
the layer), sends the console's fragments on connect, then forwards the fragments ``broadcast``
renders once per event, and the coalesced progress (a few per second at most: joins, moves and
presence), that the hub hands it. It takes no commands: controls are HTTP posts
(CSRF-checked), each through its service.
"""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from permitgame import broadcast, host_selectors, hub, realtime
from permitgame.errors import GameError

#: Close code for a socket of someone who may not run the game.
CLOSE_FORBIDDEN = 4003


def _game_id_for(user: Any, code: str) -> int:
    return host_selectors.game_for_host(user, code).pk


class HostConsumer(hub.Inbox, AsyncWebsocketConsumer):  # type: ignore[misc]
    """One console or projector page of the instructor. Holds no game state."""

    game_id: int | None = None
    floor = 0  # version of the snapshot sent: older updates are already in it
    latest = 0
    _hub: hub.Hub | None = None

    async def connect(self) -> None:
        code = self.scope["url_route"]["kwargs"]["code"]
        try:
            self.game_id = await database_sync_to_async(_game_id_for)(self.scope.get("user"), code)
        except GameError:
            await self.close(code=CLOSE_FORBIDDEN)  # before accept: the handshake is refused
            return
        if self.channel_layer is not None:  # the updates: through this process's hub
            self._hub = hub.hub_for(self.channel_layer)
            await self._hub.add(self.game_id, hub.CONSOLE, self)
        realtime.LOCAL_HOSTS[self.channel_name] = self.game_id
        await database_sync_to_async(realtime.note_consoles)([self.game_id])
        await self.accept()
        version, html = await database_sync_to_async(broadcast.host_snapshot)(self.game_id)
        self.floor = self.latest = version
        await self.send(text_data=html)

    async def disconnect(self, code: int) -> None:
        realtime.LOCAL_HOSTS.pop(self.channel_name, None)
        if self._hub is not None and self.game_id is not None:
            await self._hub.discard(self.game_id, hub.CONSOLE, self)
            self._hub = None

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """The console sends nothing over the socket; controls are HTTP posts."""

    async def game_send(self, event: dict[str, Any]) -> None:
        """Forward a console update ("game.send") the hub handed over, unless it is stale."""
        version = int(event["version"])
        if version <= self.floor or version < self.latest:
            return
        self.latest = version
        if event["html"]:
            await self.send(text_data=event["html"])

    async def game_progress(self, event: dict[str, Any]) -> None:
        """Forward the console's coalesced view ("game.progress": joins, moves, presence)."""
        await self.game_send(event)
