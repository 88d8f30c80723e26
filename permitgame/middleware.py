"""The server's own middleware: responses that are not stored, and HTTP requests taken in turn.

``NoStoreMiddleware``: responses that carry a seat (a rejoin code, a token) or the instructor's
console are not stored. ``Cache-Control: no-store`` (with Django's ``add_never_cache_headers``)
on the players' pages (``/join/``, ``/rejoin/``, ``/play/``), the JSON API (a join answer holds
the seat's token) and the console and login pages: a shared computer's browser cache, or a
proxy, keeps none of them.

``ConcurrencyLimit`` (ASGI, around Django in permitgame/asgi.py): at most
``settings.HTTP_CONCURRENCY`` of the players' HTTP requests (``PLAYER_PREFIXES``) of a process
run at once, and at most ``settings.HTTP_OTHER_CONCURRENCY`` of the others (the console, its
downloads, the admin): two lanes, so an instructor's slow download never holds up a join.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.utils.cache import add_never_cache_headers

#: The players' requests: a class joining, its pages and the JSON API, a study's participants.
PLAYER_PREFIXES = ("/api/", "/join/", "/rejoin/", "/play/", "/x/")

#: Path prefixes whose answers are never stored.
NO_STORE_PREFIXES = ("/join/", "/rejoin/", "/play/", "/api/", "/console/", "/accounts/")


class NoStoreMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if request.path.startswith(NO_STORE_PREFIXES):
            add_never_cache_headers(response)
        return response


class ConcurrencyLimit:
    """ASGI middleware: at most ``limit`` of the players' HTTP requests run at once, per process.

    The players' requests are those under ``player_prefixes``; the others (the console, its
    downloads, the admin, the home page) have a lane of their own, ``other_limit`` at once
    (``limit`` if not given). The rest wait on the event loop, in order of arrival, which costs
    nothing while they wait (``settings.HTTP_CONCURRENCY`` says why). WebSockets and the
    lifespan pass through.
    """

    def __init__(
        self,
        app: Any,
        limit: int,
        other_limit: int | None = None,
        *,
        player_prefixes: tuple[str, ...] = PLAYER_PREFIXES,
    ) -> None:
        other = limit if other_limit is None else other_limit
        if limit < 1 or other < 1:
            raise ValueError("limit must be at least 1")
        self.app = app
        self.limit = limit
        self.other_limit = other
        self.player_prefixes = player_prefixes
        self.running = 0
        self.most = 0  # the most requests seen running at once (both lanes)
        self._slots: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, tuple[asyncio.Semaphore, asyncio.Semaphore]
        ] = weakref.WeakKeyDictionary()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        lanes = self._slots.get(loop)
        if lanes is None:
            lanes = self._slots[loop] = (
                asyncio.Semaphore(self.limit),
                asyncio.Semaphore(self.other_limit),
            )
        player = str(scope.get("path", "")).startswith(self.player_prefixes)
        async with lanes[0] if player else lanes[1]:
            self.running += 1
            self.most = max(self.most, self.running)
            try:
                await self.app(scope, receive, send)
            finally:
                self.running -= 1
