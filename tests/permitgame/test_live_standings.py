"""Live standings are the instructor's choice: off by default, a lab's place shows at game over.

A lab's place among the labs moves when other labs' payoffs move, so it is only sent live when
the game's ``live_standings`` is on (the create form says what that reveals).
"""

import pytest
from django.test import Client

from permitgame import broadcast, selectors, services
from permitgame.models import Game, Status

PLACE = "Your place"


def _settled_round(scenario, *, live_standings=None):
    options = {} if live_standings is None else {"live_standings": live_standings}
    game = services.game_create(scenario=scenario, human_labs=1, human_governor=False, **options)
    browser = Client()
    assert browser.post("/join/", {"code": game.code, "nickname": "Ana"}).status_code == 302
    services.game_start(game=game)
    for _ in range(10):
        game = Game.objects.get(pk=game.pk)
        if game.round_no == 1 and game.phase == "results":
            break
        services.game_advance_now(game=game)
    assert game.phase == "results"
    return game, browser


def _you(game):
    game = Game.objects.get(pk=game.pk)
    seat = game.seats.get(nickname="Ana")
    return broadcast.state_message(selectors.game_screens(game), seat)["you"]


@pytest.mark.django_db
def test_rank_is_not_sent_while_the_game_runs_by_default(small_scenario):
    game, browser = _settled_round(small_scenario)
    assert not game.live_standings
    you = _you(game)
    assert you["rank"] is None and you["score"] is not None  # its own score it may see
    page = browser.get(f"/play/{game.code}/").content.decode()
    assert PLACE not in page and 'class="rank' not in page
    services.game_end(game=game)
    assert _you(game)["rank"] in range(1, small_scenario.labs.count + 1)
    over = browser.get(f"/play/{game.code}/").content.decode()
    assert "you finished" in over


@pytest.mark.django_db
def test_rank_is_sent_after_every_round_when_the_instructor_turns_it_on(small_scenario):
    game, browser = _settled_round(small_scenario, live_standings=True)
    assert game.status == Status.RUNNING
    assert _you(game)["rank"] in range(1, small_scenario.labs.count + 1)
    page = browser.get(f"/play/{game.code}/").content.decode()
    assert PLACE in page


@pytest.mark.django_db
def test_create_form_offers_live_standings_off_and_says_what_it_reveals(client, ana):
    client.force_login(ana)
    page = client.get("/console/new/").content.decode()
    assert 'name="live_standings"' in page
    assert "checked" not in page.split('name="live_standings"')[1].split(">")[0]
    assert "reveals when other labs' payoffs" in page.replace("&#x27;", "'")


@pytest.mark.django_db
@pytest.mark.parametrize(("ticked", "expected"), [({}, False), ({"live_standings": "on"}, True)])
def test_create_form_sets_the_games_live_standings(client, ana, ticked, expected):
    from tests.permitgame.test_console_views import form_data

    client.force_login(ana)
    response = client.post("/console/new/", form_data(**ticked))
    assert response.status_code == 302, response.content.decode()[:2000]
    assert Game.objects.get(owner=ana).live_standings is expected
