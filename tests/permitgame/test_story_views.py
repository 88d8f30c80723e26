"""The create form's cap scaling and live preview, the coaching level, with Django's client."""

from __future__ import annotations

import html
from dataclasses import replace
from typing import Any

import pytest
from django.urls import reverse

from permitgame import exports
from permitgame.models import Game
from sim_core import (
    expected_bot_price,
    expected_clearing_price,
    expected_trade_price,
    expected_trades,
    load_preset,
    sweep_scenario,
)
from tests.permitgame.test_console_views import form_data

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _quick_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def as_ana(client, ana):
    client.force_login(ana)
    return client


def preview(client, **changes: Any) -> str:
    response = client.post(reverse("console:new-preview"), form_data(**changes))
    assert response.status_code == 200
    return html.unescape(response.content.decode())


def test_fewer_labs_scale_the_preset_cap_as_creategame_does(as_ana):
    response = as_ana.post(reverse("console:new"), form_data(labs=6))
    assert response.status_code == 302
    game = Game.objects.get()
    expected = sweep_scenario(load_preset("targeted_audit"), labs=6).market.token_cap
    assert game.scenario["market"]["token_cap"] == expected == 3


def test_a_typed_cap_is_kept_whatever_the_number_of_labs(as_ana):
    as_ana.post(reverse("console:new"), form_data(labs=6, token_cap=4))
    assert Game.objects.get().scenario["market"]["token_cap"] == 4


def test_the_preview_shows_the_scaled_cap_and_the_bots_price(as_ana):
    content = preview(as_ana, labs=6)
    assert 'data-scaled-cap="3"' in content
    scenario = sweep_scenario(load_preset("targeted_audit"), labs=6)
    assert f"{expected_bot_price(scenario):.3f}" in content
    assert f"{expected_clearing_price(scenario):.3f}" in content
    assert "rational bots" in content
    assert "data-warning" not in content  # a sound class


def test_the_preview_warns_of_a_cap_that_covers_every_lab_and_says_what_to_change(as_ana):
    content = preview(as_ana, labs=6, token_cap=8)  # typed: kept, though it covers every lab
    assert 'data-warning="cap_covers_all"' in content
    assert "Set the token cap below 6" in content


def test_the_preview_warns_when_every_lab_violates(as_ana):
    content = preview(as_ana, fine=0.0, collateral=0.01, policy="policy")
    assert 'data-warning="everyone_violates"' in content
    assert "Raise the fine" in content


def test_the_preview_warns_when_no_lab_can_gain_from_violating(as_ana):
    content = preview(as_ana, fine=5.0, high_prob=1.0, base_prob=1.0, policy="policy")
    assert 'data-warning="nobody_violates"' in content


def test_the_preview_warns_of_a_fixed_price_below_the_expected_penalty(as_ana):
    content = preview(as_ana, preset="carbon_tax", fixed_price=0.01)
    assert 'data-warning="price_below_penalty"' in content


def test_the_preview_names_a_bad_value_instead_of_numbers(as_ana):
    content = preview(as_ana, beta=1.5)
    assert "Fix the values marked in the form" in content
    assert "Signal strength (β)" in content


def test_the_coaching_level_is_stored_with_the_game_and_exported(as_ana):
    as_ana.post(reverse("console:new"), form_data(coaching="numbers"))
    game = Game.objects.get()
    assert game.coaching == "numbers"
    assert "coaching" in exports.LAB_ROUND_COLUMNS


def test_a_loopback_join_address_is_flagged_on_the_console_and_projector(as_ana, ana):
    from tests.permitgame.console_fixtures import small_game

    game = small_game(ana)
    for name in ("game", "projector"):
        page = as_ana.get(reverse(f"console:{name}", args=[game.code]), HTTP_HOST="127.0.0.1:8000")
        assert "make run HOST=0.0.0.0" in html.unescape(page.content.decode())
        page = as_ana.get(reverse(f"console:{name}", args=[game.code]), HTTP_HOST="10.0.0.5:8000")
        assert "make run HOST=0.0.0.0" not in html.unescape(page.content.decode())


def test_the_preview_of_granted_permits_shows_the_expected_trades_and_what_coase_predicts(as_ana):
    auction = preview(as_ana, labs=12)
    assert 'data-figure="trade-price"' not in auction
    content = preview(as_ana, labs=12, allocation="grandfathered", grant="lottery")
    scenario = sweep_scenario(load_preset("targeted_audit"), labs=12)
    traded = scenario.with_changes(
        market=replace(scenario.market, allocation="grandfathered", grant="lottery")
    )
    price = expected_trade_price(traded)
    assert price is not None and f"{price:.3f}" in content
    assert f"{expected_trades(traded):.1f}" in content
    assert "Coase" in content
