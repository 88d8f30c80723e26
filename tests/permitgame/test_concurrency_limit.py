"""A server process runs at most ``HTTP_CONCURRENCY`` players' HTTP requests at once; the rest
wait. The other requests (the console, its downloads, the admin) have a lane of their own.

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
    names = [f"/api/games/R{n}/join" for n in range(5)]
    requests = [
        asyncio.ensure_future(limited({"type": "http", "path": name}, None, None)) for name in names
    ]
    await settle()
    assert inner.inside == names[:2]  # the others wait their turn
    inner.release.setdefault(names[1], asyncio.Event()).set()
    await settle()
    assert inner.inside == [names[0], names[2]]
    for name in names:
        inner.release.setdefault(name, asyncio.Event()).set()
        await settle()
    await asyncio.wait_for(asyncio.gather(*requests), 2)
    assert inner.entered == names  # in order of arrival
    assert limited.most == 2 and limited.running == 0


async def test_a_slow_console_download_never_holds_up_a_join():
    inner = Held()
    limited = ConcurrencyLimit(inner, 1, 1)
    download = "/console/games/K7P3QX/export/labs.csv"
    joins = ["/api/games/K7P3QX/join", "/join/K7P3QX/", "/play/K7P3QX/"]
    requests = [
        asyncio.ensure_future(limited({"type": "http", "path": path}, None, None))
        for path in [download, "/admin/", *joins]
    ]
    await settle()
    # The download holds the other lane (the admin page waits behind it); a join runs at once.
    assert inner.inside == [download, joins[0]]
    for path in joins:
        inner.release.setdefault(path, asyncio.Event()).set()
        await settle()
    assert inner.entered == [download, *joins]  # the players went by, one at a time
    assert inner.inside == [download]
    for path in [download, "/admin/"]:
        inner.release.setdefault(path, asyncio.Event()).set()
        await settle()
    await asyncio.wait_for(asyncio.gather(*requests), 2)
    assert inner.entered[-1] == "/admin/" and limited.running == 0


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
    assert http.other_limit == settings.HTTP_OTHER_CONCURRENCY


def test_the_limits_are_read_from_the_environment_and_must_be_positive():
    shown = harness.manage(
        "shell",
        "--no-imports",
        "-c",
        "from django.conf import settings; "
        "print(settings.HTTP_CONCURRENCY, settings.HTTP_OTHER_CONCURRENCY)",
        env={"DJANGO_HTTP_CONCURRENCY": "6", "DJANGO_HTTP_OTHER_CONCURRENCY": "4"},
    )
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip().splitlines()[-1] == "6 4"
    for name in ("DJANGO_HTTP_CONCURRENCY", "DJANGO_HTTP_OTHER_CONCURRENCY"):
        refused = harness.manage("check", env={name: "0"})
        assert refused.returncode != 0
        assert f"{name} must be at least 1" in refused.stderr
