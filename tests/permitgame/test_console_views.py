"""The instructor's console through Django's test client: who may see what, the create-a-game
form, every control, presets, the debrief and its downloads.

Controls are posted as htmx does (``HX-Request``) unless a test says otherwise: the answer is the
``#console-flash`` fragment with the live fragments out of band, 200 when the control worked and
the service's status (400, 409, 410) with a message when it was refused. A refused control must
leave the game exactly as it was, which ``snapshot`` checks (the version, the status, the clock
and the whole move log).
"""

from __future__ import annotations

import copy
import csv
import datetime as dt
import html
import io
import re
from typing import Any
from unittest import mock

import pytest
from django.urls import reverse

from permitgame import debrief, exports, services
from permitgame.console.forms import GameSetupForm, initial_from
from permitgame.console.views import ALREADY_OVER, CHOOSE_GOVERNOR, EXTEND_BY, HAND_HOW
from permitgame.models import (
    DEFAULT_DURATIONS,
    Action,
    Controller,
    DebriefCache,
    Game,
    Move,
    SavedPreset,
    Seat,
    Status,
)
from sim_core import Role, load_preset
from sim_core.theory import expected_bot_price
from tests.permitgame.console_fixtures import (
    PASSWORD,
    make_instructor,
    play_to_end,
    small_game,
    small_scenario,
)

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


# ------------------------------------------------------------------------------ fixtures


@pytest.fixture
def staff(django_user_model):
    return make_instructor(django_user_model, "root", is_staff=True)


@pytest.fixture
def game(ana):
    return small_game(ana)


@pytest.fixture
def as_ana(client, ana):
    client.force_login(ana)
    return client


def url(name: str, *args: Any) -> str:
    return reverse(f"console:{name}", args=args)


def control(client, game: Game, action: str, *, htmx: bool = True, **data: Any):
    extra = HTMX if htmx else {}
    return client.post(url("control", game.code, action), data, **extra)


def text(response) -> str:
    """The answer's text, with HTML's character references read (``&#x27;`` is ``'``)."""
    return html.unescape(response.content.decode())


def flash(response) -> str:
    """The text of the ``#console-flash`` fragment of a control's answer."""
    match = re.search(r'<div id="console-flash"[^>]*>(.*?)</div>', text(response), re.S)
    assert match, text(response)[:500]
    return match.group(1).strip()


def snapshot(game: Game) -> dict[str, Any]:
    """Everything a refused control must leave alone."""
    game = Game.objects.get(pk=game.pk)
    seats = list(
        Seat.objects.filter(game=game)
        .order_by("pk")
        .values_list(
            "pk", "role", "lab_index", "kind", "controller", "handed_to_bot", "fallback_strategy"
        )
    )
    return {
        "version": game.version,
        "status": game.status,
        "round": game.round_no,
        "phase": game.phase,
        "deadline": game.phase_deadline,
        "paused_remaining": game.paused_remaining,
        "labs": game.lab_count,
        "human_governor": game.human_governor,
        "moves": Move.objects.filter(game=game).count(),
        "seats": seats,
    }


def fresh(game: Game) -> Game:
    return Game.objects.get(pk=game.pk)


def join(game: Game, *names: str) -> list[Seat]:
    return [services.seat_join(game=game, nickname=name) for name in names]


def running_game(owner: Any, *names: str) -> tuple[Game, list[Seat]]:
    """A started game in round 1's bidding, waiting for the students ``names``."""
    game = small_game(owner)
    seats = join(game, *names)
    services.game_start(game=game)
    game = fresh(game)
    assert game.status == Status.RUNNING and game.phase == "bidding"
    return game, seats


def finished_game(owner: Any) -> Game:
    game = small_game(owner)
    join(game, "Ada")
    return play_to_end(game)


#: The debrief's simulations, by part, cache key and scenario: the finished games of these tests
#: are all one small scenario, so each simulation runs once for the module (about 0.4 s each);
#: what the tests check is the views over the stored rows. The simulations' own tests are in
#: tests/sim_core and test_story_debrief.py.
_SIMULATED: dict[tuple[str, str, str], dict[str, Any]] = {}


def compute_debrief(game: Game) -> None:
    """Compute both expensive parts now, so the pages find them done (no background thread).

    ``debrief.ensure`` stores each part's row for ``game`` as always; only a simulation this
    module already ran for the same scenario and key is handed back instead of run again.
    """
    for kind in debrief.KINDS:
        key = (kind, debrief.cache_key(game, kind), repr(debrief.debrief_scenario(game)))
        simulate = debrief._COMPUTE[kind]

        def once(game: Game, progress: Any, key: Any = key, simulate: Any = simulate) -> Any:
            if key not in _SIMULATED:
                _SIMULATED[key] = simulate(game, progress)
            return copy.deepcopy(_SIMULATED[key])

        with mock.patch.dict(debrief._COMPUTE, {kind: once}):
            cache = debrief.ensure(game, kind, background=False)
        assert cache.status == DebriefCache.Status.DONE


def form_data(preset: str = "targeted_audit", **changes: Any) -> dict[str, Any]:
    """The create form as the page fills it for ``preset``, with ``changes`` typed over it."""
    initial = initial_from(
        load_preset(preset),
        human_governor=False,
        durations=dict(DEFAULT_DURATIONS),
        preset=preset,
    )
    data = {key: "" if value is None else value for key, value in initial.items()}
    data.update(title="Monday class", action="create")
    data.update(changes)
    return data


# ------------------------------------------------------------------------------ who may see what

#: Every console URL that names a game: (method, url name, extra args, POST data).
GAME_URLS = [
    ("get", "game", (), None),
    ("get", "projector", (), None),
    ("get", "debrief", (), None),
    ("get", "debrief-part", ("heatmap",), None),
    ("post", "debrief-part", ("classes",), {}),
    ("get", "chart-csv", ("price",), None),
    ("get", "chart-csv", ("heatmap",), None),
    ("get", "chart-csv", ("classes",), None),
    ("get", "export-csv", ("rounds",), None),
    ("get", "export-csv", ("leaderboard",), None),
    ("get", "export-csv", ("classes-compared",), None),
    ("get", "export-csv", ("labs",), None),
    ("get", "export-csv", ("log",), None),
    ("post", "control", ("start",), {}),
    ("post", "control", ("pause",), {}),
    ("post", "control", ("resume",), {}),
    ("post", "control", ("extend",), {"seconds": "30"}),
    ("post", "control", ("advance",), {}),
    ("post", "control", ("end",), {}),
    ("post", "add-bot", (), {}),
    ("post", "remove-bot", (), {}),
    ("post", "governor", (), {"seat": "bot"}),
]
GAME_URL_IDS = [
    f"{method}-{name}-{'-'.join(args) or 'page'}" for method, name, args, _ in GAME_URLS
]


def request(client, method: str, name: str, code: str, args: tuple[str, ...], data: Any, **extra):
    address = url(name, code, *args)
    if method == "get":
        return client.get(address, **extra)
    return client.post(address, data or {}, **extra)


@pytest.mark.parametrize(("method", "name", "args", "data"), GAME_URLS, ids=GAME_URL_IDS)
def test_anonymous_visitor_is_sent_to_the_login_when_opening_a_console_url(
    client, game, method, name, args, data
):
    before = snapshot(game)
    response = request(client, method, name, game.code, args, data)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login") + "?next=")
    assert snapshot(game) == before


@pytest.mark.parametrize("name", ["home", "new"])
def test_anonymous_visitor_is_sent_to_the_login_when_opening_a_list(client, name):
    response = client.get(url(name))
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('login')}?next={url(name)}"


@pytest.mark.parametrize(("method", "name", "args", "data"), GAME_URLS, ids=GAME_URL_IDS)
def test_another_instructor_is_refused_and_nothing_changes_when_using_a_console_url(
    client, ben, game, method, name, args, data
):
    client.force_login(ben)
    before = snapshot(game)
    response = request(client, method, name, game.code, args, data)
    assert response.status_code == 403
    assert f"Game {game.code} belongs to another instructor" in text(response)
    assert snapshot(game) == before
    assert not DebriefCache.objects.filter(game=game).exists()


@pytest.mark.parametrize(("method", "name", "args", "data"), GAME_URLS, ids=GAME_URL_IDS)
def test_another_instructor_is_refused_with_htmx_too_when_using_a_console_url(
    client, ben, game, method, name, args, data
):
    client.force_login(ben)
    before = snapshot(game)
    response = request(client, method, name, game.code, args, data, **HTMX)
    assert response.status_code == 403
    assert snapshot(game) == before


def test_another_instructor_cannot_hand_a_seat_of_a_game_not_theirs(client, ana, ben):
    game, (ada,) = running_game(ana, "Ada")
    client.force_login(ben)
    before = snapshot(game)
    response = client.post(url("hand", game.code, ada.pk), {"to_bot": "1"}, **HTMX)
    assert response.status_code == 403
    assert snapshot(game) == before


def test_another_instructor_is_refused_the_debrief_of_a_finished_game(client, ana, ben):
    game = finished_game(ana)
    compute_debrief(game)
    client.force_login(ben)
    for name, args in (
        ("debrief", ()),
        ("debrief-part", ("heatmap",)),
        ("debrief-part", ("classes",)),
        ("chart-csv", ("heatmap",)),
        ("chart-csv", ("heatmap-deterrence_rate",)),
        ("chart-csv", ("classes",)),
        ("chart-csv", ("compliance",)),
        ("export-csv", ("rounds",)),
        ("export-csv", ("leaderboard",)),
        ("export-csv", ("labs",)),
        ("export-csv", ("log",)),
    ):
        response = client.get(url(name, game.code, *args))
        assert response.status_code == 403, name
        assert "Lab 1" not in text(response)


@pytest.mark.parametrize(("method", "name", "args", "data"), GAME_URLS, ids=GAME_URL_IDS)
def test_unknown_code_is_not_found_when_using_a_console_url(as_ana, method, name, args, data):
    response = request(as_ana, method, name, "NOPE42", args, data)
    assert response.status_code == 404
    assert "NOPE42" in text(response)


def test_owner_opens_the_console_by_a_lower_case_code(as_ana, game):
    response = as_ana.get(url("game", game.code.lower()))
    assert response.status_code == 200


def test_games_list_shows_only_own_games_when_not_staff(as_ana, ana, ben, game):
    theirs = small_game(ben)
    response = as_ana.get(url("home"))
    assert response.status_code == 200
    assert game.code in text(response)
    assert theirs.code not in text(response)
    assert "Instructor</th>" not in text(response)


def test_staff_see_every_game_with_its_instructor_when_listing(client, staff, ana, ben, game):
    theirs = small_game(ben)
    client.force_login(staff)
    content = text(client.get(url("home")))
    assert game.code in content and theirs.code in content
    assert "Instructor</th>" in content
    assert ">ana<" in content and ">ben<" in content


def test_staff_open_and_control_another_instructors_game(client, staff, ana):
    game = finished_game(ana)
    compute_debrief(game)
    live, _ = running_game(ana, "Ada")
    client.force_login(staff)
    for name in ("game", "projector", "debrief"):
        assert client.get(url(name, game.code)).status_code == 200, name
    for name, args in (("chart-csv", ("heatmap",)), ("export-csv", ("leaderboard",))):
        assert client.get(url(name, game.code, *args)).status_code == 200, name
    response = control(client, live, "pause")
    assert response.status_code == 200
    assert fresh(live).status == Status.PAUSED


def test_inactive_account_cannot_run_its_own_game(client, ana, game):
    ana.is_active = False
    ana.save()
    client.force_login(ana)
    response = client.get(url("game", game.code))
    assert response.status_code in (302, 403)


def test_login_page_logs_an_instructor_in_and_names_a_wrong_password(client, ana):
    response = client.post(reverse("login"), {"username": "ana", "password": "wrong"})
    assert response.status_code == 200
    assert "do not match an instructor account" in text(response)
    response = client.post(
        reverse("login"), {"username": "ana", "password": PASSWORD, "next": url("new")}
    )
    assert response.status_code == 302
    assert response["Location"] == url("new")


def test_logout_sends_the_instructor_back_to_the_login(as_ana):
    response = as_ana.post(reverse("logout"))
    assert response.status_code == 302
    assert as_ana.get(url("home")).status_code == 302


# ------------------------------------------------------------------------------ the create form


def test_create_form_explains_every_field_when_opened(as_ana):
    response = as_ana.get(url("new"))
    assert response.status_code == 200
    content = text(response)
    form = GameSetupForm(presets=[])
    for name, field in form.fields.items():
        assert f'name="{name}"' in content, name
        if field.widget.is_hidden:  # the page's own bookkeeping (the cap it filled in)
            continue
        assert str(field.label) in content or name == "preset", name
        if field.help_text:
            assert str(field.help_text) in content, name
        if name != "preset":
            assert f'aria-describedby="id_{name}_helptext"' in content, name


def test_create_form_is_filled_from_the_preset_when_one_is_chosen(as_ana):
    response = as_ana.get(url("new"), {"preset": "random_audit", "title": "Week 3"}, **HTMX)
    assert response.status_code == 200
    content = text(response)
    assert content.lstrip().startswith('<form id="setup-form"')
    assert "<nav" not in content
    scenario = load_preset("random_audit")
    assert f'name="base_prob" value="{scenario.audit.base_prob}"' in content
    assert '<option value="random_audit" selected>' in content
    assert 'name="title" value="Week 3"' in content  # typed before the preset was chosen
    assert 'hx-include="#id_title"' in content


def test_create_form_falls_back_to_a_shipped_preset_when_the_choice_is_unknown(as_ana, ben):
    theirs = services.preset_save(
        owner=ben, name="Ben's", scenario=small_scenario(labs=7), human_governor=True, durations={}
    )
    response = as_ana.get(url("new"), {"preset": f"saved:{theirs.pk}"})
    assert response.status_code == 200
    assert '<option value="targeted_audit" selected>' in text(response)
    assert 'name="labs" value="7"' not in text(response)


def test_valid_form_creates_the_owners_game_with_the_typed_values(as_ana, ana):
    data = form_data(
        labs=6,
        rounds=3,
        token_cap=3,
        fine=1.25,
        beta=0.8,
        governor="human",
        seed=7,
        bidding_seconds=45,
        compliance_seconds="",
    )
    response = as_ana.post(url("new"), data)
    game = Game.objects.get()
    assert response.status_code == 302
    assert response["Location"] == url("game", game.code)
    assert game.owner == ana
    assert game.title == "Monday class"
    assert game.lab_count == 6 and game.rounds == 3
    assert game.scenario["market"]["token_cap"] == 3
    assert game.scenario["audit"]["fine"] == 1.25
    assert game.scenario["audit"]["beta"] == 0.8
    assert game.seed == 7
    assert game.human_governor
    assert game.durations["bidding"] == 45 and game.durations["compliance"] is None
    assert Seat.objects.filter(game=game, role=Role.LAB).count() == 6
    assert game.status == Status.LOBBY


def test_fixed_price_market_is_created_when_chosen(as_ana):
    response = as_ana.post(
        url("new"), form_data(market_type="fixed_price", fixed_price=0.4, token_cap="")
    )
    assert response.status_code == 302
    market = Game.objects.get().scenario["market"]
    assert market["type"] == "fixed_price" and market["fixed_price"] == 0.4


BAD_VALUES = [
    ({"beta": "1.5"}, "beta", "Signal strength (β)", "1.5"),
    ({"fine": "-1"}, "fine", "Fine (φ)", "at least 0"),
    ({"labs": "0"}, "labs", "Labs (N)", "at least 1"),
    ({"rounds": "0"}, "rounds", "Rounds", "at least 1"),
    ({"alpha": "-0.1"}, "alpha", "False alarms (α)", "[0, 1]"),
    ({"high_prob": "2"}, "high_prob", "Audit after a signal (π1)", "[0, 1]"),
    ({"base_prob": "1.01"}, "base_prob", "Audit without a signal (π0)", "[0, 1]"),
    ({"backcheck_prob": "-1"}, "backcheck_prob", "Backcheck (p_b)", "[0, 1]"),
    ({"collateral": "-0.5"}, "collateral", "Collateral (K)", "at least 0"),
    ({"max_audits": "-1"}, "max_audits", "Audit cap", "at least 0"),
    ({"seed": "-3"}, "seed", "Seed", "at least 0"),
    ({"token_cap": ""}, "token_cap", "Token cap (Q)", "cap-and-trade"),
    ({"market_type": "fixed_price"}, "fixed_price", "Fixed price", "fixed-price"),
    ({"alpha": "abc"}, "alpha", "False alarms (α)", "number"),
    ({"labs": "2.5"}, "labs", "Labs (N)", "whole number"),
    ({"bidding_seconds": "-5"}, "bidding_seconds", "Bidding", "0"),
    ({"labs": "100000"}, "labs", "Labs (N)", "1000"),
]


@pytest.mark.parametrize(
    ("changes", "field", "label", "detail"), BAD_VALUES, ids=[b[1] + "-" for b in BAD_VALUES]
)
def test_bad_value_is_named_under_its_field_and_nothing_is_created(
    as_ana, changes, field, label, detail
):
    response = as_ana.post(url("new"), form_data(**changes))
    assert response.status_code == 400
    form = response.context["form"]
    assert list(form.errors) == [field], form.errors
    (message,) = form.errors[field]
    assert label in message, message
    assert detail in message, message
    content = text(response)
    block = re.search(
        rf'<div class="field field-error" data-field="{field}">(.*?)</div>', content, re.S
    )
    assert block, f"no error block for {field}"
    assert f'<p class="error" id="id_{field}_error">{message}</p>' in block.group(1)
    assert 'aria-invalid="true"' in block.group(1)
    assert f'aria-describedby="id_{field}_helptext id_{field}_error"' in block.group(1)
    summary = re.search(
        r'<div class="flash-error" role="alert" id="form-errors">(.*?)</div>', content, re.S
    )
    assert summary, "no summary of the errors"
    assert "see the messages under the fields" in summary.group(1)
    assert f'<a href="#id_{field}">{message}</a>' in summary.group(1)
    assert not Game.objects.exists()


def test_strategy_shares_that_do_not_add_up_are_named_in_the_form(as_ana):
    response = as_ana.post(url("new"), form_data(share_rational="0.5"))
    assert response.status_code == 400
    assert response.context["form"].non_field_errors() == [
        "Bot strategy shares must sum to 1, got 0.5"
    ]
    content = text(response)
    assert 'id="form-errors"' in content and "Bot strategy shares must sum to 1" in content
    assert not Game.objects.exists()


def test_typed_values_are_kept_when_the_form_is_refused(as_ana):
    response = as_ana.post(url("new"), form_data(beta="1.5", fine="0.3", labs="9"))
    content = text(response)
    assert 'name="fine" value="0.3"' in content
    assert 'name="labs" value="9"' in content
    assert 'name="beta" value="1.5"' in content


# ------------------------------------------------------------------------------ presets


def test_preset_is_saved_from_the_form_and_fills_it_again(as_ana, ana):
    data = form_data(labs=7, fine=0.9, governor="human", bidding_seconds=20, save_as="Tuesday")
    data["action"] = "save"
    response = as_ana.post(url("new"), data)
    preset = SavedPreset.objects.get(owner=ana)
    assert response.status_code == 302
    assert response["Location"] == f"{url('new')}?preset=saved:{preset.pk}"
    assert not Game.objects.exists()
    assert preset.name == "Tuesday" and preset.human_governor
    assert preset.scenario["labs"]["count"] == 7
    assert preset.durations["bidding"] == 20
    page = text(as_ana.get(response["Location"]))
    assert "Saved the preset “Tuesday”." in page
    assert 'name="labs" value="7"' in page
    assert 'name="fine" value="0.9"' in page
    assert 'name="bidding_seconds" value="20"' in page
    assert f'<option value="saved:{preset.pk}" selected>Tuesday</option>' in page
    assert "Tuesday" in text(as_ana.get(url("home")))


def test_game_is_created_from_a_saved_preset(as_ana, ana):
    preset = services.preset_save(
        owner=ana, name="Mine", scenario=small_scenario(labs=3), human_governor=False, durations={}
    )
    data = form_data(labs=3, token_cap=2, rounds=2)
    data["preset"] = f"saved:{preset.pk}"
    response = as_ana.post(url("new"), data)
    assert response.status_code == 302
    assert Game.objects.get().lab_count == 3


def test_preset_needs_a_name_when_saved_from_the_form(as_ana):
    data = form_data(save_as="  ")
    data["action"] = "save"
    response = as_ana.post(url("new"), data)
    assert response.status_code == 400
    assert response.context["form"].errors["save_as"] == [services.PRESET_NAME_EMPTY]
    assert not SavedPreset.objects.exists()


def test_preset_of_another_instructor_cannot_be_chosen_in_the_form(as_ana, ben):
    theirs = services.preset_save(
        owner=ben, name="Ben's", scenario=small_scenario(), human_governor=False, durations={}
    )
    data = form_data()
    data["preset"] = f"saved:{theirs.pk}"
    response = as_ana.post(url("new"), data)
    assert response.status_code == 400
    assert "preset" in response.context["form"].errors
    assert not Game.objects.exists()


def test_own_preset_is_deleted_when_asked(as_ana, ana):
    preset = services.preset_save(
        owner=ana, name="Old", scenario=small_scenario(), human_governor=False, durations={}
    )
    response = as_ana.post(url("preset-delete", preset.pk), follow=True)
    assert response.status_code == 200
    assert "Preset deleted." in text(response)
    assert not SavedPreset.objects.exists()


def test_preset_of_another_instructor_is_not_deleted_when_asked(as_ana, ben):
    theirs = services.preset_save(
        owner=ben, name="Ben's", scenario=small_scenario(), human_governor=False, durations={}
    )
    response = as_ana.post(url("preset-delete", theirs.pk))
    assert response.status_code == 404
    assert SavedPreset.objects.filter(pk=theirs.pk).exists()


def test_preset_delete_needs_a_post(as_ana, ana):
    preset = services.preset_save(
        owner=ana, name="Old", scenario=small_scenario(), human_governor=False, durations={}
    )
    assert as_ana.get(url("preset-delete", preset.pk)).status_code == 405
    assert SavedPreset.objects.filter(pk=preset.pk).exists()


# ------------------------------------------------------------------------------ console, projector


def test_console_shows_the_join_address_code_and_seats_in_the_lobby(as_ana, game):
    join(game, "Ada", "Bob")
    response = as_ana.get(url("game", game.code))
    content = text(response)
    assert response.status_code == 200
    assert f"http://testserver/join/{game.code}/" in content
    assert f'ws-connect="/ws/host/{game.code}/"' in content
    assert 'data-joined="2"' in content
    assert "Ada" in content and "Bob" in content
    assert content.count('<tr data-seat="') == 5  # four labs and the governor
    for control_name in ("start", "add-bot", "remove-bot", "governor"):
        assert f'data-control="{control_name}"' in content
    assert 'data-control="pause"' not in content


def test_projector_shows_a_qr_code_of_the_join_address_and_who_joined(as_ana, game):
    join(game, "Ada")
    content = text(as_ana.get(url("projector", game.code)))
    assert f"http://testserver/join/{game.code}/" in content
    assert re.search(r'<svg[^>]*class="qr"', content)
    assert f'aria-label="Join code {game.code}"' in content
    assert "Ada" in content
    assert "<script src=" in content and "cdn" not in content.lower()


def test_console_shows_who_has_acted_and_the_countdown_when_running(as_ana, ana):
    game, (ada, bob) = running_game(ana, "Ada", "Bob")
    services.round_submit_bid(seat=ada, round_no=1, amount=0.2)
    content = text(as_ana.get(url("game", game.code)))
    assert 'data-status="running"' in content and 'data-phase="bidding"' in content
    assert 'class="host-countdown"' in content
    assert "Waiting for <strong>1</strong>: Lab 2 (Bob)" in content
    for control_name in ("pause", "extend", "advance", "end"):
        assert f'data-control="{control_name}"' in content
    assert 'data-control="start"' not in content
    ada_row = re.search(rf'<tr data-seat="{ada.pk}".*?</tr>', content, re.S).group(0)
    bob_row = re.search(rf'<tr data-seat="{bob.pk}".*?</tr>', content, re.S).group(0)
    assert "acted" in ada_row and "waiting" not in ada_row
    assert "waiting" in bob_row
    assert "Hand Lab 2 to a bot" in bob_row


# ------------------------------------------------------------------------------ controls


def test_start_begins_round_one_when_in_the_lobby(as_ana, game):
    join(game, "Ada")
    response = control(as_ana, game, "start")
    assert response.status_code == 200
    assert flash(response) == "The game has started."
    assert 'id="host-status"' in text(response) and 'hx-swap-oob="morph"' in text(response)
    game = fresh(game)
    assert game.status == Status.RUNNING and game.round_no == 1 and game.phase == "bidding"


def test_start_is_refused_and_changes_nothing_when_the_game_runs(as_ana, ana):
    game, _ = running_game(ana, "Ada")
    before = snapshot(game)
    response = control(as_ana, game, "start")
    assert response.status_code == 409
    assert flash(response) == "The game has already started."
    assert 'class="console-flash flash-error"' in text(response)
    assert snapshot(game) == before


def test_pause_stops_the_clock_and_resume_restarts_it(as_ana, ana, frozen_clock):
    game, _ = running_game(ana, "Ada")
    left = (game.phase_deadline - frozen_clock.now()).total_seconds()
    response = control(as_ana, game, "pause")
    assert response.status_code == 200
    assert flash(response) == "Paused: the clock has stopped."
    paused = fresh(game)
    assert paused.status == Status.PAUSED and paused.phase_deadline is None
    assert paused.paused_remaining == pytest.approx(left)
    assert 'data-control="resume"' in text(response)

    frozen_clock.advance(100)  # a paused game's clock does not run
    response = control(as_ana, game, "resume")
    assert response.status_code == 200
    assert flash(response) == "Resumed."
    resumed = fresh(game)
    assert resumed.status == Status.RUNNING and resumed.phase == "bidding"
    assert (resumed.phase_deadline - frozen_clock.now()).total_seconds() == pytest.approx(left)


@pytest.mark.parametrize(
    ("state", "action", "status", "message"),
    [
        ("lobby", "pause", 409, "Only a running game can be paused."),
        ("running", "resume", 409, "Only a paused game can be resumed."),
        ("lobby", "resume", 409, "Only a paused game can be resumed."),
        ("paused", "pause", 409, "Only a running game can be paused."),
        ("paused", "advance", 409, "Resume the game before advancing it."),
        ("paused", "start", 409, "The game has already started."),
        ("lobby", "extend", 409, "Only a running or paused game has a timer."),
        ("finished", "extend", 409, "Only a running or paused game has a timer."),
        ("finished", "pause", 409, "Only a running game can be paused."),
        ("finished", "advance", 410, "is over"),
        ("finished", "end", 410, ALREADY_OVER),
        ("finished", "start", 409, "The game has already started."),
        ("running", "add-bot", 409, services.LOBBY_ONLY),
        ("running", "remove-bot", 409, services.LOBBY_ONLY),
        ("running", "governor", 409, services.LOBBY_ONLY),
        ("finished", "add-bot", 409, services.LOBBY_ONLY),
    ],
)
def test_control_not_allowed_now_says_why_and_changes_nothing(
    as_ana, ana, state, action, status, message
):
    if state == "lobby":
        game = small_game(ana)
    elif state == "finished":
        game = finished_game(ana)
    else:
        game, _ = running_game(ana, "Ada")
        if state == "paused":
            services.game_pause(game=game)
    before = snapshot(game)
    if action in ("add-bot", "remove-bot"):
        response = as_ana.post(url(action, game.code), {}, **HTMX)
    elif action == "governor":
        response = as_ana.post(url("governor", game.code), {"seat": "bot"}, **HTMX)
    else:
        response = control(as_ana, game, action, seconds="30")
    assert response.status_code == status
    assert message in flash(response)
    assert 'class="console-flash flash-error"' in text(response)
    assert snapshot(game) == before


def test_refused_control_without_htmx_redirects_with_the_message(as_ana, game):
    before = snapshot(game)
    response = control(as_ana, game, "pause", htmx=False)
    assert response.status_code == 302
    assert response["Location"] == url("game", game.code)
    page = text(as_ana.get(response["Location"]))
    assert "Only a running game can be paused." in page
    assert 'class="flash-error"' in page
    assert snapshot(game) == before


def test_control_without_htmx_redirects_with_what_it_did(as_ana, game):
    response = control(as_ana, game, "start", htmx=False)
    assert response.status_code == 302
    assert "The game has started." in text(as_ana.get(response["Location"]))
    assert fresh(game).status == Status.RUNNING


def test_extend_adds_seconds_to_the_running_phase(as_ana, ana, frozen_clock):
    game, _ = running_game(ana, "Ada")
    deadline = game.phase_deadline
    response = control(as_ana, game, "extend", seconds="30")
    assert response.status_code == 200
    assert flash(response) == "The timer has 30 s more."
    assert fresh(game).phase_deadline == deadline + dt.timedelta(seconds=30)
    assert Move.objects.filter(game=game, action=Action.EXTEND).count() == 1


def test_extend_adds_seconds_to_a_paused_phase(as_ana, ana):
    game, _ = running_game(ana, "Ada")
    services.game_pause(game=game)
    left = fresh(game).paused_remaining
    response = control(as_ana, game, "extend", seconds="45")
    assert response.status_code == 200
    assert fresh(game).paused_remaining == pytest.approx(left + 45)
    assert fresh(game).status == Status.PAUSED


@pytest.mark.parametrize("seconds", ["0", "-30", "abc", "", "3601", "2.5"])
def test_extend_by_a_bad_number_of_seconds_says_so_and_changes_nothing(as_ana, ana, seconds):
    game, _ = running_game(ana, "Ada")
    before = snapshot(game)
    response = control(as_ana, game, "extend", seconds=seconds)
    assert response.status_code == 400
    assert flash(response) == EXTEND_BY
    assert snapshot(game) == before


def test_advance_ends_the_phase_now_with_bots_for_absent_students(as_ana, ana):
    game, (ada, _) = running_game(ana, "Ada", "Bob")
    services.round_submit_bid(seat=ada, round_no=1, amount=0.3)
    response = control(as_ana, game, "advance")
    assert response.status_code == 200
    assert flash(response) == "Moved on to the next phase."
    game = fresh(game)
    assert game.phase != "bidding"
    assert Move.objects.filter(game=game, action=Action.ADVANCE).count() == 1
    bids = Move.objects.filter(game=game, action=Action.BID, round_no=1)
    assert bids.count() == game.lab_count  # Bob's seat was played by his stand-in bot


def test_advance_in_the_lobby_starts_the_game(as_ana, game):
    response = control(as_ana, game, "advance")
    assert response.status_code == 200
    assert fresh(game).status == Status.RUNNING


def test_end_finishes_the_game_after_the_rounds_played(as_ana, ana):
    game, _ = running_game(ana, "Ada")
    response = control(as_ana, game, "end")
    assert response.status_code == 200
    assert flash(response) == "The game is over."
    game = fresh(game)
    assert game.status == Status.FINISHED
    assert 'data-control="debrief"' in text(response)


def test_unknown_control_is_not_found(as_ana, game):
    before = snapshot(game)
    assert control(as_ana, game, "explode").status_code == 404
    assert snapshot(game) == before


def test_controls_need_a_post(as_ana, game):
    assert as_ana.get(url("control", game.code, "start")).status_code == 405
    assert fresh(game).status == Status.LOBBY


def test_add_bot_adds_a_lab_in_the_lobby(as_ana, game):
    response = as_ana.post(url("add-bot", game.code), **HTMX)
    assert response.status_code == 200
    assert flash(response) == "Added Lab 5, played by a bot."
    assert fresh(game).lab_count == 5
    assert text(response).count('<tr data-seat="') == 6


def test_remove_bot_removes_the_last_empty_lab_in_the_lobby(as_ana, game):
    join(game, "Ada")
    response = as_ana.post(url("remove-bot", game.code), **HTMX)
    assert response.status_code == 200
    assert flash(response) == "Removed a lab seat."
    assert fresh(game).lab_count == 3
    assert Seat.objects.filter(game=game, nickname="Ada").exists()


def test_remove_bot_removes_the_named_seat_in_the_lobby(as_ana, game):
    seat = Seat.objects.get(game=game, role=Role.LAB, lab_index=1)
    response = as_ana.post(url("remove-bot", game.code), {"seat": seat.pk}, **HTMX)
    assert response.status_code == 200
    assert not Seat.objects.filter(pk=seat.pk).exists()
    assert fresh(game).lab_count == 3


def test_remove_bot_refuses_a_seat_with_a_student_and_changes_nothing(as_ana, game):
    (ada,) = join(game, "Ada")
    before = snapshot(game)
    response = as_ana.post(url("remove-bot", game.code), {"seat": ada.pk}, **HTMX)
    assert response.status_code == 409
    assert flash(response) == "Lab 1 is Ada's seat; only an empty seat can be removed."
    assert snapshot(game) == before


def test_remove_bot_refuses_the_last_lab(as_ana, ana):
    game = small_game(ana, labs=1)
    before = snapshot(game)
    response = as_ana.post(url("remove-bot", game.code), **HTMX)
    assert response.status_code == 409
    assert flash(response) == services.LAST_LAB
    assert snapshot(game) == before


def test_seat_of_another_game_is_not_found_when_named(as_ana, ana, game):
    other = small_game(ana)
    (stranger,) = join(other, "Zed")
    empty = Seat.objects.filter(game=other, role=Role.LAB, token__isnull=True).first()
    before, before_other = snapshot(game), snapshot(other)
    for address, data in (
        (url("remove-bot", game.code), {"seat": empty.pk}),
        (url("governor", game.code), {"seat": stranger.pk}),
        (url("hand", game.code, stranger.pk), {"to_bot": "1"}),
    ):
        assert as_ana.post(address, data, **HTMX).status_code == 404, address
    assert snapshot(game) == before and snapshot(other) == before_other


def test_governor_is_assigned_to_a_student_and_back_to_a_bot_in_the_lobby(as_ana, game):
    ada, _ = join(game, "Ada", "Bob")
    response = as_ana.post(url("governor", game.code), {"seat": ada.pk}, **HTMX)
    assert response.status_code == 200
    assert flash(response) == "Ada is the governor."
    ada.refresh_from_db()
    assert ada.role == Role.GOVERNOR and fresh(game).human_governor
    assert "governor: <strong>Ada</strong>" in text(response)

    response = as_ana.post(url("governor", game.code), {"seat": "bot"}, **HTMX)
    assert response.status_code == 200
    assert flash(response) == "A bot governs this game."
    ada.refresh_from_db()
    assert ada.role == Role.LAB and not fresh(game).human_governor


@pytest.mark.parametrize("seat", ["", "nobody", "-1", "²", "١", "9" * 40])
def test_governor_needs_a_player_or_a_bot_and_changes_nothing(as_ana, game, seat):
    join(game, "Ada")
    before = snapshot(game)
    response = as_ana.post(url("governor", game.code), {"seat": seat}, **HTMX)
    assert response.status_code == 400
    assert flash(response) == CHOOSE_GOVERNOR
    assert snapshot(game) == before


def test_governor_must_be_a_student_who_joined(as_ana, game):
    empty = Seat.objects.get(game=game, role=Role.LAB, lab_index=0)
    before = snapshot(game)
    response = as_ana.post(url("governor", game.code), {"seat": empty.pk}, **HTMX)
    assert response.status_code == 409
    assert flash(response) == services.NOT_A_PLAYER
    assert snapshot(game) == before


def test_hand_to_bot_plays_the_seat_by_a_bot_at_once_and_gives_it_back(as_ana, ana):
    game, (ada, bob) = running_game(ana, "Ada", "Bob")
    services.round_submit_bid(seat=ada, round_no=1, amount=0.3)
    response = as_ana.post(url("hand", game.code, bob.pk), {"to_bot": "1"}, **HTMX)
    assert response.status_code == 200
    assert flash(response) == "A bot plays Lab 2 now."
    bob.refresh_from_db()
    assert bob.handed_to_bot and bob.controller == Controller.BOT
    assert fresh(game).phase != "bidding"  # the phase no longer waited for Bob
    assert "Give Lab 2 back to Bob" in text(response)

    response = as_ana.post(url("hand", game.code, bob.pk), {"to_bot": "0"}, **HTMX)
    assert response.status_code == 200
    assert flash(response) == "Lab 2 goes back to Bob from the next phase."
    bob.refresh_from_db()
    assert not bob.handed_to_bot


def test_hand_to_bot_works_while_paused(as_ana, ana):
    game, (ada,) = running_game(ana, "Ada")
    services.game_pause(game=game)
    response = as_ana.post(url("hand", game.code, ada.pk), {"to_bot": "1"}, **HTMX)
    assert response.status_code == 200
    ada.refresh_from_db()
    assert ada.handed_to_bot


@pytest.mark.parametrize("state", ["lobby", "finished"])
def test_hand_to_bot_is_refused_and_changes_nothing_when_the_game_does_not_run(as_ana, ana, state):
    game = small_game(ana) if state == "lobby" else finished_game(ana)
    if state == "lobby":
        join(game, "Ada")
    ada = Seat.objects.get(game=game, nickname="Ada")
    before = snapshot(game)
    response = as_ana.post(url("hand", game.code, ada.pk), {"to_bot": "1"}, **HTMX)
    assert response.status_code == 409
    assert "running or paused" in flash(response)
    assert snapshot(game) == before


def test_hand_to_bot_is_refused_for_a_seat_nobody_joined(as_ana, ana):
    game, _ = running_game(ana, "Ada")
    empty = Seat.objects.filter(game=game, role=Role.LAB, token__isnull=True).first()
    before = snapshot(game)
    response = as_ana.post(url("hand", game.code, empty.pk), {"to_bot": "1"}, **HTMX)
    assert response.status_code == 409
    assert "already played by a bot" in flash(response)
    assert snapshot(game) == before


def test_hand_to_bot_twice_says_so_and_changes_nothing(as_ana, ana):
    game, (ada,) = running_game(ana, "Ada")
    services.game_pause(game=game)
    as_ana.post(url("hand", game.code, ada.pk), {"to_bot": "1"}, **HTMX)
    before = snapshot(game)
    response = as_ana.post(url("hand", game.code, ada.pk), {"to_bot": "1"}, **HTMX)
    assert response.status_code == 200
    assert flash(response) == "A bot already plays Lab 1."
    assert snapshot(game) == before


# ------------------------------------------------------------------------------ the debrief


def test_debrief_before_any_round_says_so_and_computes_nothing(as_ana, game):
    response = as_ana.get(url("debrief", game.code))
    assert response.status_code == 200
    assert "No round has been played yet" in text(response)
    assert not DebriefCache.objects.exists()


def test_debrief_shows_charts_prediction_heatmap_classes_and_leaderboard(as_ana, ana):
    game = finished_game(ana)
    compute_debrief(game)
    response = as_ana.get(url("debrief", game.code))
    assert response.status_code == 200
    content = text(response)
    for name in ("price", "permits", "violations", "compliance", "heatmap", "classes"):
        assert f'id="figure-{name}"' in content, name
        assert f'data-png="{game.code}-{name}.png"' in content, name
        assert url("chart-csv", game.code, name) in content, name
    assert 'data-number="observed"' in content and 'data-number="predicted"' in content
    assert 'class="game-point"' in content
    assert "behaviour flip (simulated)" in content
    assert "Percentile" in content
    assert content.count('<tr data-metric="') == len(debrief.COMPARED)
    assert "<strong>Ada</strong>" in content
    assert content.count('<tr class="human">') == 1
    for table in ("rounds", "leaderboard", "classes-compared", "labs", "log"):
        assert url("export-csv", game.code, table) in content
    assert 'data-present aria-pressed="false"' in content


def test_prediction_paragraph_quotes_g_star_at_the_price_of_the_bots_beside_the_class(as_ana, ana):
    """MODEL.md §7: the price shown beside a class is that of the bots it played beside."""
    game = finished_game(ana)
    summary = debrief.debrief_summary(fresh(game))
    story = summary.price
    assert story is not None
    scenario = debrief.debrief_scenario(game)
    bots = expected_bot_price(scenario, rounds=game.rounds)
    assert story.marginal_gain == pytest.approx(bots + scenario.labs.racing_value, abs=1e-9)
    content = text(as_ana.get(url("debrief", game.code)))
    quoted = re.search(r'data-figure="marginal-gain">g\* = ([0-9.]+)<', content)
    assert quoted is not None and float(quoted.group(1)) == pytest.approx(
        story.marginal_gain, abs=5e-4
    )
    assert f"{story.bots}' expected price" in html.unescape(content)


def cache_row(game, kind, **fields):
    """Store a debrief cache row of ``game`` as of its end; return that time."""
    now = fresh(game).finished_at
    DebriefCache.objects.create(
        game=game,
        kind=kind,
        key=debrief.cache_key(game, kind),
        started_at=now,
        updated_at=now,
        **fields,
    )
    return now


def test_debrief_part_polls_while_it_is_computed(as_ana, ana):
    game = finished_game(ana)
    now = cache_row(game, debrief.HEATMAP, progress=0.4)
    from permitgame import clock

    with clock.frozen(now):
        response = as_ana.get(url("debrief-part", game.code, "heatmap"), **HTMX)
    content = text(response)
    assert response.status_code == 200
    assert 'data-status="running"' in content
    assert 'hx-trigger="every 1s"' in content
    assert 'value="40"' in content


def test_debrief_part_shows_the_error_and_a_retry_when_it_failed(as_ana, ana):
    game = finished_game(ana)
    cache_row(game, debrief.CLASSES, status=DebriefCache.Status.FAILED, error="out of memory")
    content = text(as_ana.get(url("debrief-part", game.code, "classes"), **HTMX))
    assert "could not be computed: out of memory" in content
    assert "Try again" in content


def test_heatmap_switches_to_the_deterrence_map_when_asked(as_ana, ana):
    game = finished_game(ana)
    compute_debrief(game)
    response = as_ana.get(
        url("debrief-part", game.code, "heatmap"), {"metric": "deterrence_rate"}, **HTMX
    )
    content = text(response)
    assert response.status_code == 200
    assert 'id="figure-heatmap-deterrence_rate"' in content
    assert re.search(r'aria-pressed="true"[^>]*>\s*Deterrence', content)
    assert 'class="game-point"' in content


def test_heatmap_falls_back_to_compliance_for_an_unknown_metric(as_ana, ana):
    game = finished_game(ana)
    compute_debrief(game)
    response = as_ana.get(url("debrief-part", game.code, "heatmap"), {"metric": "bogus"})
    assert response.status_code == 200
    assert 'id="figure-heatmap"' in text(response)


def test_unknown_debrief_part_is_not_found(as_ana, game):
    assert as_ana.get(url("debrief-part", game.code, "tea-leaves")).status_code == 404


# ------------------------------------------------------------------------------ downloads


def csv_lines(response) -> list[str]:
    assert response.status_code == 200, text(response)[:300]
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"].startswith("attachment; filename=")
    return text(response).strip().splitlines()


def test_chart_data_downloads_as_csv(as_ana, ana):
    game = finished_game(ana)
    compute_debrief(game)
    price = csv_lines(as_ana.get(url("chart-csv", game.code, "price")))
    assert price[0] == "round,clearing price,model's expected price (rational bots)"
    assert len(price) == 1 + game.rounds
    heatmap = csv_lines(as_ana.get(url("chart-csv", game.code, "heatmap")))
    assert heatmap[0] == "punishment,p_eff,compliance"
    assert len(heatmap) == 1 + debrief.HEATMAP_GRID[0] * debrief.HEATMAP_GRID[1]
    deterrence = csv_lines(as_ana.get(url("chart-csv", game.code, "heatmap-deterrence_rate")))
    assert deterrence[0] == "punishment,p_eff,deterrence"
    classes = csv_lines(as_ana.get(url("chart-csv", game.code, "classes")))
    assert classes[0].startswith("class,compliance_rate")
    assert len(classes) == 1 + debrief.SIMULATED_CLASSES
    response = as_ana.get(url("chart-csv", game.code, "price"))
    assert f'filename="{game.code}-price.csv"' in response["Content-Disposition"]


def test_tables_download_as_csv(as_ana, ana):
    game = finished_game(ana)
    rounds = csv_lines(as_ana.get(url("export-csv", game.code, "rounds")))
    assert rounds[0].startswith("round,")
    assert len(rounds) == 1 + game.rounds
    board = csv_lines(as_ana.get(url("export-csv", game.code, "leaderboard")))
    assert board[0] == "rank,lab,nickname,human,score,wealth"
    assert len(board) == 1 + game.lab_count
    assert any(",Ada,1," in line for line in board)
    classes = csv_lines(as_ana.get(url("export-csv", game.code, "classes-compared")))
    assert classes[1].startswith(game.code + ",Test class,")
    labs = csv_lines(as_ana.get(url("export-csv", game.code, "labs")))
    assert labs[0].startswith("game,round,lab,nickname,seat,fallback_strategy,risk_profile,value,")
    assert len(labs) == 1 + game.rounds * game.lab_count
    assert any(",Ada,human," in line for line in labs)
    log = csv_lines(as_ana.get(url("export-csv", game.code, "log")))
    assert log[0] == (
        "game,id,time,round,phase,action,actor,player,nickname,held_by,payload,latency_ms,"
        "prev_hash,hash"
    )
    assert any(",start," in line for line in log) and any(",bid," in line for line in log)


FORMULA = '=HYPERLINK("http://x","y")'


def test_no_csv_cell_is_a_formula_when_a_nickname_and_a_title_are_formulas(as_ana, ana):
    # A spreadsheet runs a cell starting with = + - @ as a formula; every CSV the console
    # serves writes such text with a leading apostrophe, and numbers (negative ones too) as
    # numbers.
    earlier = finished_game(ana)  # a second class of the scenario: the classes-compared table
    Game.objects.filter(pk=earlier.pk).update(title="@SUM(1+1)")
    game = small_game(ana)
    ada, _ = join(game, "Ada", "-Ben")
    # Longer than a joining player may type (24 characters); the admin can store it.
    Seat.objects.filter(pk=ada.pk).update(nickname=FORMULA)
    game = play_to_end(game)
    Game.objects.filter(pk=game.pk).update(title="+cmd|' /C calc'!A0")
    downloads = [("export-csv", name) for name in ("rounds", "leaderboard", "classes-compared")]
    downloads += [("export-csv", name) for name in exports.TABLES]
    charts = debrief.debrief_summary(game).charts
    downloads += [("chart-csv", chart.name) for chart in charts] + [
        ("chart-csv", "classes-compared")
    ]
    cells: list[str] = []
    for view, name in downloads:
        response = as_ana.get(url(view, game.code, name))
        assert response.status_code == 200, (view, name)
        cells += [cell for row in csv.reader(io.StringIO(text(response))) for cell in row]
    assert "'" + FORMULA in cells and "'-Ben" in cells
    assert "'@SUM(1+1)" in cells and "'+cmd|' /C calc'!A0" in cells
    for cell in cells:
        if cell.startswith(("=", "+", "-", "@", "\t", "\r")):
            assert float(cell) < 0, cell  # only a negative number, left a number


def test_classes_compared_chart_appears_with_a_second_class_of_the_scenario(as_ana, ana):
    first = finished_game(ana)
    second = finished_game(ana)
    compute_debrief(second)
    assert as_ana.get(url("chart-csv", first.code, "classes-compared")).status_code == 200
    content = text(as_ana.get(url("debrief", second.code)))
    assert 'id="figure-classes-compared"' in content
    assert first.code in content and "(this class)" in content


def test_heatmap_csv_is_not_found_before_it_is_computed(as_ana, ana):
    game = finished_game(ana)
    response = as_ana.get(url("chart-csv", game.code, "heatmap"))
    assert response.status_code == 404
    assert "open the debrief first" in text(response)


@pytest.mark.parametrize(
    ("name", "table"),
    [
        ("chart-csv", "heatmap-bogus"),
        ("chart-csv", "nothing"),
        ("chart-csv", "classes-compared"),  # only one class of this scenario
        ("export-csv", "nothing"),
    ],
)
def test_unknown_download_is_not_found(as_ana, ana, name, table):
    game = finished_game(ana)
    compute_debrief(game)
    assert as_ana.get(url(name, game.code, table)).status_code == 404


def test_csv_text_with_commas_and_quotes_is_quoted(as_ana, ana):
    game = small_game(ana)
    game.title = 'Class "A", Monday'
    game.save()
    join(game, "Ada")
    play_to_end(game)
    lines = csv_lines(as_ana.get(url("export-csv", game.code, "classes-compared")))
    assert '"Class ""A"", Monday"' in lines[1]


@pytest.mark.parametrize("value", ["", "yes", "2"])
def test_hand_needs_to_say_which_way_and_changes_nothing(as_ana, ana, value):
    game, (ada,) = running_game(ana, "Ada")
    before = snapshot(game)
    response = as_ana.post(url("hand", game.code, ada.pk), {"to_bot": value}, **HTMX)
    assert response.status_code == 400
    assert flash(response) == HAND_HOW
    assert snapshot(game) == before


def test_granted_permits_are_created_when_chosen_in_the_form(as_ana):
    response = as_ana.post(url("new"), form_data(allocation="grandfathered", grant="lottery"))
    assert response.status_code == 302
    market = Game.objects.get().scenario["market"]
    assert market["allocation"] == "grandfathered" and market["grant"] == "lottery"
    assert market["reserve_price"] == 0.0


def test_create_form_offers_the_allocation_and_fills_it_from_the_grandfathered_preset(as_ana):
    page = as_ana.get(url("new"), {"preset": "grandfathered"}).content.decode()
    assert 'name="allocation"' in page and 'name="grant"' in page
    assert '<option value="grandfathered" selected>' in page


def test_granted_permits_with_a_fixed_price_are_named_under_the_field(as_ana):
    response = as_ana.post(
        url("new"),
        form_data(market_type="fixed_price", fixed_price=0.4, allocation="grandfathered"),
    )
    assert response.status_code == 400 and not Game.objects.exists()
    (message,) = response.context["form"].errors["allocation"]
    assert message.startswith("Permits") and "clearing" in message, message


@pytest.mark.parametrize("value", ["²", "1e400", "9" * 5000, "--1", "NaN", "\x00"])
def test_console_controls_refuse_unreadable_values_with_a_form_error(as_ana, ana, value):
    game, (ada, _bob) = running_game(ana, "Ada", "Bob")
    before = snapshot(game)
    for address, data in (
        (url("control", game.code, "extend"), {"seconds": value}),
        (url("hand", game.code, ada.pk), {"to_bot": value}),
        (url("remove-bot", game.code), {"seat": value}),
        (url("governor", game.code), {"seat": value}),
    ):
        response = as_ana.post(address, data, **HTMX)
        assert response.status_code in (400, 409), (address, response.status_code)
        assert flash(response), address
    assert snapshot(game) == before
