"""The instructor's live socket (``/ws/host/<code>/``): only the owner (or staff) gets the feed.

Through the real ASGI application (origin check, session auth middleware, router), with the
session cookie of a logged-in instructor, as the console and projector pages connect.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.test import Client

from permitgame import broadcast, hub, services
from permitgame.asgi import application
from permitgame.console.consumers import CLOSE_FORBIDDEN
from tests.permitgame.console_fixtures import make_instructor, small_game
from tests.permitgame.wire import ORIGIN, db

pytestmark = pytest.mark.django_db(transaction=True)


def session_cookie(user: Any) -> bytes:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


def host_socket(code: str, cookie: bytes | None) -> WebsocketCommunicator:
    headers = list(ORIGIN) + ([(b"cookie", cookie)] if cookie else [])
    return WebsocketCommunicator(application, f"/ws/host/{code}/", headers=headers)


def setup(django_user_model: Any) -> tuple[Any, Any, Any, Any]:
    ana = make_instructor(django_user_model, "ana")
    ben = make_instructor(django_user_model, "ben")
    root = make_instructor(django_user_model, "root", is_staff=True)
    return ana, ben, root, small_game(ana)


async def test_owner_gets_the_live_fragments_and_their_updates(django_user_model):
    ana, _, _, game = await db(setup)(django_user_model)
    socket = host_socket(game.code, await db(session_cookie)(ana))
    connected, _ = await socket.connect(timeout=5)
    try:
        assert connected
        snapshot = await socket.receive_from(timeout=5)
        assert 'id="host-status"' in snapshot and 'data-status="lobby"' in snapshot
        assert 'id="host-seats"' in snapshot and 'id="host-charts"' in snapshot
        await db(services.seat_join)(game=game, nickname="Ada")
        await db(broadcast.flush_progress)(game.pk)  # the clock loop's beat: joins coalesced
        update = await socket.receive_from(timeout=5)
        while "Ada" not in update:
            update = await socket.receive_from(timeout=5)
        await db(services.game_start)(game=game)
        update = await socket.receive_from(timeout=5)
        while 'data-status="running"' not in update:
            update = await socket.receive_from(timeout=5)
        # Through the process's hub: the console has no channel of its own on the layer.
        layer = get_channel_layer()
        relay = hub.hub_for(layer)
        assert {name for members in layer.groups.values() for name in members} == {relay.channel}
    finally:
        await socket.disconnect()
    assert game.pk not in relay.games and game.pk not in relay.joined  # nothing left open here


async def test_staff_get_the_live_fragments_of_any_game(django_user_model):
    _, _, root, game = await db(setup)(django_user_model)
    socket = host_socket(game.code, await db(session_cookie)(root))
    connected, _ = await socket.connect(timeout=5)
    try:
        assert connected
        assert 'id="host-status"' in await socket.receive_from(timeout=5)
    finally:
        await socket.disconnect()


@pytest.mark.parametrize("who", ["another instructor", "anonymous", "unknown game"])
async def test_socket_is_refused_before_any_fragment_when_not_the_owner(django_user_model, who):
    _, ben, _, game = await db(setup)(django_user_model)
    cookie = None if who == "anonymous" else await db(session_cookie)(ben)
    code = "NOPE42" if who == "unknown game" else game.code
    if who == "unknown game":
        cookie = await db(session_cookie)(await db(django_user_model.objects.get)(username="ana"))
    socket = host_socket(code, cookie)
    connected, close_code = await socket.connect(timeout=5)
    assert not connected
    assert close_code == CLOSE_FORBIDDEN
    await socket.disconnect()


async def test_an_events_console_update_is_rendered_off_the_moves_thread_once_for_a_burst(
    django_user_model, monkeypatch
):
    # The console's fragments (every seat with its controls) are rendered on a thread of their
    # own a moment after the event, not on the thread that committed it, and the events that
    # come meanwhile share one update showing the game as it then stands.
    ana, _, _, game = await db(setup)(django_user_model)
    socket = host_socket(game.code, await db(session_cookie)(ana))
    connected, _ = await socket.connect(timeout=5)
    assert connected
    await socket.receive_from(timeout=5)  # the snapshot
    threads: list[str] = []
    real = broadcast.host_html

    def rendered(*args: Any, **kwargs: Any) -> str:
        threads.append(threading.current_thread().name)
        return real(*args, **kwargs)

    monkeypatch.setattr(broadcast, "host_html", rendered)
    monkeypatch.setattr(broadcast, "CONSOLE_DELAY_SECONDS", 0.5)
    try:
        started = await db(services.game_start)(game=game)
        await db(services.game_pause)(game=started)  # a second event within the wait
        assert threads == []  # nothing rendered on the threads that committed the events
        update = await socket.receive_from(timeout=5)
        assert 'data-status="paused"' in update  # the game as it stands after both
        assert await socket.receive_nothing(timeout=0.7)
        assert len(threads) == 1 and threads[0].startswith("console"), threads
    finally:
        await socket.disconnect()
