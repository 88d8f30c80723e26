"""Fuzz: whatever a client sends, the server answers it and changes nothing it refused.

Hypothesis draws inputs for each JSON endpoint (join, rejoin, the game lookup) and for each socket
command (bid, decide, audit, sync, unknown types, frames that are not JSON objects) of a lab and of
the governor, in JSON and as htmx's form strings. For every input: no 5xx, no socket closed with
1011, no ERROR in the log (no traceback), and a refused input changes no seat and no move. Bounded
(a few hundred inputs, no deadline) so the suite stays quick.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from typing import Any
from urllib.parse import quote

import pytest
from asgiref.sync import async_to_sync
from django.test import Client, override_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from permitgame import services
from permitgame.models import Game, Move, Seat
from sim_core import load_preset
from tests.permitgame.wire import Socket, api_path, html_path

#: How many inputs each test tried (the report's figure; printed with -s).
TRIED: dict[str, int] = {}
#: No rate limit gets in the way of the fuzz (they are tested in test_rate_limits.py).
NO_LIMITS = dict.fromkeys(("code_miss", "join", "rejoin_miss", "rejoin_miss_game"), (10**9, 60))
# Derandomized: the same inputs each run, so CI never fails on a draw no one can reproduce (run
# with a higher max_examples and derandomize off to search further).
FUZZ = settings(
    max_examples=80,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# ------------------------------------------------------------------------------ strategies

#: Values that broke a field once, or might: not plain integers, too big for a float, not finite.
NASTY = st.sampled_from(
    [
        "--1", "²", "١", "1e400", "-1e400", "NaN", "nan", "inf", "-Infinity", "0x10", "1_000",
        " ", "", "\x00", "\u202e", "1,2,3", "0,25", "true", "null", 10**400, -(10**400), 2**63,
        -(2**63) - 1, float("nan"), float("inf"), float("-inf"), True, False, None, [], {},
        [[[[[]]]]], {"a": {"b": {}}},
    ]
)  # fmt: skip
JSON_ANY = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
FIELD = NASTY | JSON_ANY | st.integers(-3, 3) | st.floats(-1, 2)
FIELD_TEXT = NASTY.map(str) | st.text(max_size=12) | st.integers(-3, 3).map(str)


def command(kind: str, field: Any) -> Any:
    return st.fixed_dictionaries(
        {"type": st.just(kind)},
        optional={"round": field, "amount": field, "run": field, "labs": st.lists(field) | field},
    )


def frames(field: Any) -> Any:
    """One socket frame: a command of each type with drawn fields, or raw text."""
    commands = st.one_of(
        *(command(kind, field) for kind in ("bid", "decide", "audit")),
        st.fixed_dictionaries({"type": FIELD}, optional={"round": field}),
        st.just({"type": "sync"}),
    )
    raw = st.one_of(
        st.text(max_size=40),
        st.integers(1, 100_000).map(lambda n: "[" * n + "]" * n),
        st.integers(1, 100_000).map(lambda n: '{"type":"bid","round":' + "[" * n + "]" * n + "}"),
        st.integers(300, 4000).map(lambda n: '{"type":"bid","round":1,"amount":' + "9" * n + "}"),
        st.sampled_from(["NaN", "null", "[]", "1", '"bid"', '{"type":"bid","amount":NaN}']),
    )
    return commands.map(lambda c: json.dumps(c, allow_nan=True, default=str)) | raw


def _scenario(labs: int = 4) -> Any:
    scenario = load_preset("targeted_audit")
    return scenario.with_changes(
        labs=replace(scenario.labs, count=labs), market=replace(scenario.market, token_cap=2)
    )


def _state(game: Game) -> tuple[int, int]:
    return (
        Seat.objects.filter(game=game, token__isnull=False).count(),
        Move.objects.filter(game=game).count(),
    )


def _errors(caplog: Any) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


# ------------------------------------------------------------------------------ JSON endpoints


@pytest.mark.django_db
@FUZZ
@given(
    body=st.fixed_dictionaries(
        {}, optional={"nickname": FIELD | st.text(max_size=30), "role": FIELD, "join_key": FIELD}
    )
    | JSON_ANY
    | st.binary(max_size=40),
    path=st.sampled_from(["join", "rejoin"]),
)
def test_fuzz_json_endpoints_answer_without_5xx_and_change_nothing_they_refuse(caplog, body, path):
    caplog.set_level(logging.ERROR)
    game = Game.objects.filter(title="fuzz").first() or services.game_create(
        scenario=_scenario(labs=200), human_labs=200, title="fuzz"
    )
    if isinstance(body, bytes):
        data: Any = body
    elif isinstance(body, dict) and path == "rejoin":
        data = json.dumps({"rejoin_code": body.get("nickname")}, default=str)
    else:
        data = json.dumps(body, allow_nan=True, default=str)
    before = _state(game)
    with override_settings(RATE_LIMITS=NO_LIMITS):
        response = Client().post(
            f"/api/games/{game.code}/{path}", data, content_type="application/json"
        )
        # A code is one path segment (a "/" would make it another URL, a plain 404 page).
        code = quote(str(body)[:20].replace("/", "").replace("\\", ""), safe="")
        lookup = Client().get(f"/api/games/{code}")
    TRIED["json"] = TRIED.get("json", 0) + 2
    for answer in (response, lookup):
        assert answer.status_code < 500, answer.content[:300]
        assert answer["Content-Type"].startswith("application/json")
        if answer.status_code >= 400:
            assert answer.json()["type"] == "error" and answer.json()["code"]
    if response.status_code >= 400:
        assert _state(game) == before
    assert _errors(caplog) == []


# ------------------------------------------------------------------------------ socket commands


async def _play(path: str, fmt: str, texts: list[str], game_id: int) -> list[str]:
    """Send each frame; return the reply codes ("ack" or the error code), checking each."""
    from tests.permitgame.wire import db

    socket = Socket(path, fmt=fmt)
    await socket.connect()
    await socket.drain(quiet=0.05)
    codes = []
    try:
        for text in texts:
            before = await db(lambda: Move.objects.filter(game_id=game_id).count())()
            # send_input, not send_to: an empty frame is a frame too.
            await socket.communicator.send_input({"type": "websocket.receive", "text": text})
            reply = None
            while reply is None:
                output = await socket.communicator.receive_output(timeout=10)
                assert output["type"] == "websocket.send", output  # never closed (1011)
                message = output["text"]
                if fmt == "json":
                    parsed = json.loads(message)
                    if parsed["type"] in ("ack", "error", "state"):
                        reply = parsed["type"] if parsed["type"] != "error" else parsed["code"]
                elif 'id="flash"' in message or 'id="phase"' in message:
                    reply = "error" if "flash-error" in message else "ok"
            assert reply != "server_error", text[:200]
            codes.append(reply)
            if reply not in ("ack", "ok", "state"):
                after = await db(lambda: Move.objects.filter(game_id=game_id).count())()
                assert after == before, (text[:200], reply)
    finally:
        await socket.close()
    return codes


def _running_game() -> tuple[Game, Seat, Seat]:
    game = Game.objects.filter(title="fuzz-socket").first()
    if game is None:
        game = services.game_create(
            scenario=_scenario(), human_labs=1, human_governor=True, title="fuzz-socket"
        )
        services.seat_join(game=game, nickname="Ana")
        services.seat_join(game=game, nickname="Gil")
        services.game_start(game=game)
    lab = game.seats.get(nickname="Ana")
    governor = game.seats.get(nickname="Gil")
    return game, lab, governor


@pytest.mark.django_db(transaction=True)
@settings(FUZZ, max_examples=25)
@given(
    texts=st.lists(frames(FIELD), min_size=3, max_size=6),
    texts_html=st.lists(frames(FIELD_TEXT), min_size=1, max_size=3),
    who=st.sampled_from(["lab", "governor"]),
)
def test_fuzz_socket_commands_are_answered_and_refusals_change_nothing(
    caplog, texts, texts_html, who
):
    caplog.set_level(logging.ERROR)
    game, lab, governor = _running_game()
    seat = lab if who == "lab" else governor
    async_to_sync(_play)(api_path(game.code, seat.token), "json", texts, game.pk)
    # htmx's ws-send: the same commands as form strings, with its HEADERS.
    forms = [
        json.dumps({**json.loads(t), "HEADERS": {"HX-Request": "true"}})
        if t.startswith("{") and _is_object(t)
        else t
        for t in texts_html
    ]
    async_to_sync(_play)(html_path(game.code, seat.token), "html", forms, game.pk)
    TRIED["socket"] = TRIED.get("socket", 0) + len(texts) + len(forms)
    assert _errors(caplog) == []


def _is_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except (ValueError, RecursionError):
        return False


def test_fuzz_tried_enough_inputs():
    """Runs after the fuzz tests in this module (pytest keeps the file's order)."""
    if not TRIED:
        pytest.skip("the fuzz tests did not run in this session")
    print(f"fuzz inputs tried: {TRIED}")
    assert TRIED.get("json", 0) >= 100 and TRIED.get("socket", 0) >= 50
