"""Traded permits on the players' pages, in a real browser (MODEL.md §3b).

The session's Daphne server serves a one-round game of granted permits with three human labs: a
holder that asks (and sells), a holder that keeps, and a lab without a permit that bids (and
buys). Each plays through its page only; the test reads the database to check what the pages say.
Screenshots of the trading screens at 375 px and 1920x1080 go to ``artifacts/``.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from sim_core import make_setup, parse_scenario
from sim_core.state import granted_permits
from tests import harness
from tests.permitgame.test_play_pages import PHONE, WAIT_MS, Player, join, open_player, wait_phase

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SCENARIO = {
    "rounds": 1,
    "labs": {"count": 5},
    "market": {"type": "clearing", "token_cap": 2, "allocation": "grandfathered"},
    "governor": {"policy": "policy"},
}
WIDE = {"width": 1920, "height": 1080}


def seed_granting(holders: tuple[int, ...], others: tuple[int, ...]) -> int:
    scenario = parse_scenario(SCENARIO)
    for seed in range(1000):
        granted = granted_permits(make_setup(scenario, seed=seed), 1)
        if all(granted[lab] for lab in holders) and not any(granted[lab] for lab in others):
            return seed
    raise AssertionError("no such seed")


@pytest.fixture(scope="module")
def server(
    app_server: harness.LiveServer, tmp_path_factory: pytest.TempPathFactory
) -> tuple[harness.LiveServer, Path]:
    """The session's Daphne server and this module's scenario file."""
    scenario_file = tmp_path_factory.mktemp("trade") / "traded.json"
    scenario_file.write_text(json.dumps(SCENARIO))
    return app_server, scenario_file


def shoot(page: Any, name: str) -> None:
    page.set_viewport_size(PHONE)
    page.evaluate("window.scrollTo(0, 0)")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"{name}: the page is {width}px wide at 375px"
    harness.screenshot(page, f"trade-{name}-phone.png")
    page.set_viewport_size(WIDE)
    harness.screenshot(page, f"trade-{name}-wide.png")
    page.set_viewport_size(PHONE)


def see(player: Player, selector: str, text: str) -> None:
    expect(player.page.locator(selector)).to_contain_text(text)


def test_a_holder_sells_a_holder_keeps_and_a_lab_buys_through_the_pages(server, chromium_browser):
    app_server, scenario_file = server
    base_url, database = app_server.base_url, app_server.database
    seed = seed_granting(holders=(0, 1), others=(2,))
    result = app_server.manage(
        "creategame", "--scenario", str(scenario_file), "--human-labs", "3", "--seed", str(seed),
        "--phase-seconds", "600", "--results-seconds", "0", "--json", "--base-url", base_url,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    code = json.loads(result.stdout)["code"]

    class Site:
        base_url = ""

    site = Site()
    site.base_url = base_url
    players = [open_player(chromium_browser) for _ in range(3)]
    for player, name in zip(players, ("Sal", "Kim", "Bea"), strict=True):
        join(player, site, code, name)
    seller, keeper, buyer = players  # the game starts once every human seat is taken
    for player in players:
        wait_phase(player, 1, "bidding")
        see(player, "#phase", "Trading")
    see(seller, "#lab-action", "You were granted a permit")
    see(buyer, "#lab-action", "Enter your sealed bid")
    shoot(seller.page, "holder")

    seller.page.get_by_role("textbox", name="Your ask: the least you will sell for").fill("0")
    seller.page.get_by_role("button", name="Offer to sell").click()
    see(seller, "#lab-action", "Your ask of 0.000 is in")
    keeper.page.get_by_role("button", name="Keep my permit").focus()
    keeper.page.keyboard.press("Enter")
    see(keeper, "#lab-action", "You keep your permit")
    buyer.page.get_by_role("textbox", name="Your sealed bid").fill("5")
    buyer.page.get_by_role("button", name="Place bid").click()

    wait_phase(seller, 1, "compliance")
    see(buyer, "#lab-action", "bought a permit")
    see(seller, "#lab-action", "You sold your permit for")
    see(keeper, "#lab-action", "You kept your granted permit")
    see(buyer, "#market", "Permits traded")
    shoot(seller.page, "after-trading")
    shoot(buyer.page, "bought")

    with sqlite3.connect(database) as connection:
        (price, trade) = connection.execute(
            "SELECT r.price, r.trade FROM permitgame_roundrecord r "
            "JOIN permitgame_game g ON r.game_id = g.id WHERE g.code = ?",
            (code,),
        ).fetchone() or (None, None)
    assert trade is None  # not settled yet: the seller still chooses
    seller.page.get_by_role("button", name="Stay idle").click()
    for player in players:
        player.page.wait_for_selector('#phase[data-status="finished"]', timeout=4 * WAIT_MS)
    with sqlite3.connect(database) as connection:
        price, trade = connection.execute(
            "SELECT r.price, r.trade FROM permitgame_roundrecord r "
            "JOIN permitgame_game g ON r.game_id = g.id WHERE g.code = ?",
            (code,),
        ).fetchone()
    trade = json.loads(trade)
    assert trade["sold"][0] and trade["bought"][2] and not trade["sold"][1]
    assert price is not None and 0 < price <= 5
    see(seller, "#you", "Sold your permit for")
