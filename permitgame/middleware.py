"""The server's own middleware: responses that are not stored, and HTTP requests taken in turn.

``NoStoreMiddleware``: responses that carry a seat (a rejoin code, a token) or the instructor's
console are not stored. ``Cache-Control: no-store`` (with Django's ``add_never_cache_headers``)
on the players' pages (``/join/``, ``/rejoin/``, ``/play/``), the JSON API (a join answer holds
the seat's token) and the console and login pages: a shared computer's browser cache, or a
proxy, keeps none of them.

``ConcurrencyLimit`` (ASGI, around Django in permitgame/asgi.py): at most
``settings.HTTP_CONCURRENCY`` HTTP requests of a process run at once.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.utils.cache import add_never_cache_headers

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
    """ASGI middleware: at most ``limit`` HTTP requests of this process run at once.

    The others wait on the event loop, in order of arrival, which costs nothing while they wait
    (``settings.HTTP_CONCURRENCY`` says why). WebSockets and the lifespan pass through.
    """

    def __init__(self, app: Any, limit: int) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.app = app
        self.limit = limit
        self.running = 0
        self.most = 0  # the most requests seen running at once
        self._slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary()
        )

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        slots = self._slots.get(loop)
        if slots is None:
            slots = self._slots[loop] = asyncio.Semaphore(self.limit)
        async with slots:
            self.running += 1
            self.most = max(self.most, self.running)
            try:
                await self.app(scope, receive, send)
            finally:
                self.running -= 1
