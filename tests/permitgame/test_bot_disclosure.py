"""Bot disclosure in a study: with ``hidden`` (and ``revealed_at_end`` until the game is over) a
participant cannot tell a bot's seat from a person's from anything it is sent: the play page,
the JSON protocol's messages and the htmx fragments of its socket; ``revealed`` shows it. The
console keeps showing it, and the people's labs are drawn, not labs 1 and 2.

Each room: 4 labs, 2 of them for participants (a person in a browser, ``ANA-7``, and a
program declaring itself, ``prog-1``), 2 played by bots.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from permitgame import broadcast, services
from permitgame.client import CLIENT
from permitgame.experiments import services as study
from permitgame.experiments.models import Participant
from permitgame.models import Game, Seat, Status
from tests.permitgame.console_fixtures import make_instructor, play_to_end
from tests.permitgame.wire import Socket, api_path, db, html_path

PERSON, PROGRAM = "ANA-7", "prog-1"
#: What would name the other participant (its label, its program's name).
OTHERS = (PROGRAM, CLIENT["name"])


def design(disclosure: str, rooms: int = 1) -> dict[str, Any]:
    return {
        "name": "Disclosure",
        "seed": 3,
        "treatments": {
            "only": {
                "scenario": "targeted_audit",
                "overrides": {"rounds": 2, "labs": {"count": 4}},
                "seats": {"human_labs": 2},
                "rooms": rooms,
                "durations": {"bidding": 60, "compliance": 60, "audit": 60, "results": 0},
            }
        },
        "lobby_timeout": None,
        "bot_disclosure": disclosure,
        "quiz": {"enabled": False},
    }


def seat_study(client: Any, disclosure: str) -> tuple[Game, Seat, Seat]:
    """The person enters through the link in a browser session, the program through the API;
    the room is then full and starts. Returns the game, the person's and the program's seat."""
    experiment = study.experiment_create(design=design(disclosure))
    code = experiment.code
    assert client.get(f"/x/{code}/?label={PERSON}").status_code == 302
    assert client.post(f"/x/{code}/next/", {"consent": "yes"}).status_code == 302
    assert client.post(f"/x/{code}/next/").status_code == 302  # no quiz: seated
    body = {"label": PROGRAM, "client": CLIENT, "consent": True}
    entered = client.post(f"/api/experiments/{code}/enter", json.dumps(body),
                          content_type="application/json")  # fmt: skip
    assert entered.status_code == 201, entered.json()
    person = Participant.objects.get(label=PERSON).seat
    program = Participant.objects.get(label=PROGRAM).seat
    game = Game.objects.get(pk=person.game_id)
    assert game.status == Status.RUNNING
    return game, person, program


def section(html: str, element_id: str) -> str:
    found = re.search(rf'<section id="{element_id}".*?</section>', html, re.S)
    return found.group(0) if found else ""


# ------------------------------------------------------------------------------ what tells


def json_tells(messages: list[dict[str, Any]]) -> list[str]:
    """Everything in a participant's JSON messages that tells people's seats from bots'."""
    tells = []
    for message in messages:
        kind = message.get("type")
        text = json.dumps(message.get("players", []))
        if any(name in text for name in OTHERS):
            tells.append(f"{kind}: a name")
        for row in message.get("players") or []:
            shown = {k: row[k] for k in ("human", "program", "bot_playing", "connected")}
            if row["nickname"] or any(value is not None for value in shown.values()):
                tells.append(f"{kind}: player {row['player_id']} {shown}")
        game = message.get("game") or message
        if any(player > 0 for player in game.get("waiting_for") or []):
            tells.append(f"{kind}: waits for labs {game['waiting_for']}")
        if kind == "progress" and (message["joined"], message["connected"]) != (None, None):
            tells.append(f"progress: joined {message['joined']}")
        for row in message.get("standings") or []:
            if row["nickname"]:
                tells.append(f"{kind}: standing of {row['nickname']}")
    return tells


def html_tells(html: str) -> list[str]:
    """Everything in a participant's HTML that tells people's seats from bots'."""
    tells = [f"the name {name}" for name in OTHERS if name in html]
    players = section(html, "players")
    for badge in ("Bot", "Open seat", "Online", "Away", "Bot standing in"):
        if f">{badge}<" in players or f">{badge} ·" in players:
            tells.append(f"the badge {badge}")
    if re.search(r'data-player-id="[1-9]', section(html, "waiting")):
        tells.append("labs waited for")
    return tells


async def participant_receives(game: Game, person: Seat, program: Seat) -> tuple[list, list]:
    """What the person's JSON and HTML sockets receive while both bid (the market clears) and
    the room's progress goes out: (JSON messages, HTML texts)."""
    as_json = Socket(api_path(game.code, person.token), fmt="json")
    as_html = Socket(html_path(game.code, person.token), fmt="html")
    await as_json.connect()
    await as_html.connect()
    try:
        await db(services.round_submit_bid)(seat=program, round_no=1, amount=0.3)
        await db(broadcast.flush_progress)(game.pk)
        await as_json.drain()
        await as_html.drain()
        await db(services.round_submit_bid)(seat=person, round_no=1, amount=0.2)
        await db(broadcast.flush_progress)(game.pk)
        await as_json.drain()
        await as_html.drain()
    finally:
        await as_json.close()
        await as_html.close()
    return as_json.received, as_html.received


# ------------------------------------------------------------------------------ the modes


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("disclosure", ["hidden", "revealed_at_end"])
async def test_hidden_bots_are_not_told_apart_in_anything_a_participant_is_sent(client, disclosure):
    game, person, program = await db(seat_study)(client, disclosure)
    page = (await db(client.get)(f"/play/{game.code}/")).content.decode()
    assert 'id="players"' in page and html_tells(page) == []
    players = section(page, "players")
    assert players.count("data-player-id") == 5  # every seat listed, by its label alone

    received, fragments = await participant_receives(game, person, program)
    kinds = {m["type"] for m in received}
    assert {"state", "progress", "market", "phase"} <= kinds
    assert json_tells(received) == []
    assert fragments and all(html_tells(text) == [] for text in fragments)
    # The game's public JSON (GET /api/games/CODE) hides them too.
    public = (await db(client.get)(f"/api/games/{game.code}")).json()
    assert json_tells([public]) == []


@pytest.mark.django_db(transaction=True)
async def test_revealed_bots_are_shown_to_the_participants(client):
    game, person, program = await db(seat_study)(client, "revealed")
    page = (await db(client.get)(f"/play/{game.code}/")).content.decode()
    # Two labs and the governor are bots.
    assert section(page, "players").count('<span class="badge">Bot</span>') == 3
    assert PROGRAM in section(page, "players")
    received, fragments = await participant_receives(game, person, program)
    assert json_tells(received)  # the same check finds what is shown
    state = next(m for m in received if m["type"] == "state")
    rows = {row["player_id"]: row for row in state["players"] if row["role"] == "lab"}
    assert rows[program.player_id]["program"] is True
    assert rows[person.player_id]["human"] is True
    assert sum(1 for row in rows.values() if not row["human"] and not row["program"]) == 2
    assert any(html_tells(text) for text in fragments)


@pytest.mark.django_db(transaction=True)
async def test_revealed_at_end_shows_the_bots_once_the_game_is_over(client):
    game, person, program = await db(seat_study)(client, "revealed_at_end")
    await db(play_to_end)(game)
    socket = Socket(api_path(game.code, person.token), fmt="json")
    state = await socket.connect()
    await socket.close()
    rows = {row["player_id"]: row for row in state["players"] if row["role"] == "lab"}
    assert rows[program.player_id]["program"] is True and rows[person.player_id]["human"]
    assert {row["nickname"] for row in state["standings"]} >= {PERSON, PROGRAM}
    page = (await db(client.get)(f"/play/{game.code}/")).content.decode()
    assert section(page, "players").count(">Bot<") == 3
    assert PROGRAM in section(page, "game-over")
    # The completion page says how many labs were not played by a person.
    code = await db(lambda: game.room.experiment.code)()
    done = await db(client.get)(f"/x/{code}/next/")
    assert "3 of the 4 labs" in done.content.decode()


# ------------------------------------------------------------------------------ the others


@pytest.mark.django_db
def test_the_console_still_shows_who_plays_each_seat(client, django_user_model):
    owner = make_instructor(django_user_model, "rita")
    game, _, _ = seat_study(client, "hidden")
    Game.objects.filter(pk=game.pk).update(owner=owner)
    client.force_login(owner)
    console = client.get(f"/console/games/{game.code}/").content.decode()
    assert "1 played by students, 1 by programs" in console and PERSON in console
    projector = client.get(f"/console/games/{game.code}/projector/").content.decode()
    assert "data-bots-hidden" in projector  # the wall hides names, waiting and ranking


@pytest.mark.django_db
def test_with_hidden_bots_the_peoples_labs_are_drawn_not_the_first_ones():
    experiment = study.experiment_create(design=design("hidden", rooms=4))
    seats = set()
    for number in range(4):
        room = study._open_room(experiment, "only")
        assert room is not None and room.number == number + 1
        humans = Seat.objects.filter(game=room.game, kind=Seat.Kind.HUMAN)
        seats.add(frozenset(s.lab_index for s in humans))
        services.seat_join(game=room.game, nickname="a")
        services.seat_join(game=room.game, nickname="b")
    assert all(len(labs) == 2 for labs in seats)
    assert seats != {frozenset({0, 1})}
    revealed = study.experiment_create(design=design("revealed"))
    room = study._open_room(revealed, "only")
    assert room is not None
    humans = Seat.objects.filter(game=room.game, kind=Seat.Kind.HUMAN)
    assert {s.lab_index for s in humans} == {0, 1}
