"""The players' pages in a real browser: join, the lab and governor screens, live over htmx.

One Daphne server (SQLite in a temp dir) serves a game made with ``creategame``: two human labs,
a human governor and bot labs. Three browser contexts join it by code and play two whole rounds
through the pages only, while the test reads the database to check what each screen says.
Screenshots of every screen at phone (375x812) and desktop (1280x800) width go to ``artifacts/``.
The numbers a screen shows are checked against the database and against sim_core's own functions
(the pages never compute a rule themselves).
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import expect

from permitgame.templatetags.play_format import ordinal, percent
from sim_core import (
    Scenario,
    expected_penalty,
    load_preset,
    optimal_high_prob,
    parse_scenario,
    perceived_p_eff,
    scenario_to_dict,
)
from tests import harness

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PHONE = {"width": 375, "height": 812}
DESKTOP = {"width": 1280, "height": 800}
WAIT_MS = 15_000
JSON_COLUMNS = {
    "values",
    "bids",
    "won",
    "runs",
    "signals",
    "audited",
    "caught",
    "payoffs",
    "wealth",
    "metrics",
    "state",
    "next_state",
}


@dataclass
class Server:
    base_url: str
    env: dict[str, str]
    database: Path
    manage: harness.ManageProcess  # manage.py commands on the server's settings
    scenario_file: Path
    scenario: Scenario

    def create_game(self, *args: str) -> dict[str, Any]:
        result = self.manage(
            "creategame",
            "--scenario",
            str(self.scenario_file),
            "--json",
            "--base-url",
            self.base_url,
            *args,
        )
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def rows(self, sql: str, *params: Any) -> list[sqlite3.Row]:
        with sqlite3.connect(self.database) as connection:
            connection.row_factory = sqlite3.Row
            return connection.execute(sql, params).fetchall()

    def seat(self, code: str, nickname: str) -> sqlite3.Row:
        (row,) = self.rows(
            "SELECT s.* FROM permitgame_seat s JOIN permitgame_game g ON s.game_id = g.id "
            "WHERE g.code = ? AND s.nickname = ?",
            code,
            nickname,
        )
        return row

    def moves(self, seat_id: int, action: str) -> list[sqlite3.Row]:
        return self.rows(
            "SELECT * FROM permitgame_move WHERE seat_id = ? AND action = ? ORDER BY id",
            seat_id,
            action,
        )

    def records(self, code: str) -> list[dict[str, Any]]:
        rows = self.rows(
            "SELECT r.* FROM permitgame_roundrecord r JOIN permitgame_game g ON r.game_id = g.id "
            "WHERE g.code = ? ORDER BY r.round_no",
            code,
        )
        return [
            {key: json.loads(row[key]) if key in JSON_COLUMNS else row[key] for key in row.keys()}  # noqa: SIM118
            for row in rows
        ]


@pytest.fixture(scope="module")
def server(app_server: harness.LiveServer) -> Iterator[Server]:
    """The session's Daphne server, and a small scenario: 5 labs, 2 permits, 2 rounds."""
    scenario = load_preset("targeted_audit")
    data = scenario_to_dict(scenario)
    data["rounds"] = 2
    data["labs"]["count"] = 5
    data["market"]["token_cap"] = 2
    data["audit"]["max_audits"] = 2
    with harness.scratch_dir("permitgame-play-") as workdir:
        scenario_file = workdir / "classroom.json"
        scenario_file.write_text(json.dumps(data))
        yield Server(
            app_server.base_url,
            app_server.env,
            app_server.database,
            app_server.manage,
            scenario_file,
            parse_scenario(data),
        )


@dataclass
class Player:
    """One browser context on the play page, with every websocket frame it received."""

    page: Any
    frames: list[str] = field(default_factory=list)

    def text(self, selector: str) -> str:
        return str(self.page.locator(selector).inner_text())


def see(player: Player, selector: str, text: str) -> None:
    """Wait until the element shows ``text`` (fragments for each audience come separately)."""
    expect(player.page.locator(selector)).to_contain_text(text)


def open_player(browser: Any) -> Player:
    context = browser.new_context(viewport=PHONE)
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    player = Player(page)
    page.on(
        "websocket",
        lambda socket: socket.on(
            "framereceived",
            lambda payload: player.frames.append(payload if isinstance(payload, str) else ""),
        ),
    )
    return player


def shoot(page: Any, name: str) -> None:
    """Save phone and desktop screenshots; check nothing overflows the phone's width."""
    page.set_viewport_size(PHONE)
    page.evaluate("window.scrollTo(0, 0)")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"{name}: the page is {width}px wide at 375px"
    harness.screenshot(page, f"play-{name}-phone.png")
    page.set_viewport_size(DESKTOP)
    page.evaluate("window.scrollTo(0, 0)")
    harness.screenshot(page, f"play-{name}-desktop.png")
    page.set_viewport_size(PHONE)


def wait_phase(player: Player, round_no: int, phase: str) -> None:
    try:
        player.page.wait_for_selector(
            f'#phase[data-status="running"][data-round="{round_no}"][data-phase="{phase}"]'
        )
    except PlaywrightTimeout as error:  # say what the page shows and what it was last sent
        shown = player.page.evaluate(
            "() => [document.querySelector('#phase')?.outerHTML.slice(0, 300),"
            " document.querySelector('#connection')?.className,"
            " document.querySelector('#seq')?.dataset.seq]"
        )
        last = [frame[:200] for frame in player.frames[-3:]]
        raise AssertionError(
            f"round {round_no} {phase} not shown: #phase, #connection, #seq = {shown}; "
            f"{len(player.frames)} frames, the last: {last}"
        ) from error


def join(player: Player, server: Server, code: str, nickname: str) -> None:
    page = player.page
    page.goto(f"{server.base_url}/join/{code}/")
    page.get_by_label("Nickname").fill(nickname)
    page.get_by_role("button", name="Join", exact=True).click()
    page.wait_for_url(f"**/play/{code}/")
    page.wait_for_selector("#connection.is-online")


def bid(player: Player, amount: str) -> None:
    player.page.get_by_role("textbox", name="Your sealed bid").fill(amount)
    player.page.get_by_role("button", name="Place bid").click()


def flash_error(player: Player) -> str:
    player.page.wait_for_selector("#flash.flash-error .flash-text")
    return player.text("#flash")


def amount(value: float) -> str:
    text = f"{value:.3f}"
    return "\u2212" + text[1:] if text.startswith("-") else text


def amounts_in(text: str) -> set[str]:
    """Every number written in ``text``, whole and at any precision, as ``amount`` writes it.

    A wealth of 10.523 holds the digits of 0.523, which the page does not show; a value written
    in full (0.5234) is 0.523 here, so a leak at any precision is still found.
    """
    found = set()
    for sign, number in re.findall(r"(?<![\d.])(\u2212|-)?(\d+\.\d+)", text):
        found.add(amount(-float(number) if sign else float(number)))
    return found


def signed(value: float) -> str:
    text = amount(value)
    return text if text.startswith("\u2212") or text == "0.000" else "+" + text


def clock_seconds(text: str) -> int:
    minutes, seconds = text.strip().split(":")
    return int(minutes) * 60 + int(seconds)


def figures(player: Player, selector: str) -> dict[str, str]:
    """Return the label -> number pairs of a ``.figures`` panel."""
    labels = player.page.locator(f"{selector} .figure-label").all_inner_texts()
    numbers = player.page.locator(f"{selector} .figure").all_inner_texts()
    return dict(zip(labels, (n.split()[0] for n in numbers), strict=True))


def replaced_after(player: Player, selector: str, action: Any) -> None:
    """Run ``action`` and wait until the server's next update has replaced ``selector``."""
    player.page.evaluate(f"document.querySelector('{selector}').dataset.old = '1'")
    action()
    player.page.wait_for_selector(f"{selector}:not([data-old])", state="attached")


def test_two_labs_and_a_governor_play_two_rounds_through_the_pages(server, chromium_browser):
    game = server.create_game(
        "--human-labs", "2", "--human-governor", "--phase-seconds", "60", "--live-standings"
    )
    code = game["code"]
    scenario = server.scenario
    ana, ben, gil = (open_player(chromium_browser) for _ in range(3))
    try:
        # Joining: a link fills the code in; the first two players get labs, the third governs.
        ana.page.goto(f"{server.base_url}/join/{code}/")
        assert ana.page.get_by_label("Join code", exact=True).input_value() == code
        shoot(ana.page, "join")
        join(ana, server, code, "Ana")
        expect(ana.page.get_by_role("heading", level=1)).to_have_text("Lab 1 · Ana")
        see(ana, "#phase", "Waiting to start")
        see(ana, "#lab-action", "Wait for the game to start")
        shoot(ana.page, "lab-lobby")
        join(ben, server, code, "Ben")
        join(gil, server, code, "Gil")
        see(gil, ".seat-bar", "Governor")
        ana_seat, ben_seat = server.seat(code, "Ana"), server.seat(code, "Ben")

        # Round 1, bidding: the lab sees its value, the cost, its wealth and the rules in force.
        for player in (ana, ben, gil):
            wait_phase(player, 1, "bidding")
        see(ana, "#lab-action", "Enter your sealed bid")
        see(ana, "#waiting", "Lab 1 · Ana")
        see(ana, "#waiting", "Lab 2 · Ben")
        see(gil, "#governor-action", "nothing to do yet")
        announced_p_eff = perceived_p_eff(
            scenario, announced_high_prob=scenario.audit.high_prob, human_governor=True
        )
        rules = figures(ana, "#market")
        assert rules["Penalty if caught (P)"] == amount(scenario.audit.punishment)
        assert rules["Chance a violator is caught (peff)"] == percent(announced_p_eff)
        see(ana, "#market", "audited with probability 60%, any other lab 5%")
        you = ana.text("#you")
        assert amount(scenario.labs.compute_cost) in you
        assert amount(scenario.labs.endowment) == ana.text("#you .wealth")
        # The countdown runs on its own between updates.
        countdown = ana.page.locator("#phase .countdown[role=timer] .countdown-value")
        shown = countdown.inner_text()
        expect(countdown).not_to_have_text(shown)  # its next second, not a fixed wait
        assert 0 < clock_seconds(shown) - clock_seconds(countdown.inner_text()) <= 3
        shoot(ana.page, "lab-bidding")
        shoot(gil.page, "governor-bidding")

        # Bad bids are answered in words by the field, and change nothing.
        for bad, message in (("-1", "cannot be negative"), ("abc", "number"), ("1e9", "wealth")):
            bid(ana, bad)
            assert message in flash_error(ana), bad
            assert (
                ana.page.get_by_role("textbox", name="Your sealed bid").get_attribute(
                    "aria-invalid"
                )
                == "true"
            )
        shoot(ana.page, "lab-bad-bid")
        assert server.moves(ana_seat["id"], "bid") == []
        wait_phase(ana, 1, "bidding")
        see(ana, "#waiting", "Lab 1 · Ana")
        assert ana.text("#you .wealth") == amount(scenario.labs.endowment)
        assert "Your bid" not in ana.text("#you")
        bid(ana, "0")
        ana.page.wait_for_selector("#lab-action :text('is in')")
        see(ana, "#lab-action", "0.000")
        expect(ana.page.locator("#waiting")).not_to_contain_text("Lab 1 · Ana")
        see(ana, "#waiting", "Lab 2 · Ben")
        see(ana, "#flash", "Bid received")  # the error made way for the acknowledgement
        expect(ana.page.locator("#flash")).not_to_have_class(re.compile("flash-error"))

        # A reload mid-round restores the screen exactly.
        before = {sel: ana.text(sel) for sel in ("#lab-action", "#you", "#waiting", "#market")}
        ana.page.reload()
        ana.page.wait_for_selector("#connection.is-online")
        assert {sel: ana.text(sel) for sel in before} == before
        shoot(ana.page, "lab-waiting")

        bid(ben, "5")
        for player in (ana, ben, gil):
            wait_phase(player, 1, "compliance")

        # Ana has no permit: she sees the price, and the trade-off in the model's numbers.
        see(ana, "#lab-action", "run anyway, or stay idle")
        see(ana, "#lab-action", "did not win a permit")
        face_penalty = float(
            expected_penalty(np.ones(1), announced_p_eff, scenario.audit.punishment)[0]
        )
        assert ana.text(".tradeoff .penalty") == "\u2212" + amount(face_penalty)
        tradeoff = ana.text(".tradeoff")
        assert f"caught with probability {percent(announced_p_eff)}" in tradeoff
        assert f"penalty {amount(scenario.audit.punishment)}" in tradeoff
        gain_shown = ana.text(".tradeoff .gain")
        net_shown = ana.text(".tradeoff .expected-net")
        choice_text = ana.text("#lab-action")
        shoot(ana.page, "lab-choice")
        see(ben, "#lab-action", "You hold a permit")
        see(ben, "#lab-action", "won a permit")
        shoot(gil.page, "governor-compliance")
        ana.page.get_by_role("button", name="Run without a permit").click()

        # The governor sees every lab's signal and permit, the audit cost and pi1*.
        wait_phase(gil, 1, "audit")
        gil.page.wait_for_selector("#audit-form tbody tr")
        rows = gil.page.locator("#audit-form tbody tr")
        assert rows.count() == 5
        seen_signals = [row.get_attribute("data-signal") for row in rows.all()]
        seen_permits = [row.locator(".badge-ok").count() == 1 for row in rows.all()]
        # A screen reader hears each box's permit and signal with its lab's name.
        described = gil.page.get_by_label("Lab 1 · Ana", exact=True).get_attribute(
            "aria-describedby"
        )
        assert described == "audit-permit-1 audit-signal-1"
        see(gil, "#governor-action", "π1*")
        see(gil, "#governor-action", f"Each audit costs {amount(scenario.audit.audit_cost)}")
        pi_star_shown = gil.text("#governor-action .pi-star")
        shoot(gil.page, "governor-audit")
        shoot(ana.page, "lab-audit")
        see(ana, "#waiting", "Governor · Gil")

        # Ticking more labs than the cap says so before anything is sent.
        note = gil.page.locator("#audit-count")
        for lab in ("Lab 1 · Ana", "Lab 3", "Lab 5"):
            gil.page.get_by_label(lab, exact=True).check()
        expect(note).to_contain_text("at most 2 may be audited: untick 1")
        expect(note).to_have_class(re.compile("is-over"))
        shoot(gil.page, "governor-audit-over-cap")
        for lab in ("Lab 3", "Lab 5"):
            gil.page.get_by_label(lab, exact=True).uncheck()
        expect(note).to_have_text("1 lab ticked of at most 2.")
        # Ticks survive an update that redraws the form (the whole screen sent again, as after
        # a gap in the sequence numbers) and a reload.
        resend = "window.permitgameSync()"
        replaced_after(gil, "#governor-action", lambda: gil.page.evaluate(resend))
        assert gil.page.get_by_label("Lab 1 · Ana", exact=True).is_checked()
        before = {sel: gil.text(sel) for sel in ("#governor-action", "#waiting", "#market")}
        gil.page.reload()
        gil.page.wait_for_selector("#connection.is-online")
        assert gil.page.get_by_label("Lab 1 · Ana", exact=True).is_checked()
        assert {sel: gil.text(sel) for sel in before} == before
        expect(note).to_have_text("1 lab ticked of at most 2.")
        assert server.moves(server.seat(code, "Gil")["id"], "audit") == []
        gil.page.get_by_role("button", name="Send audits").click()

        for player in (ana, ben, gil):
            wait_phase(player, 1, "results")
        (record,) = server.records(code)
        assert seen_signals == [str(int(s)) for s in record["signals"]]
        assert seen_permits == record["won"]
        assert record["audited"][0] and record["caught"][0] and record["runs"][0]
        # What the pages showed before settlement matches the model's numbers.
        value, cost = record["values"][0], scenario.labs.compute_cost
        gain = value - cost + scenario.labs.racing_value
        assert gain_shown == signed(gain)
        assert net_shown == signed(gain - face_penalty)
        assert f"the price was {amount(record['price'])}" in choice_text
        assert pi_star_shown == "π1* = " + percent(
            optimal_high_prob(
                price=record["price"],
                racing_value=scenario.labs.racing_value,
                punishment=scenario.audit.punishment,
                beta=scenario.audit.beta,
                base_prob=scenario.audit.base_prob,
                backcheck_prob=scenario.audit.backcheck_prob,
            )
        )
        # Prices and results on every screen match the database.
        price = amount(record["price"])
        metrics = record["metrics"]
        for player in (ana, ben, gil):
            see(player, "#market .price", price)
            assert figures(player, "#round-results") == {
                "Price": price,
                "Permits": str(metrics["permits"]),
                "Violations": str(metrics["violations"]),
                "Caught": str(metrics["caught"]),
            }
            # No public scoreboard during play: a round's payoff would tell who ran.
            assert player.page.locator("#round-results .board").count() == 0
        order = sorted(range(5), key=lambda lab: (-record["payoffs"][lab], lab))
        for player, lab in ((ana, 0), (ben, 1)):
            see(player, "#you .rank", f"{ordinal(order.index(lab) + 1)} of 5")
            others = {
                amount(record["payoffs"][other])
                for other in range(5)
                if other != lab and abs(record["payoffs"][other]) > 1e-9
            } - {price}
            public = player.page.locator("#round-results").inner_text()
            assert not any(value in public for value in others)
        see(ana, "#lab-action", "Caught")
        see(ana, "#lab-action", "the governor's audit caught you")
        see(ana, "#lab-action", signed(record["payoffs"][0]))
        see(ana, "#you", amount(record["values"][0]))
        see(ana, "#you .wealth", amount(record["wealth"][0]))
        history = ana.page.locator("#you table.history tbody tr").all_inner_texts()
        assert len(history) == 1 and "caught" in history[0]
        assert signed(record["payoffs"][0]) in history[0]
        see(ben, "#lab-action", "Permit")
        see(ben, "#lab-action", f"paid {price}")
        see(ben, "#lab-action", signed(record["payoffs"][1]))
        see(gil, "#governor-action", "Caught: Lab 1")
        see(gil, "#governor-action", signed(metrics["welfare"]))
        see(gil, "#signals", "Lab 1")
        see(gil, "#audit-results", signed(metrics["welfare"]))
        shoot(ana.page, "lab-results")
        shoot(ben.page, "lab-results-permit")
        shoot(gil.page, "governor-results")

        # Round 2: Ben goes without a permit and stays idle; the governor audits no one.
        for player in (ana, ben, gil):
            wait_phase(player, 2, "bidding")
        expect(gil.page.locator("#audit-form")).to_have_count(0)
        bid(ana, "5")
        bid(ben, "0")
        wait_phase(ben, 2, "compliance")
        ben.page.get_by_role("button", name="Stay idle").click()
        wait_phase(gil, 2, "audit")
        gil.page.wait_for_selector("#audit-form")
        # Last round's ticks are not carried over.
        assert gil.page.locator("#audit-form input[name=labs]:checked").count() == 0
        gil.page.get_by_role("button", name="Send audits").click()
        for player in (ana, ben, gil):
            player.page.wait_for_selector('#phase[data-status="finished"]', timeout=20_000)

        records = server.records(code)
        assert [r["round_no"] for r in records] == [1, 2]
        scores = [sum(r["payoffs"][lab] for r in records) for lab in range(5)]
        ranking = sorted(range(5), key=lambda lab: (-scores[lab], lab))
        for player in (ana, ben, gil):
            see(player, "#phase", "Game over")
            board = player.page.locator("#game-over .board li").all_inner_texts()
            assert [re.search(r"Lab (\d)", row).group(1) for row in board] == [
                str(lab + 1) for lab in ranking
            ]
            assert all(amount(scores[lab]) in row for lab, row in zip(ranking, board, strict=True))
            welfare = sum(r["metrics"]["welfare"] for r in records)
            see(player, "#game-over", amount(welfare))
        place = ranking.index(0) + 1
        see(
            ana,
            "#lab-action",
            f"you finished {place}{ {1: 'st', 2: 'nd', 3: 'rd'}.get(place, 'th') }",
        )
        see(ana, "#lab-action", amount(scores[0]))
        rows = ben.page.locator("#you table.history tbody tr").all_inner_texts()
        assert len(rows) == 2 and "Idle" in rows[1] and "Permit at" in rows[0]
        shoot(ana.page, "lab-game-over")
        see(gil, "#governor-action", "Your instructor goes through the results next")
        see(gil, "#governor-action", amount(sum(r["metrics"]["welfare"] for r in records)))
        shoot(gil.page, "governor-game-over")

        # What each saw: a lab never a signal or another lab's value; the governor the
        # signals, but never a lab's value or its run choice.
        for lab, player in ((0, ana), (1, ben)):
            others = {amount(r["values"][i]) for r in records for i in range(5) if i != lab}
            received = "".join(player.frames)
            assert 'id="signals"' not in received and "data-signal" not in received
            assert 'id="governor-action"' not in received
            assert not others & amounts_in(received)
            text = player.page.locator("body").inner_text()
            assert not others & amounts_in(text)
        governed = "".join(gil.frames)
        assert "data-signal" in governed
        for private in ('id="you"', 'id="lab-action"', "Value this round", "Your bid"):
            assert private not in governed, private
        values = {amount(r["values"][i]) for r in records for i in range(5)}
        assert not values & amounts_in(governed)
        assert ana_seat["id"] != ben_seat["id"]
    finally:
        for player in (ana, ben, gil):
            player.page.context.close()


def field_error(page: Any, field_id: str) -> str:
    page.wait_for_selector(f"#{field_id}-error")
    assert page.locator(f"#{field_id}").get_attribute("aria-invalid") == "true"
    return str(page.locator(f"#{field_id}-error").inner_text())


def try_join(page: Any, server: Server, code: str, nickname: str) -> None:
    page.goto(f"{server.base_url}/join/")
    page.get_by_label("Join code", exact=True).fill(code)
    page.get_by_label("Nickname").fill(nickname)
    page.get_by_role("button", name="Join", exact=True).click()
    page.wait_for_load_state()


def test_join_errors_are_shown_by_their_field_in_the_browser(server, chromium_browser):
    one_seat = server.create_game("--labs", "1", "--human-labs", "1")["code"]
    three_labs = server.create_game("--labs", "3", "--human-labs", "2")["code"]
    over = server.create_game(
        "--labs", "2", "--phase-seconds", "1", "--results-seconds", "0", "--start"
    )["code"]  # fmt: skip
    first, second = (open_player(chromium_browser) for _ in range(2))
    try:
        page = second.page
        try_join(page, server, "zz99zz", "Ana")
        assert "no game with the code" in field_error(page, "join-code")
        assert page.get_by_label("Nickname").input_value() == "Ana"
        shoot(page, "join-unknown-code")

        join(first, server, one_seat, "Ana")
        try_join(page, server, one_seat, "Ben")
        assert "Every seat of game" in field_error(page, "join-code")
        shoot(page, "join-game-full")

        join(first, server, three_labs, "Ana")
        try_join(page, server, three_labs, "ANA")
        assert "is taken in this game" in field_error(page, "join-nickname")
        shoot(page, "join-nickname-taken")

        status = f"SELECT status FROM permitgame_game WHERE code = '{over}'"
        for _ in range(100):
            if server.rows(status)[0]["status"] == "finished":
                break
            page.wait_for_timeout(100)
        try_join(page, server, over, "Ben")
        assert f"Game {over} is over" in field_error(page, "join-code")
        shoot(page, "join-game-over")

        # A wrong rejoin code opens the folded form with its message; the right one moves the seat.
        page.goto(f"{server.base_url}/join/")
        page.get_by_text("Continue on another device", exact=True).click()
        page.get_by_label("Game code").fill(three_labs)
        page.get_by_label("Rejoin code").fill("NOPE99")
        page.get_by_role("button", name="Continue my seat").click()
        assert "rejoin code" in field_error(page, "rejoin-code")
        focused(page, "rejoin-code")
        shoot(page, "join-rejoin-error")
        first.page.goto(f"{server.base_url}/play/{three_labs}/")
        rejoin_code = str(first.page.locator("#rejoin-code").text_content()).strip()
        assert re.fullmatch(r"[A-Z0-9]{4,12}", rejoin_code), rejoin_code
        page.get_by_label("Rejoin code").fill(rejoin_code.lower())
        page.get_by_role("button", name="Continue my seat").click()
        page.wait_for_url(f"**/play/{three_labs}/")
        see(second, ".seat-bar", "Lab 1 · Ana")
    finally:
        for player in (first, second):
            player.page.context.close()


def test_home_page_takes_a_join_code_to_the_join_page(server, chromium_browser):
    code = server.create_game("--labs", "3", "--human-labs", "1", "--title", "Tuesday class")[
        "code"
    ]
    player = open_player(chromium_browser)
    page = player.page
    try:
        page.goto(f"{server.base_url}/")
        shoot(page, "home")
        see(player, "main", "Enter the join code shown in class")
        expect(page.get_by_role("link", name="Open the instructor console")).to_have_attribute(
            "href", "/console/"
        )
        page.get_by_label("Join code").fill(code.lower())
        page.get_by_role("button", name="Continue").click()
        page.wait_for_url("**/join/?code=*")
        assert page.get_by_label("Join code", exact=True).input_value() == code
        see(player, ".game-info", "Tuesday class")
        focused(page, "join-nickname")
    finally:
        page.context.close()


def focused(page: Any, element_id: str) -> None:
    """The focus lands on ``#element_id``: autofocus and the pages' script move it as the page
    settles, a moment after it has loaded (a busy machine makes that moment longer)."""
    try:
        page.wait_for_function(
            "id => document.activeElement && document.activeElement.id === id",
            arg=element_id,
            timeout=5000,
        )
    except PlaywrightTimeout:
        where = page.evaluate("document.activeElement && document.activeElement.id")
        raise AssertionError(f"the focus is on {where!r}, not #{element_id}") from None


def test_keyboard_alone_joins_and_places_a_bid(server, chromium_browser):
    code = server.create_game("--labs", "3", "--human-labs", "1", "--phase-seconds", "60")["code"]
    player = open_player(chromium_browser)
    page = player.page
    page.add_init_script(RECORD_SOCKETS)
    try:
        page.goto(f"{server.base_url}/join/")
        focused(page, "join-code")
        page.keyboard.type(code.lower())
        page.keyboard.press("Tab")
        page.keyboard.type("Kim")
        page.keyboard.press("Enter")
        page.wait_for_url(f"**/play/{code}/")
        wait_phase(player, 1, "bidding")
        page.wait_for_selector("#bid-amount")
        # The action comes first in the tab order: past the site's name, the bid field.
        for _ in range(3):
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.id") == "bid-amount":
                break
        else:
            pytest.fail("the bid field is not among the first stops of the tab order")
        page.keyboard.type("0,2")
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.textContent") == "Place bid"
        # The connection drops and comes back: the redrawn form keeps the typed bid and the focus.
        replaced_after(
            player, "#lab-action", lambda: page.evaluate("window.__sockets.at(-1).close(4000)")
        )
        page.wait_for_selector("#connection.is-online")
        assert page.locator("#bid-amount").input_value() == "0,2"
        assert page.evaluate("document.activeElement.textContent") == "Place bid"
        page.keyboard.press("Enter")
        see(player, "#you", "Your bid 0.200")  # a lone human: the round goes on at once
        # The focus was in the form the update replaced: it lands on the new next step.
        focused(page, "lab-next")
        (move,) = server.moves(server.seat(code, "Kim")["id"], "bid")
        assert json.loads(move["payload"]) == {"amount": 0.2} and move["actor"] == "human"

        # Without a permit, the run/idle buttons come next in the tab order.
        wait_phase(player, 1, "compliance")
        see(player, "#lab-action", "did not win a permit")
        stops = []
        for _ in range(2):
            page.keyboard.press("Tab")
            stops.append(page.evaluate("document.activeElement.textContent"))
        assert stops == ["Run without a permit", "Stay idle"]
        page.keyboard.press("Enter")
        wait_phase(player, 1, "results")
        focused(page, "lab-next")
        see(player, "#lab-action", "You stayed idle")
        (choice,) = server.moves(server.seat(code, "Kim")["id"], "decide")
        assert json.loads(choice["payload"]) == {"run": False}
    finally:
        page.context.close()


def test_an_update_keeps_the_caret_and_the_text_typed_into_the_bid(server, chromium_browser):
    """An update redraws the action while a lab types its bid: the fragments are morphed, so the
    bid field stays the same element, with the keyboard in it, the typed text and the caret."""
    code = server.create_game("--labs", "3", "--human-labs", "1", "--phase-seconds", "600")["code"]
    player = open_player(chromium_browser)
    page = player.page
    try:
        join(player, server, code, "Kim")
        wait_phase(player, 1, "bidding")
        page.locator("#bid-amount").click()
        page.keyboard.type("0.2")
        page.keyboard.press("ArrowLeft")  # the caret between "0." and "2"
        page.evaluate("window.__field = document.getElementById('bid-amount')")
        # The whole screen again (what a skipped sequence number asks for): #lab-action and
        # #phase are sent anew while the lab is typing.
        replaced_after(player, "#lab-action", lambda: page.evaluate("window.permitgameSync()"))
        assert page.evaluate("document.activeElement === window.__field && __field.isConnected")
        assert page.evaluate("[__field.selectionStart, __field.selectionEnd]") == [2, 2]
        page.keyboard.type("1")
        assert page.locator("#bid-amount").input_value() == "0.12"
        page.keyboard.press("Enter")
        see(player, "#you", "Your bid 0.120")
    finally:
        page.context.close()


RECORD_SOCKETS = """
window.__sockets = [];
const Native = window.WebSocket;
window.WebSocket = function (...args) {
  const socket = new Native(...args);
  window.__sockets.push(socket);
  return socket;
};
Object.assign(window.WebSocket, Native);
window.WebSocket.prototype = Native.prototype;
"""


def test_dropped_connection_comes_back_to_the_current_screen(server, chromium_browser):
    code = server.create_game("--labs", "4", "--human-labs", "2", "--phase-seconds", "60")["code"]
    ana, ben = (open_player(chromium_browser) for _ in range(2))
    ana.page.add_init_script(RECORD_SOCKETS)
    try:
        join(ana, server, code, "Ana")
        join(ben, server, code, "Ben")
        wait_phase(ana, 1, "bidding")
        bid(ana, "0")
        see(ana, "#lab-action", "is in")

        # The socket drops; meanwhile Ben bids and the game moves on without Ana's browser.
        ana.page.evaluate("window.__sockets.at(-1).close(4000)")
        ana.page.wait_for_selector("#connection.is-offline")
        assert "Reconnecting" in ana.text("#connection")
        bid(ben, "5")
        wait_phase(ben, 1, "compliance")

        ana.page.wait_for_selector("#connection.is-online")
        wait_phase(ana, 1, "compliance")
        see(ana, "#lab-action", "run anyway, or stay idle")
        expect(ana.page.locator("#waiting")).to_contain_text("Lab 1 · Ana")
        assert ana.page.evaluate("window.__sockets.length") == 2
    finally:
        for player in (ana, ben):
            player.page.context.close()
