"""The websocket routes: snapshots, resync, errors that change nothing, origins, the JSON API."""

import datetime as dt
import json

import pytest
from channels.testing import WebsocketCommunicator

from permitgame import services, ticker
from permitgame.asgi import application
from permitgame.models import Action, Actor, Move
from tests.permitgame.wire import Socket, api_path, db, html_path

TIMED = {"bidding": 30, "compliance": 30, "audit": 30, "results": 10}


def new_game(scenario, durations=TIMED):
    game = services.game_create(
        scenario=scenario, human_labs=2, human_governor=True, durations=durations
    )
    seats = [services.seat_join(game=game, nickname=name) for name in ("Ana", "Ben", "Gil")]
    return game, seats


def count_moves(game):
    return Move.objects.filter(game=game).count()


@pytest.mark.django_db(transaction=True)
async def test_reconnecting_socket_gets_the_full_state_where_the_player_was(small_scenario):
    game, (lab_a, _, _) = await db(new_game)(small_scenario)
    await db(services.game_start)(game=game)
    socket = Socket(api_path(game.code, lab_a.token), fmt="json")
    await socket.connect()
    reply = await socket.send({"type": "bid", "round": 1, "amount": 0.25})
    assert reply["type"] == "ack" and reply["amount"] == 0.25 and not reply["duplicate"]
    await socket.close()

    again = Socket(api_path(game.code, lab_a.token), fmt="json")
    state = await again.connect()
    try:
        assert state["type"] == "state"
        assert state["game"]["round"] == 1 and state["game"]["phase"] == "bidding"
        assert state["you"]["bid"] == 0.25 and state["you"]["owes_move"] is False
        assert state["you"]["value"] is not None
        assert lab_a.player_id not in state["game"]["waiting_for"]
        html = Socket(html_path(game.code, lab_a.token), fmt="html")
        page = await html.connect()
        assert 'id="you"' in page and 'id="lab-action"' in page and "0.250" in page
        await html.close()
    finally:
        await again.close()


@pytest.mark.django_db(transaction=True)
async def test_errors_are_answered_with_code_and_message_and_change_nothing(small_scenario):
    game, (lab_a, _, governor) = await db(new_game)(small_scenario)
    await db(services.game_start)(game=game)
    socket = Socket(api_path(game.code, lab_a.token), fmt="json")
    await socket.connect()
    before = await db(count_moves)(game)
    cases = [
        ({"type": "bid", "round": 2, "amount": 0.1}, "stale"),
        ({"type": "decide", "round": 1, "run": True}, "stale"),
        ({"type": "bid", "round": 1, "amount": "lots"}, "invalid"),
        ({"type": "bid", "round": 1}, "invalid"),
        ({"type": "bid", "round": 1, "amount": 1e9}, "not_allowed"),
        ({"type": "bid", "round": 1, "amount": -1}, "not_allowed"),
        ({"type": "audit", "round": 1, "labs": [1]}, "wrong_role"),
        ({"type": "fly", "round": 1}, "unknown_command"),
        ({"round": 1}, "unknown_command"),
    ]
    try:
        for command, code in cases:
            reply = await socket.send(command)
            assert reply["type"] == "error", (command, reply)
            assert reply["code"] == code, (command, reply)
            assert reply["message"]
        await socket.communicator.send_to(text_data="not json")
        assert (await socket.next())["code"] == "bad_request"
        assert await db(count_moves)(game) == before
        gov = Socket(api_path(game.code, governor.token), fmt="json")
        await gov.connect()
        reply = await gov.send({"type": "audit", "round": 1, "labs": [1]})
        assert reply["code"] == "stale"
        await gov.close()
    finally:
        await socket.close()


@pytest.mark.django_db(transaction=True)
async def test_html_socket_answers_a_bad_bid_with_a_flash_message(small_scenario):
    game, (lab_a, _, _) = await db(new_game)(small_scenario)
    await db(services.game_start)(game=game)
    socket = Socket(html_path(game.code, lab_a.token), fmt="html")
    await socket.connect()
    try:
        reply = await socket.send({"type": "bid", "round": "1", "amount": "abc"})
        assert 'id="flash"' in reply and "flash-error" in reply and "Enter a number" in reply
        assert "amount" not in reply  # the message names no field of the protocol
        reply = await socket.send({"type": "bid", "round": "1", "amount": "0.4"})
        # The answer to a move carries the seat's own panel, showing the bid at once.
        assert "flash-ok" in reply and "Bid received" in reply
        assert 'id="you"' in reply and "0.400" in reply
    finally:
        await socket.close()


@pytest.mark.django_db(transaction=True)
async def test_a_json_socket_may_take_each_event_as_one_frame_of_its_messages(small_scenario):
    game, (lab_a, _, _) = await db(new_game)(small_scenario)
    framed = Socket(api_path(game.code, lab_a.token) + "&frames=event", fmt="json")
    plain = Socket(api_path(game.code, lab_a.token), fmt="json")  # the same seat, another tab
    try:
        assert (await framed.connect())["type"] == "state"  # the snapshot: one object
        await plain.connect()
        await db(services.game_start)(game=game)
        await framed.communicator.send_to(text_data=json.dumps({"type": "bid", "round": 1}))
        frames = await framed.drain()
        await plain.drain()
        # The reply to a command stays one object; every event is one array of its messages,
        # all with the event's seq: the same messages, in the same order, as the plain socket's.
        replies = [frame for frame in frames if isinstance(frame, dict)]
        assert [reply["code"] for reply in replies] == ["invalid"]  # no amount
        events = [frame for frame in frames if isinstance(frame, list)]
        assert events and all(len({m["seq"] for m in event}) == 1 for event in events)
        assert [m["type"] for m in events[0]][-2:] == ["phase", "you"]
        flat = [m for event in events for m in event if m["type"] != "progress"]
        assert flat == [m for m in plain.received[1:] if m["type"] not in ("error", "progress")]
    finally:
        await framed.close()
        await plain.close()

    # An option the server does not know: a clear error, and the socket closes.
    wrong = Socket(api_path(game.code, lab_a.token) + "&frames=all", fmt="json")
    reply = await wrong.connect()
    assert reply["type"] == "error" and reply["code"] == "invalid" and "frames" in reply["message"]
    closed = await wrong.communicator.receive_output()
    assert closed == {"type": "websocket.close", "code": 4400}


@pytest.mark.django_db(transaction=True)
async def test_socket_is_refused_when_token_or_game_is_unknown_or_origin_is_foreign(small_scenario):
    game, _ = await db(new_game)(small_scenario)
    socket = Socket(api_path(game.code, "not-a-token"), fmt="json")
    reply = await socket.connect()
    assert reply["type"] == "error" and reply["code"] == "unknown_player"
    assert (await socket.communicator.receive_output())["type"] == "websocket.close"

    socket = Socket(api_path("NOSUCH", "x"), fmt="json")
    assert (await socket.connect())["code"] == "unknown_game"

    foreign = WebsocketCommunicator(
        application,
        api_path(game.code, "x"),
        headers=[(b"origin", b"http://evil.example"), (b"host", b"localhost")],
    )
    connected, _ = await foreign.connect()
    assert not connected
    await foreign.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_deadline_pushes_defaults_and_the_next_phase_to_connected_sockets(
    small_scenario, frozen_clock
):
    game, (lab_a, lab_b, governor) = await db(new_game)(small_scenario)
    sockets = [Socket(api_path(game.code, s.token), fmt="json") for s in (lab_a, lab_b, governor)]
    for socket in sockets:
        await socket.connect()
    try:
        await db(services.game_start)(game=game)
        await sockets[0].send({"type": "bid", "round": 1, "amount": 0.3})
        fired = frozen_clock.advance(31)
        assert await db(ticker.tick)() == 1
        for socket in sockets:
            await socket.drain()
        you_b = [m for m in sockets[1].received if m["type"] == "you"][-1]
        assert you_b["bid"] == 0.0 and you_b["bid_by"] == "default"
        phases = [m for m in sockets[0].received if m["type"] == "phase"]
        assert (phases[-1]["round"], phases[-1]["phase"]) != (1, "bidding")
        # The next phase began when the clock fired the deadline, as the server recorded it.
        started = dt.datetime.fromisoformat(phases[-1]["started"])
        assert started == fired
        deadline = dt.datetime.fromisoformat(phases[-1]["deadline"])
        assert deadline - started == dt.timedelta(seconds=TIMED[phases[-1]["phase"]])
        assert any(m["type"] == "market" for m in sockets[0].received)
    finally:
        for socket in sockets:
            await socket.close()

    def logged():
        return Move.objects.get(game=game, seat=lab_b, action=Action.BID).actor

    assert await db(logged)() == Actor.DEFAULT


@pytest.mark.django_db(transaction=True)
async def test_pause_and_resume_reach_every_socket_with_the_remaining_time(
    small_scenario, frozen_clock
):
    game, (lab_a, _, _) = await db(new_game)(small_scenario)
    began = frozen_clock.now()
    await db(services.game_start)(game=game)
    socket = Socket(api_path(game.code, lab_a.token), fmt="json")
    state = await socket.connect()
    assert dt.datetime.fromisoformat(state["game"]["started"]) == began
    try:
        frozen_clock.advance(12)
        await db(services.game_pause)(game=game)
        paused = [m for m in await socket.drain() if m["type"] == "phase"][-1]
        assert paused["status"] == "paused" and paused["deadline"] is None
        assert paused["paused_remaining"] == pytest.approx(18)
        reply = await socket.send({"type": "bid", "round": 1, "amount": 0.1})
        assert reply["code"] == "paused"
        await db(services.game_resume)(game=game)
        resumed = [m for m in await socket.drain() if m["type"] == "phase"][-1]
        assert resumed["status"] == "running" and resumed["seconds_left"] == pytest.approx(18)
        # Pausing and resuming do not move when the phase began.
        assert paused["started"] == resumed["started"] == state["game"]["started"]
    finally:
        await socket.close()


@pytest.mark.django_db(transaction=True)
async def test_two_simultaneous_commands_from_one_player_record_one_move(small_scenario):
    game, (lab_a, _, _) = await db(new_game)(small_scenario)
    await db(services.game_start)(game=game)
    first = Socket(api_path(game.code, lab_a.token), fmt="json")
    second = Socket(api_path(game.code, lab_a.token), fmt="json")
    await first.connect()
    await second.connect()
    try:
        command = json.dumps({"type": "bid", "round": 1, "amount": 0.2})
        await first.communicator.send_to(text_data=command)
        await second.communicator.send_to(text_data=command)
        replies = []
        for socket in (first, second):
            message = await socket.next()
            while message["type"] != "ack":
                message = await socket.next()
            replies.append(message)
        assert sorted(r["duplicate"] for r in replies) == [False, True]
    finally:
        await first.close()
        await second.close()

    def bids():
        return Move.objects.filter(game=game, seat=lab_a, action=Action.BID).count()

    assert await db(bids)() == 1


# ------------------------------------------------------------------------------ JSON API (HTTP)


@pytest.mark.django_db
def test_api_join_returns_a_seat_and_errors_with_status_codes(client, small_scenario):
    game = services.game_create(scenario=small_scenario, human_labs=1, human_governor=True)
    url = f"/api/games/{game.code.lower()}/join"
    response = client.post(url, {"nickname": "Ana"}, content_type="application/json")
    assert response.status_code == 201
    body = response.json()
    assert body["role"] == "lab" and body["player_id"] == 1 and body["token"]
    assert body["ws_url"] == f"ws://testserver/ws/api/games/{game.code}/?token={body['token']}"

    gov = client.post(url, {"nickname": "Gil", "role": "governor"}, content_type="application/json")
    assert (
        gov.status_code == 201 and gov.json()["role"] == "governor" and gov.json()["player_id"] == 0
    )

    cases = [
        ("/api/games/NOPE00/join", {"nickname": "x"}, 404, "unknown_game"),
        (url, {"nickname": ""}, 400, "bad_nickname"),
        (url, {"nickname": "ana"}, 409, "nickname_taken"),
        (url, {"nickname": "G2", "role": "governor"}, 409, "game_full"),
    ]
    for path, payload, status, code in cases:
        response = client.post(path, payload, content_type="application/json")
        assert (response.status_code, response.json()["code"]) == (status, code), payload
        assert response.json()["message"]
    bad = client.post(url, "{nope", content_type="application/json")
    assert (bad.status_code, bad.json()["code"]) == (400, "bad_request")

    rejoin = client.post(
        f"/api/games/{game.code}/rejoin",
        {"rejoin_code": body["rejoin_code"].lower()},
        content_type="application/json",
    )
    assert rejoin.status_code == 200 and rejoin.json()["token"] == body["token"]

    services.game_end(game=game)
    over = client.post(url, {"nickname": "Late"}, content_type="application/json")
    assert (over.status_code, over.json()["code"]) == (410, "game_over")
    info = client.get(f"/api/games/{game.code}").json()
    assert info["status"] == "finished" and len(info["players"]) == small_scenario.labs.count + 1


@pytest.mark.django_db
def test_join_page_seats_the_browser_and_the_play_page_shows_its_screen(client, small_scenario):
    game = services.game_create(scenario=small_scenario, human_labs=1)
    page = client.get(f"/join/{game.code}/")
    assert page.status_code == 200 and game.code in page.content.decode()
    response = client.post("/join/", {"code": game.code.lower(), "nickname": "Ana"})
    assert response.status_code == 302 and response["Location"] == f"/play/{game.code}/"
    screen = client.get(f"/play/{game.code}/").content.decode()
    assert f'ws-connect="/ws/games/{game.code}/"' in screen and 'id="you"' in screen
    wrong = client.post("/join/", {"code": "NOPE00", "nickname": "Ben"})
    assert wrong.status_code == 400 and "no game with the code" in wrong.content.decode()
