"""The lab's and the governor's fragments render at every phase with the new settings."""

import pytest

from permitgame import broadcast, selectors, services
from permitgame.models import Game
from tests.permitgame.console_fixtures import small_scenario

pytestmark = pytest.mark.django_db

UNTIMED = {"bidding": None, "compliance": None, "audit": None, "results": None}


@pytest.mark.parametrize("coaching", ["full", "numbers", "none"])
def test_the_run_or_idle_screen_renders_at_each_coaching_level(coaching):
    game = services.game_create(
        scenario=small_scenario(labs=4, rounds=2, cap=2), human_labs=1, human_governor=True,
        durations=UNTIMED, seed=9, coaching=coaching, ask_belief=True,
    )  # fmt: skip
    lab = services.seat_join(game=game, nickname="ana")
    governor = services.seat_join(game=game, nickname="gov", role="governor")
    services.game_start(game=game)
    services.round_submit_bid(seat=lab, round_no=1, amount=0.0)
    screens = selectors.game_screens(Game.objects.get(pk=game.pk))
    html = broadcast.lab_html(screens.public, screens.labs[lab.pk])
    assert ("Running is worth" in html) == (coaching == "full")
    assert ("tradeoff-numbers" in html) == (coaching == "numbers")
    assert 'name="percent" value="30"' in html
    services.round_submit_choice(seat=lab, round_no=1, run=True)
    screens = selectors.game_screens(Game.objects.get(pk=game.pk))
    html = broadcast.governor_html(screens.public, screens.governor)
    assert 'data-posterior="signal"' in html
    services.round_submit_audits(seat=governor, round_no=1, labs=[])
    screens = selectors.game_screens(Game.objects.get(pk=game.pk))
    html = broadcast.governor_html(screens.public, screens.governor)
    # Mid-game, what another policy would have caught is not shown: it would tell the
    # governor which labs it audited were violating.
    assert "headline" in html and 'data-policy="optimal"' not in html
    html = broadcast.lab_html(screens.public, screens.labs[lab.pk])
    assert "payoff-terms" in html and "headline" in html
    services.game_end(game=Game.objects.get(pk=game.pk))
    screens = selectors.game_screens(Game.objects.get(pk=game.pk))
    html = broadcast.governor_html(screens.public, screens.governor)
    assert 'data-policy="optimal"' in html and 'data-policy="none"' in html
