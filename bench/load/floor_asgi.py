"""The bare Channels fan-out floor: one group, one ``group_send``, no game logic.

Served by Daphne with the game's own settings (so the same channel layer: in-memory, or Redis
with the same configuration). Every socket joins the group ``floor``; a socket that sends
``{"type": "fire", "n": K}`` makes its server send one 1 KB JSON message (carrying ``n`` and
``at``, the server's time just before its ``group_send``) to the whole group. Nothing else: no
database, no rendering.
"""

from __future__ import annotations

import gc
import json
import os
import time
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "permitgame.settings")

import django

django.setup()

from channels.generic.websocket import AsyncWebsocketConsumer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.core.asgi import get_asgi_application  # noqa: E402
from django.urls import path  # noqa: E402

GROUP = "floor"
PAYLOAD_BYTES = 1024


class FloorConsumer(AsyncWebsocketConsumer):  # type: ignore[misc]
    async def connect(self) -> None:
        await self.channel_layer.group_add(GROUP, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(GROUP, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: Any = None) -> None:
        command = json.loads(text_data or "{}")
        # ``at``: the send begins (as a game's phase change is its ``started``).
        body = {"type": "floor", "n": int(command.get("n", 0)), "at": time.time(), "pad": ""}
        body["pad"] = "x" * (PAYLOAD_BYTES - len(json.dumps(body)))
        await self.channel_layer.group_send(
            GROUP, {"type": "floor.message", "text": json.dumps(body)}
        )

    async def floor_message(self, event: dict[str, Any]) -> None:
        await self.send(text_data=event["text"])


# As the game's server does (permitgame/asgi.py): what the process made at start is moved out of
# the cyclic collector's reach. Without it, Django's own objects made each full collection a
# pause of 60-80 ms, which a fire now and then waited behind: the floor measured the collector,
# and its p95 over 20 fires was 15-20 ms or 75-95 ms by how many fires a pause caught.
gc.collect()
gc.freeze()

application = ProtocolTypeRouter(
    {
        "http": get_asgi_application(),
        "websocket": URLRouter([path("ws/floor/", FloorConsumer.as_asgi())]),
    }
)
