"""The new screens in a real browser, at phone (375 px) and projector (1920x1080) sizes.

The create form's live preview (the cap scaling with the labs, a warning when a setup teaches
nothing), the coaching levels of the run-or-idle screen, the round headline and the payoff's
terms on a phone, and the headline and the debrief's new parts on the projector and console.
Screenshots go to ``artifacts/`` (``story-*.png``).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from playwright.sync_api import expect

from sim_core import expected_bot_price, load_preset, sweep_scenario
from tests import harness
from tests.permitgame.test_console_pages import (
    PHONE,
    PROJECTOR,
    Server,
    instructor_server,
    log_in,
    new_page,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

#: Generous: the machine that runs the suite may be busy.
WAIT_MS = 45_000


@pytest.fixture(scope="module")
def server(app_server: harness.LiveServer) -> Server:
    """The session's Daphne server, with the console tests' instructor account."""
    return instructor_server(app_server)


def shoot(page: Any, name: str) -> None:
    """Screenshots at 375 px (no sideways scrolling allowed) and at 1920x1080."""
    size = page.viewport_size
    page.set_viewport_size(PHONE)
    page.evaluate("window.scrollTo(0, 0)")
    width = page.evaluate("document.documentElement.scrollWidth")
    harness.screenshot(page, f"story-{name}-phone.png")
    page.set_viewport_size(PROJECTOR)
    page.evaluate("window.scrollTo(0, 0)")
    harness.screenshot(page, f"story-{name}-projector.png", full_page=False)
    page.set_viewport_size(size)
    assert width <= PHONE["width"], f"{name}: the page is {width}px wide at 375px"


def create_game(server: Server, *args: str) -> dict[str, Any]:
    result = server.manage(
        "creategame", "--scenario", "targeted_audit", "--labs", "6", "--json",
        "--base-url", server.base_url, *args,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def test_the_create_form_previews_the_class_and_warns_of_one_that_teaches_nothing(
    server, chromium_browser
):
    page = new_page(chromium_browser, PROJECTOR)
    page.set_default_timeout(WAIT_MS)
    try:
        log_in(page, server)
        page.goto(f"{server.base_url}/console/new/")
        preview = page.locator("#setup-preview")
        expect(preview.locator('[data-figure="bot-price"]')).to_be_visible()
        expect(preview).to_contain_text("rational bots")
        # Fewer labs: the preset's cap scales with them (10 of 20 -> 3 of 6).
        page.get_by_label("Labs (N)").fill("6")
        expect(page.locator("#id_token_cap")).to_have_value("3")
        scenario = sweep_scenario(load_preset("targeted_audit"), labs=6)
        expect(preview.locator('[data-figure="bot-price"]')).to_have_text(
            f"{expected_bot_price(scenario):.3f}"
        )
        expect(preview.locator('[data-figure="permits-per-lab"]')).to_contain_text("3 for 6")
        shoot(page, "new-preview")
        # A cap typed over every lab: kept, and the preview says what to change.
        page.get_by_label("Token cap (Q)").fill("6")
        warning = preview.locator('[data-warning="cap_covers_all"]')
        expect(warning).to_contain_text("Set the token cap below 6")
        page.get_by_label("Labs (N)").fill("5")
        expect(page.locator("#id_token_cap")).to_have_value("6")  # typed: not scaled
        shoot(page, "new-warning")
        # Weak enforcement: every lab violates.
        page.get_by_label("Token cap (Q)").fill("2")
        page.get_by_label("Fine (φ)").fill("0")
        page.get_by_label("Collateral (K)").fill("0.01")
        expect(preview.locator('[data-warning="everyone_violates"]')).to_contain_text(
            "Raise the fine"
        )
    finally:
        page.context.close()


def play_one_round_to_results(server: Server, browser: Any, coaching: str) -> tuple[Any, str]:
    extra = ("--ask-belief",) if coaching == "numbers" else ()
    game = create_game(
        server, "--human-labs", "1", "--phase-seconds", "60", "--coaching", coaching, *extra
    )
    code = game["code"]
    context = browser.new_context(viewport=PHONE)
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    page.goto(f"{server.base_url}/join/{code}/")
    page.get_by_label("Nickname").fill(f"Ana-{coaching}")
    page.get_by_role("button", name="Join", exact=True).click()
    page.wait_for_url(f"**/play/{code}/")
    page.wait_for_selector('#phase[data-status="running"][data-phase="bidding"]')
    page.get_by_role("textbox", name="Your sealed bid").fill("0")
    page.get_by_role("button", name="Place bid").click()
    page.wait_for_selector('#phase[data-phase="compliance"]')
    expect(page.get_by_role("button", name="Run without a permit")).to_be_visible()
    return page, code


def test_coaching_levels_headline_and_payoff_terms_on_the_phone(server, chromium_browser):
    shown = {}
    for level in ("full", "numbers", "none"):
        page, code = play_one_round_to_results(server, chromium_browser, level)
        action = page.locator("#lab-action")
        shown[level] = (
            action.locator(".expected-net").count(),
            action.locator(".tradeoff-numbers").count(),
        )
        shoot(page, f"coaching-{level}")
        if level == "numbers":
            expect(action.locator(".tradeoff-numbers")).to_contain_text("Penalty if caught")
            expect(action).not_to_contain_text("Running is worth")
            # The belief question: optional, one tap; the answer is logged as a move.
            expect(action.locator(".belief legend")).to_contain_text("How likely")
            shoot(page, "belief-question")
            page.get_by_role("button", name="30%", exact=True).click()
            expect(action.locator(".belief-answer")).to_contain_text("30%")
            (move,) = server.rows(
                "SELECT m.payload FROM permitgame_move m JOIN permitgame_game g "
                "ON m.game_id = g.id WHERE g.code = ? AND m.action = 'belief'",
                code,
            )
            assert json.loads(move["payload"]) == {"percent": 30}
        else:
            assert action.locator(".belief").count() == 0
        page.get_by_role("button", name="Run without a permit").click()
        page.wait_for_selector('#phase[data-phase="results"]')
        record = server.rows(
            "SELECT r.* FROM permitgame_roundrecord r JOIN permitgame_game g ON r.game_id = g.id "
            "WHERE g.code = ?",
            code,
        )[0]
        metrics = json.loads(record["metrics"])
        headline = page.locator("#lab-action .headline")
        expect(headline).to_contain_text(f"Price {record['price']:.2f}.")
        expect(headline).to_contain_text(f"{metrics['violations']} lab")
        expect(headline).to_contain_text(f"audited {metrics['audits']}")
        terms = page.locator("#lab-action .payoff-terms")
        payoff = json.loads(record["payoffs"])[0]
        expect(terms).to_contain_text("value")
        expect(terms).to_contain_text("compute cost")
        caught = json.loads(record["caught"])[0]
        if caught:
            expect(terms).to_contain_text("fine φ")
        text = terms.inner_text()
        assert text.rstrip().endswith(f"{payoff:+.3f}".replace("-", "\u2212")), text
        shoot(page, f"results-{level}")
        page.context.close()
    assert shown == {"full": (1, 0), "numbers": (0, 1), "none": (0, 0)}


def test_the_projector_shows_the_round_headline_and_the_debrief_its_new_parts(
    server, chromium_browser
):
    console = new_page(chromium_browser, PROJECTOR)
    console.set_default_timeout(WAIT_MS)
    projector = None
    try:
        log_in(console, server)
        console.goto(f"{server.base_url}/console/new/")
        console.get_by_label("Labs (N)").fill("6")
        console.get_by_label("Rounds").fill("2")
        expect(console.locator("#id_token_cap")).to_have_value("3")
        console.get_by_role("button", name="Create the game").click()
        console.wait_for_url("**/console/games/*/")
        code = console.url.rstrip("/").split("/")[-1]
        projector = harness.second_window(console, PROJECTOR)  # the same login
        projector.set_default_timeout(WAIT_MS)
        projector.goto(f"{server.base_url}/console/games/{code}/projector/")
        projector.wait_for_selector('.socket-state[data-socket-state="open"]')
        console.locator('[data-control="start"]').click()
        expect(projector.locator("#host-status .headline")).to_contain_text("Price", timeout=30_000)
        shoot(projector, "projector-headline")
        console.goto(f"{server.base_url}/console/games/{code}/debrief/")
        expect(console.locator("#h-price")).to_be_visible()
        expect(console.locator('[data-number="realised-detection"]')).to_be_visible()
        expect(console.locator("#h-bots")).to_be_visible()
        expect(console.locator(".counterfactual")).to_be_visible()
        shoot(console, "debrief")
    finally:
        console.context.close()
        if projector is not None:
            projector.context.close()


def test_the_governors_cockpit_on_the_phone(server, chromium_browser):
    game = create_game(server, "--human-governor", "--phase-seconds", "60")
    code = game["code"]
    context = chromium_browser.new_context(viewport=PHONE)
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    try:
        page.goto(f"{server.base_url}/join/{code}/")
        page.get_by_label("Nickname").fill("Gov")
        page.get_by_role("button", name="Join", exact=True).click()
        page.wait_for_url(f"**/play/{code}/")
        page.wait_for_selector('#phase[data-status="running"][data-phase="audit"]')
        cockpit = page.locator("#governor-action .cockpit")
        expect(cockpit.locator('[data-posterior="signal"]')).to_contain_text("%")
        expect(cockpit.locator('[data-posterior="quiet"]')).to_contain_text("%")
        expect(cockpit.locator("[data-budget]")).to_contain_text("without a permit")
        expect(cockpit.locator("[data-budget] dd")).to_have_text("no cap")
        # No round yet: a half-and-half prior, so a warning means more than no warning.
        loud = float(cockpit.locator('[data-posterior="signal"]').inner_text().rstrip("%"))
        quiet = float(cockpit.locator('[data-posterior="quiet"]').inner_text().rstrip("%"))
        assert loud > quiet
        shoot(page, "cockpit")
        page.get_by_role("button", name="Send audits").click()
        page.wait_for_selector('#phase[data-phase="results"]')
        expect(page.locator("#governor-action .headline")).to_contain_text("Price")
        # Another policy's catches stay hidden until the game is over (they would tell which
        # labs it audited were violating).
        assert page.locator("#governor-action .cockpit-scores").count() == 0
        shoot(page, "cockpit-results")
    finally:
        context.close()
