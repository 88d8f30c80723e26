"""Helpers of the console and debrief tests: instructors, small games, playing a game out."""

from dataclasses import replace
from typing import Any

from permitgame import services
from permitgame.models import Game
from sim_core import load_preset

PASSWORD = "a-long-test-password-7"


def researcher_page(browser: Any, server: Any, username: str, *, viewport: Any) -> Any:
    """A new page of ``browser`` logged in to ``server`` (a test server) as a new staff user."""
    server.manage("createsuperuser", "--noinput", "--username", username,
                  "--email", f"{username}@example.org",
                  environ={"DJANGO_SUPERUSER_PASSWORD": PASSWORD})  # fmt: skip
    page = browser.new_context(viewport=viewport).new_page()
    page.goto(f"{server.base_url}/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    return page


def make_instructor(user_model: Any, username: str, **extra: Any) -> Any:
    return user_model.objects.create_user(username=username, password=PASSWORD, **extra)


def small_scenario(*, labs: int = 4, rounds: int = 2, cap: int = 2) -> Any:
    scenario = load_preset("targeted_audit")
    return scenario.with_changes(
        rounds=rounds,
        labs=replace(scenario.labs, count=labs),
        market=replace(scenario.market, token_cap=cap),
    )


def small_game(owner: Any, *, labs: int = 4, rounds: int = 2, human_governor: bool = False) -> Game:
    """A lobby game in which every lab seat is open to students, as the console creates them."""
    return services.game_create(
        scenario=small_scenario(labs=labs, rounds=rounds),
        human_labs=labs,
        human_governor=human_governor,
        owner=owner,
        title="Test class",
        durations={"bidding": 30, "compliance": 30, "audit": 30, "results": 5},
    )


def play_to_end(game: Game) -> Game:
    """Start (if needed) and advance phase after phase until the game is over."""
    return services.game_play_out(game=game)
