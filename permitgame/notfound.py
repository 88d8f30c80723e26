"""The websocket answer for a path that has no route: one error message, then close 4404."""

from __future__ import annotations

import json

from channels.generic.websocket import AsyncWebsocketConsumer

#: Close code of a websocket path that does not exist (HTTP's 404 in the 4000-4999 range).
CLOSE_NOT_FOUND = 4404


class NotFoundConsumer(AsyncWebsocketConsumer):  # type: ignore[misc]
    """Any path outside the routes: say so in the protocol's error shape, then close."""

    async def connect(self) -> None:
        await self.accept()
        await self.send(
            text_data=json.dumps(
                {
                    "type": "error",
                    "code": "not_found",
                    "message": "There is no websocket at this address.",
                }
            )
        )
        await self.close(code=CLOSE_NOT_FOUND)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Nothing is read: the socket is closing."""
