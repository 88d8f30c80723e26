"""The players' pages in a real browser: join, the lab and governor screens, live over htmx.

One Daphne server (SQLite in a temp dir) serves a game made with ``creategame``: two human labs,
a human governor and bot labs. Three browser contexts join it by code and play two whole rounds
through the pages only, while the test reads the database to check what each screen says.
Screenshots of every screen at phone (375x812) and desktop (1280x800) width go to ``artifacts/``.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from sim_core import load_preset, scenario_to_dict
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
    "metrics",
}


@dataclass
class Server:
    base_url: str
    env: dict[str, str]
    database: Path
    scenario_file: Path

    def create_game(self, *args: str) -> dict[str, Any]:
        result = harness.manage(
            "creategame",
            "--scenario",
            str(self.scenario_file),
            "--json",
            "--base-url",
            self.base_url,
            *args,
            env=self.env,
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
def server() -> Iterator[Server]:
    """Daphne on a fresh SQLite file, and a small scenario: 5 labs, 2 permits, 2 rounds."""
    scenario = load_preset("targeted_audit")
    data = scenario_to_dict(scenario)
    data["rounds"] = 2
    data["labs"]["count"] = 5
    data["market"]["token_cap"] = 2
    data["audit"]["max_audits"] = 2
    with harness.scratch_dir("permitgame-play-") as workdir:
        scenario_file = workdir / "classroom.json"
        scenario_file.write_text(json.dumps(data))
        env = {"DATABASE_URL": harness.sqlite_database_url(workdir)}
        with harness.daphne_server(env) as base_url:
            yield Server(base_url, env, workdir / "db.sqlite3", scenario_file)


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
    page.screenshot(path=harness.artifact_path(f"play-{name}-phone.png"), full_page=True)
    page.set_viewport_size(DESKTOP)
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=harness.artifact_path(f"play-{name}-desktop.png"), full_page=True)
    page.set_viewport_size(PHONE)


def wait_phase(player: Player, round_no: int, phase: str) -> None:
    player.page.wait_for_selector(
        f'#phase[data-status="running"][data-round="{round_no}"][data-phase="{phase}"]'
    )


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


def signed(value: float) -> str:
    text = amount(value)
    return text if text.startswith("\u2212") or text == "0.000" else "+" + text


def test_two_labs_and_a_governor_play_two_rounds_through_the_pages(server, chromium_browser):
    game = server.create_game("--human-labs", "2", "--human-governor", "--phase-seconds", "60")
    code = game["code"]
    ana, ben, gil = (open_player(chromium_browser) for _ in range(3))
    try:
        # Joining: a link fills the code in; the first two players get labs, the third governs.
        ana.page.goto(f"{server.base_url}/join/{code}/")
        assert ana.page.get_by_label("Join code", exact=True).input_value() == code
        shoot(ana.page, "join")
        join(ana, server, code, "Ana")
        see(ana, ".seat-bar", "Lab 1")
        see(ana, "#phase", "Waiting to start")
        shoot(ana.page, "lab-lobby")
        join(ben, server, code, "Ben")
        join(gil, server, code, "Gil")
        see(gil, ".seat-bar", "Governor")
        ana_seat, ben_seat = server.seat(code, "Ana"), server.seat(code, "Ben")

        # Round 1, bidding. Bad bids are answered in words and change nothing.
        for player in (ana, ben, gil):
            wait_phase(player, 1, "bidding")
        see(ana, "#lab-action", "Enter your sealed bid")
        see(ana, "#waiting", "Lab 1 (Ana)")
        see(ana, "#waiting", "Lab 2 (Ben)")
        shoot(ana.page, "lab-bidding")
        shoot(gil.page, "governor-bidding")
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
        bid(ana, "0")
        ana.page.wait_for_selector("#lab-action :text('is in')")
        see(ana, "#lab-action", "0.000")
        expect(ana.page.locator("#waiting")).not_to_contain_text("Lab 1 (Ana)")
        see(ana, "#waiting", "Lab 2 (Ben)")

        # A reload mid-round restores the screen exactly.
        before = {sel: ana.text(sel) for sel in ("#lab-action", "#you", "#waiting", "#market")}
        ana.page.reload()
        ana.page.wait_for_selector("#connection.is-online")
        assert {sel: ana.text(sel) for sel in before} == before
        shoot(ana.page, "lab-waiting")

        bid(ben, "5")
        for player in (ana, ben, gil):
            wait_phase(player, 1, "compliance")

        # Ana has no permit: she sees the trade-off in the model's numbers and runs anyway.
        see(ana, "#lab-action", "run anyway, or stay idle")
        tradeoff = ana.text(".tradeoff")
        assert "Expected penalty" in tradeoff
        shoot(ana.page, "lab-choice")
        see(ben, "#lab-action", "You hold a permit")
        shoot(gil.page, "governor-compliance")
        ana.page.get_by_role("button", name="Run without a permit").click()

        # The governor sees every lab's signal and permit, and audits Ana.
        wait_phase(gil, 1, "audit")
        gil.page.wait_for_selector("#audit-form tbody tr")
        rows = gil.page.locator("#audit-form tbody tr")
        assert rows.count() == 5
        seen_signals = [
            row.get_attribute("data-signal")
            for row in gil.page.locator("#audit-form tbody tr").all()
        ]
        see(gil, "#governor-action", "π1*")
        shoot(gil.page, "governor-audit")
        shoot(ana.page, "lab-audit")
        gil.page.get_by_label("Lab 1 · Ana").check()
        gil.page.get_by_role("button", name="Send audits").click()

        for player in (ana, ben, gil):
            wait_phase(player, 1, "results")
        (record,) = server.records(code)
        assert seen_signals == [str(int(s)) for s in record["signals"]]
        assert record["audited"][0] and record["caught"][0] and record["runs"][0]
        # Prices and results on every screen match the database.
        price = amount(record["price"])
        for player in (ana, ben, gil):
            see(player, "#market .price", price)
            see(player, "#round-results", price)
        see(ana, "#lab-action", "Caught")
        see(ana, "#lab-action", signed(record["payoffs"][0]))
        see(ana, "#you", amount(record["values"][0]))
        see(ben, "#lab-action", "Permit")
        see(ben, "#lab-action", signed(record["payoffs"][1]))
        see(gil, "#governor-action", signed(record["metrics"]["welfare"]))
        see(gil, "#signals", "Lab 1")
        shoot(ana.page, "lab-results")
        shoot(ben.page, "lab-results-permit")
        shoot(gil.page, "governor-results")

        # Round 2: Ben goes without a permit and stays idle; the governor audits no one.
        for player in (ana, ben, gil):
            wait_phase(player, 2, "bidding")
        bid(ana, "5")
        bid(ben, "0")
        wait_phase(ben, 2, "compliance")
        ben.page.get_by_role("button", name="Stay idle").click()
        wait_phase(gil, 2, "audit")
        gil.page.wait_for_selector("#audit-form")
        gil.page.get_by_role("button", name="Send audits").click()
        for player in (ana, ben, gil):
            player.page.wait_for_selector('#phase[data-status="finished"]', timeout=20_000)

        records = server.records(code)
        assert [r["round_no"] for r in records] == [1, 2]
        scores = [sum(r["payoffs"][lab] for r in records) for lab in range(5)]
        ranking = sorted(range(5), key=lambda lab: (-scores[lab], lab))
        for player in (ana, ben, gil):
            board = player.page.locator("#game-over .board li").all_inner_texts()
            assert [re.search(r"Lab (\d)", row).group(1) for row in board] == [
                str(lab + 1) for lab in ranking
            ]
            assert all(amount(scores[lab]) in row for lab, row in zip(ranking, board, strict=True))
        place = ranking.index(0) + 1
        see(
            ana,
            "#lab-action",
            f"you finished {place}{ {1: 'st', 2: 'nd', 3: 'rd'}.get(place, 'th') }",
        )
        shoot(ana.page, "lab-game-over")
        shoot(gil.page, "governor-game-over")

        # What each saw: a lab never a signal or another lab's value; the governor the signals.
        for lab, player in ((0, ana), (1, ben)):
            others = {amount(r["values"][i]) for r in records for i in range(5) if i != lab}
            received = "".join(player.frames)
            assert 'id="signals"' not in received and "data-signal" not in received
            assert not any(value in received for value in others)
            text = player.page.locator("body").inner_text()
            assert not any(value in text for value in others)
        assert "data-signal" in "".join(gil.frames)
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
    over = server.create_game("--labs", "2", "--phase-seconds", "1", "--start")["code"]
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
    finally:
        for player in (first, second):
            player.page.context.close()


def test_keyboard_alone_joins_and_places_a_bid(server, chromium_browser):
    code = server.create_game("--labs", "3", "--human-labs", "1", "--phase-seconds", "60")["code"]
    player = open_player(chromium_browser)
    page = player.page
    try:
        page.goto(f"{server.base_url}/join/")
        assert page.evaluate("document.activeElement.id") == "join-code"
        page.keyboard.type(code.lower())
        page.keyboard.press("Tab")
        page.keyboard.type("Kim")
        page.keyboard.press("Enter")
        page.wait_for_url(f"**/play/{code}/")
        wait_phase(player, 1, "bidding")
        page.wait_for_selector("#bid-amount")
        for _ in range(25):
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.id") == "bid-amount":
                break
        else:
            pytest.fail("Tab never reached the bid field")
        page.keyboard.type("0,2")
        page.keyboard.press("Enter")
        see(player, "#you", "Your bid 0.200")  # a lone human: the round goes on at once
        # The focus was in the form the update replaced: it lands on the new next step.
        assert page.evaluate("document.activeElement.id") == "lab-next"
        (move,) = server.moves(server.seat(code, "Kim")["id"], "bid")
        assert json.loads(move["payload"]) == {"amount": 0.2} and move["actor"] == "human"
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
        expect(ana.page.locator("#waiting")).to_contain_text("Lab 1 (Ana)")
        assert ana.page.evaluate("window.__sockets.length") == 2
    finally:
        for player in (ana, ben):
            player.page.context.close()
