"""What players send that the server cannot read is refused with a message, never a crash.

The fields (permitgame/forms.py) serve the websocket's JSON and htmx commands alike; the JSON join
is as strict about types as the scenario format; a join key finds only its own request's seat.
"""

import json

import pytest
from django.test import Client
from hypothesis import given, settings
from hypothesis import strategies as st

from permitgame import services
from permitgame.errors import BadNickname
from permitgame.forms import (
    AskForm,
    AuditForm,
    BeliefForm,
    BidForm,
    DecideForm,
    JoinForm,
    KeepForm,
    clean_json,
)
from permitgame.models import Move, Seat

# ------------------------------------------------------------------------------ fields


@pytest.mark.parametrize(
    "labs",
    [["--1"], ["²"], ["١"], ["1e3"], ["+-2"], [1.5], [True], [[1]], [{"a": 1}], [10**400], None],
)
def test_audit_list_that_is_not_player_ids_is_a_form_error(labs):
    data = {"round": 1, "labs": labs} if labs is not None else {"round": 1, "labs": {"x": 1}}
    form = AuditForm(data)
    assert not form.is_valid()
    assert form.errors["labs"] == ["must be a list of player ids (integers)."]


def test_audit_list_reads_ids_from_json_and_from_form_text():
    assert AuditForm({"round": 1, "labs": [1, "2", " 3 ", "-4"]}).is_valid()
    form = AuditForm({"round": "1", "labs": ["1", "2"]})
    assert form.is_valid() and form.cleaned_data["labs"] == [1, 2]
    too_many = AuditForm({"round": 1, "labs": [1] * 10_001})
    assert not too_many.is_valid() and "at most" in too_many.errors["labs"][0]


@pytest.mark.parametrize(
    "amount",
    [
        10**400,
        -(10**400),
        float("nan"),
        float("inf"),
        "nan",
        "inf",
        "1e999",
        "-Infinity",
        True,
        False,
        [0.1],
        {"v": 1},
        "²",
        "0,2,5",
    ],
)
def test_bid_amount_that_is_not_a_finite_number_is_a_form_error(amount):
    form = BidForm({"round": 1, "amount": amount})
    assert not form.is_valid()
    assert form.errors["amount"] == ["Enter a number, like 0.25."]


def test_bid_amount_reads_numbers_and_comma_decimals():
    for raw, value in ((0.25, 0.25), (3, 3.0), ("0,25", 0.25), (" 1.5 ", 1.5)):
        form = BidForm({"round": 1, "amount": raw})
        assert form.is_valid() and form.cleaned_data["amount"] == value


@pytest.mark.parametrize("round_no", [10**400, True, 1.0, [1], {}, "²", "x", 0, -3])
def test_round_that_is_not_a_round_number_is_a_form_error(round_no):
    assert "round" in BidForm({"round": round_no, "amount": 0.1}).errors
    assert "round" in DecideForm({"round": round_no, "run": True}).errors


@pytest.mark.parametrize("run", [1.5, [], {}, "maybe", None, 10**400])
def test_run_that_is_not_yes_or_no_is_a_form_error(run):
    assert "run" in DecideForm({"round": 1, "run": run}).errors


# ------------------------------------------------------------------------------ JSON join


def _game(scenario, **options):
    options.setdefault("human_labs", 2)
    options.setdefault("human_governor", True)
    return services.game_create(scenario=scenario, **options)


def _post(client, path, body):
    data = body if isinstance(body, str) else json.dumps(body)
    return client.post(path, data, content_type="application/json")


def _counts(game):
    return (
        Seat.objects.filter(game=game, token__isnull=False).count(),
        Move.objects.filter(game=game).count(),
    )


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["join", "rejoin"])
def test_deeply_nested_json_is_a_bad_request_not_a_server_error(client, small_scenario, path):
    game = _game(small_scenario)
    before = _counts(game)
    deep = '{"nickname":' + "[" * 100_000 + "]" * 100_000 + "}"
    response = _post(client, f"/api/games/{game.code}/{path}", deep)
    assert response.status_code == 400
    assert response.json()["type"] == "error" and response.json()["code"] == "bad_request"
    assert _counts(game) == before


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ({"nickname": 123}, "bad_nickname", "nickname"),
        ({"nickname": ["ana"]}, "bad_nickname", "nickname"),
        ({"nickname": True}, "bad_nickname", "nickname"),
        ({"nickname": {"a": "b"}}, "bad_nickname", "nickname"),
        ('{"nickname": NaN}', "bad_nickname", "nickname"),
        ({"nickname": "Ana", "role": []}, "bad_request", "role"),
        ({"nickname": "Ana", "role": {}}, "bad_request", "role"),
        ({"nickname": "Ana", "role": 1}, "bad_request", "role"),
        ({"nickname": "Ana", "role": "king"}, "bad_request", "role"),
        ({"nickname": "Ana", "join_key": ["k" * 20]}, "bad_request", "join_key"),
        ({"nickname": "Ana", "join_key": 12345678901234567890}, "bad_request", "join_key"),
        ({"nickname": "Ana", "join_key": "short"}, "bad_request", "join_key"),
        ({"nickname": "Ana", "join_key": "k" * 65}, "bad_request", "join_key"),
    ],
)
def test_json_join_refuses_wrong_types_naming_the_field(client, small_scenario, body, code, field):
    game = _game(small_scenario)
    before = _counts(game)
    response = _post(client, f"/api/games/{game.code}/join", body)
    assert response.status_code == 400
    answer = response.json()
    assert (answer["type"], answer["code"]) == ("error", code)
    assert field.replace("_", " ") in answer["message"].lower()  # the field, in a reader's words
    assert _counts(game) == before


@pytest.mark.django_db
@pytest.mark.parametrize("nickname", ["Ana\tLee", "Ana\nLee", "A\x1b[31m", "Ana\u200b", "x\x7f"])
def test_control_characters_in_a_nickname_are_refused_not_folded(client, small_scenario, nickname):
    game = _game(small_scenario)
    before = _counts(game)
    response = _post(client, f"/api/games/{game.code}/join", {"nickname": nickname})
    assert (response.status_code, response.json()["code"]) == (400, "bad_nickname")
    with pytest.raises(BadNickname):
        services.clean_nickname(nickname)
    page = Client().post("/join/", {"code": game.code, "nickname": nickname})
    assert page.status_code == 400 and "printable" in page.content.decode()
    assert _counts(game) == before


def test_runs_of_spaces_in_a_nickname_still_become_one():
    assert services.clean_nickname("  Ana \u3000  Lee ") == "Ana Lee"


def test_join_form_takes_text_and_a_long_key():
    form = JoinForm({"nickname": "Ana", "role": "lab", "join_key": "k" * 16})
    assert form.is_valid()


@pytest.mark.django_db
def test_a_join_key_returns_the_seat_only_to_the_same_nickname(client, small_scenario):
    game = _game(small_scenario)
    path = f"/api/games/{game.code}/join"
    key = "Zq1u8F3c-0mV2rLx9"
    first = _post(client, path, {"nickname": "Ana", "join_key": key})
    assert first.status_code == 201
    replay = _post(client, path, {"nickname": "Mallory", "join_key": key})
    assert replay.status_code == 201
    assert replay.json()["token"] != first.json()["token"]
    assert replay.json()["player_id"] != first.json()["player_id"]
    # Ana's own resend still finds her seat.
    again = _post(client, path, {"nickname": "Ana", "join_key": key})
    assert again.json()["token"] == first.json()["token"]
    # The form's key, sent by another nickname, does not hand over the seat either.
    taken = Client().post("/join/", {"code": game.code, "nickname": "Eve", "join_key": key})
    assert taken.status_code == 302
    assert Seat.objects.get(game=game, nickname="Eve").token != first.json()["token"]


@pytest.mark.django_db
def test_the_join_page_and_the_client_make_keys_long_enough(client, small_scenario):
    import re
    import secrets

    game = _game(small_scenario)
    page = client.get(f"/join/{game.code}/").content.decode()
    key = re.search(r'name="join_key" value="([^"]+)"', page).group(1)
    assert len(key) >= 16
    assert JoinForm({"nickname": "A", "join_key": key}).is_valid()
    # permitgame/client.py sends secrets.token_urlsafe(16): 22 characters (its joins in
    # test_processes.py and test_commands.py go through this form).
    assert JoinForm({"nickname": "A", "join_key": secrets.token_urlsafe(16)}).is_valid()
    # A short key posted by a form is replaced by a fresh one, not stored.
    short = Client().post("/join/", {"code": game.code, "nickname": "Bo", "join_key": "abc"})
    assert short.status_code == 302
    assert len(Seat.objects.get(game=game, nickname="Bo").join_key) >= 16


# ------------------------------------------------------------------ the JSON commands' fast path

#: Values at the edges of what each field takes, and JSON of any shape.
_EDGES = st.sampled_from(
    [
        *(0, 1, 2, 100, 101, -1, 10**6, 10**6 + 1, 10**9, 10**9 + 1, 2**70, 0.5, -0.0, 1e308),
        *(True, False, None, [], [1, 2], [0], [True], [1.0], ["1"], [10**9 + 1], "1", "0,25", ""),
    ]
)
_JSON_VALUES = _EDGES | st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**12), max_value=10**12)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=4),
    max_leaves=6,
)
_COMMAND_FORMS = [BidForm, AskForm, KeepForm, DecideForm, BeliefForm, AuditForm]
_FIELD_NAMES = ["round", "amount", "run", "percent", "labs", "type"]


#: A value each field takes (a well-formed command), to mix with values of any other kind.
_GOOD = {
    "round": st.integers(min_value=1, max_value=10**6),
    "amount": st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(10**9), 10**9),
    "run": st.booleans(),
    "percent": st.integers(min_value=0, max_value=100),
    "labs": st.lists(st.integers(min_value=-(10**9), max_value=10**9), max_size=5),
    "type": st.sampled_from(["bid", "decide"]),
}


@settings(max_examples=1000, deadline=None)
@given(form_class=st.sampled_from(_COMMAND_FORMS), data=st.data())
def test_a_json_command_read_without_its_form_is_read_as_the_form_reads_it(form_class, data):
    # Each field well formed, of any other kind, or missing; the other fields at times too.
    content = {}
    for name in _FIELD_NAMES:
        kind = data.draw(st.sampled_from(["good", "good", "good", "any", "missing"]))
        if kind != "missing" and (name in form_class.base_fields or data.draw(st.booleans())):
            content[name] = data.draw(_GOOD[name] if kind == "good" else _JSON_VALUES)
    # The moves of a room are read on the event loop every socket shares, without building
    # each command's form when its JSON is plain; whatever that reads, the form reads the same
    # (anything else is left to the form, which words the error).
    fast = clean_json(form_class, content)
    form = form_class(content)
    try:
        valid = form.is_valid()
    except (ArithmeticError, ValueError, TypeError):
        valid = False
    if fast is not None:
        assert valid, (content, form.errors)
        cleaned = {name: form.cleaned_data[name] for name in form.fields}
        assert fast == cleaned and all(type(fast[name]) is type(cleaned[name]) for name in fast), (
            content,
            fast,
            cleaned,
        )


@pytest.mark.parametrize(
    ("form_class", "content"),
    [
        (BidForm, {"type": "bid", "round": 2, "amount": 0.4321}),
        (BidForm, {"round": 1, "amount": 3}),
        (DecideForm, {"round": 1, "run": False}),
        (AuditForm, {"round": 3, "labs": [1, 5, 7]}),
        (AuditForm, {"round": 3}),
        (BeliefForm, {"round": 1, "percent": 0}),
        (KeepForm, {"round": 4}),
        (AskForm, {"round": 1, "amount": 0.0}),
    ],
)
def test_the_plain_json_of_each_command_takes_the_fast_path(form_class, content):
    assert clean_json(form_class, content) is not None
