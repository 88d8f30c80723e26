"""The websocket handshake: the whole origin is checked, and an unknown path closes cleanly.

Through the real ASGI application (permitgame.asgi) with Channels' WebsocketCommunicator and
the headers a browser sends.
"""

import json
import logging

import pytest
from channels.testing import WebsocketCommunicator

from permitgame import services
from permitgame.asgi import application
from permitgame.notfound import CLOSE_NOT_FOUND
from tests.permitgame.wire import api_path, db


def _lab(scenario):
    game = services.game_create(scenario=scenario, human_labs=1, human_governor=False)
    seat = services.seat_join(game=game, nickname="Ana")
    return game, seat


async def _opens(path, headers):
    communicator = WebsocketCommunicator(application, path, headers=headers)
    connected, _ = await communicator.connect(timeout=5)
    await communicator.disconnect()
    return connected


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("origin", "host", "opens"),
    [
        ("http://127.0.0.1:8000", "127.0.0.1:8000", True),
        ("http://localhost:8000", "localhost:8000", True),
        ("http://localhost", "localhost", True),
        ("http://127.0.0.1:1", "127.0.0.1:8000", False),  # another port: another origin
        ("http://127.0.0.1", "127.0.0.1:8000", False),
        ("https://127.0.0.1:8000", "127.0.0.1:8000", False),  # https for an http site
        ("ws://127.0.0.1:8000", "127.0.0.1:8000", False),
        ("http://evil.example:8000", "127.0.0.1:8000", False),
        ("http://127.0.0.1:8000.evil.example", "127.0.0.1:8000", False),
        ("null", "127.0.0.1:8000", False),
        (None, "127.0.0.1:8000", False),
        ("http://evil.example", "evil.example", False),  # a host not allowed
    ],
)
async def test_socket_opens_only_from_the_sites_own_origin(small_scenario, origin, host, opens):
    game, seat = await db(_lab)(small_scenario)
    headers = [(b"host", host.encode())]
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    assert await _opens(api_path(game.code, seat.token), headers) is opens


@pytest.mark.django_db(transaction=True)
async def test_socket_over_tls_opens_from_the_https_origin_only(small_scenario, settings):
    settings.ALLOWED_HOSTS = ["game.example.org"]
    game, seat = await db(_lab)(small_scenario)
    path = api_path(game.code, seat.token)
    proxied = [(b"host", b"game.example.org"), (b"x-forwarded-proto", b"https")]
    assert await _opens(path, [*proxied, (b"origin", b"https://game.example.org")])
    assert not await _opens(path, [*proxied, (b"origin", b"http://game.example.org")])
    assert not await _opens(path, [*proxied, (b"origin", b"https://game.example.org:444")])


@pytest.mark.django_db(transaction=True)
async def test_socket_opens_from_a_csrf_trusted_origin(small_scenario, settings):
    settings.ALLOWED_HOSTS = ["10.0.0.5"]
    settings.CSRF_TRUSTED_ORIGINS = ["https://game.example.org", "https://*.school.example"]
    game, seat = await db(_lab)(small_scenario)
    path = api_path(game.code, seat.token)
    host = (b"host", b"10.0.0.5:8001")
    for origin, opens in (
        (b"https://game.example.org", True),
        (b"https://room1.school.example", True),
        (b"http://room1.school.example", False),
        (b"https://game.example.org.evil.example", False),
    ):
        assert await _opens(path, [host, (b"origin", origin)]) is opens, origin


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path", ["/ws/nope/", "/ws/", "/ws/games/", "/nothing"])
async def test_unknown_socket_path_closes_cleanly_with_not_found(path, caplog):
    caplog.set_level(logging.ERROR)
    headers = [(b"origin", b"http://localhost"), (b"host", b"localhost")]
    communicator = WebsocketCommunicator(application, path, headers=headers)
    connected, _ = await communicator.connect(timeout=5)
    assert connected
    message = json.loads(await communicator.receive_from(timeout=5))
    assert (message["type"], message["code"]) == ("error", "not_found")
    closed = await communicator.receive_output(timeout=5)
    assert closed == {"type": "websocket.close", "code": CLOSE_NOT_FOUND}
    # The server answers a close with a disconnect; the consumer then ends (instead of the test
    # waiting out a timeout for an application that is still listening).
    await communicator.disconnect(timeout=5)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
