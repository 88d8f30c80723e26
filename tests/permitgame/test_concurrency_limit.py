"""A server process runs at most ``HTTP_CONCURRENCY`` HTTP requests at once; the rest wait.

Daphne gives every Django request a thread of its own; a class joining at once made a hundred
threads share the interpreter with the threads recording the moves of the rooms already playing.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from django.conf import settings

from permitgame.middleware import ConcurrencyLimit
from tests import harness


class Held:
    """An ASGI app whose HTTP requests stay inside until released; notes who is inside."""

    def __init__(self) -> None:
        self.inside: list[str] = []
        self.entered: list[str] = []
        self.release: dict[str, asyncio.Event] = {}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        name = scope["path"]
        self.inside.append(name)
        self.entered.append(name)
        try:
            await self.release.setdefault(name, asyncio.Event()).wait()
        finally:
            self.inside.remove(name)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_at_most_the_limit_of_requests_run_at_once_and_the_rest_go_in_order():
    inner = Held()
    limited = ConcurrencyLimit(inner, 2)
    names = [f"/r{n}" for n in range(5)]
    requests = [
        asyncio.ensure_future(limited({"type": "http", "path": name}, None, None)) for name in names
    ]
    await settle()
    assert inner.inside == ["/r0", "/r1"]  # the others wait their turn
    inner.release.setdefault("/r1", asyncio.Event()).set()
    await settle()
    assert inner.inside == ["/r0", "/r2"]
    for name in names:
        inner.release.setdefault(name, asyncio.Event()).set()
        await settle()
    await asyncio.wait_for(asyncio.gather(*requests), 2)
    assert inner.entered == ["/r0", "/r1", "/r2", "/r3", "/r4"]  # in order of arrival
    assert limited.most == 2 and limited.running == 0


async def test_a_request_that_fails_frees_its_turn():
    async def broken(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("the view failed")

    limited = ConcurrencyLimit(broken, 1)
    for _ in range(3):  # each failure gives its turn back: the next one is not stuck
        with pytest.raises(RuntimeError):
            await asyncio.wait_for(limited({"type": "http", "path": "/"}, None, None), 1)
    assert limited.running == 0


async def test_websockets_are_not_held_by_the_limit():
    inner = Held()
    limited = ConcurrencyLimit(inner, 1)
    sockets = [
        asyncio.ensure_future(limited({"type": "websocket", "path": f"/ws{n}"}, None, None))
        for n in range(3)
    ]
    await settle()
    assert sorted(inner.inside) == ["/ws0", "/ws1", "/ws2"]  # a socket lives for the game
    for event in inner.release.values():
        event.set()
    await asyncio.wait_for(asyncio.gather(*sockets), 2)


def test_the_server_takes_its_http_requests_through_the_limit():
    from permitgame.asgi import application

    http = application.application_mapping["http"]
    assert isinstance(http, ConcurrencyLimit) and http.limit == settings.HTTP_CONCURRENCY


def test_the_limit_is_read_from_the_environment_and_must_be_positive():
    shown = harness.manage(
        "shell",
        "--no-imports",
        "-c",
        "from django.conf import settings; print(settings.HTTP_CONCURRENCY)",
        env={"DJANGO_HTTP_CONCURRENCY": "6"},
    )
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip().splitlines()[-1] == "6"
    refused = harness.manage("check", env={"DJANGO_HTTP_CONCURRENCY": "0"})
    assert refused.returncode != 0
    assert "DJANGO_HTTP_CONCURRENCY must be at least 1" in refused.stderr
