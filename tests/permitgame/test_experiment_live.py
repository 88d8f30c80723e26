"""A whole experiment end to end on real Daphne: two treatments x two rooms, seven programs
taking part over the JSON entry and the protocol, and one participant in a real browser.

The design is created with ``manage.py experiment create``; the browser participant follows the
entry link (consent, instructions, quiz, room), plays both rounds on the game's page and ends on
the completion page; the programs declare themselves and play with ``permitgame.client``. Then
``manage.py experiment export`` writes the tables, every game replays and its hash chain holds.
Screenshots of the participant's pages and the researcher's console pages at 375 px and
1920x1080 go to ``artifacts/``.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import sqlite3
import threading
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from permitgame.client import CLIENT, JoinInfo, Player
from permitgame.experiments import materials
from tests import harness
from tests.permitgame.console_fixtures import researcher_page

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PHONE, DESKTOP = harness.PHONE, harness.PROJECTOR

DESIGN = {
    "name": "Live study",
    "seed": 5,
    "treatments": {
        name: {
            "scenario": preset,
            "overrides": {"rounds": 2, "labs": {"count": 3}},
            "seats": {"human_labs": 2},
            "rooms": 2,
            "durations": {"bidding": 60, "compliance": 60, "audit": 60, "results": 0},
        }
        for name, preset in (("random", "random_audit"), ("targeted", "targeted_audit"))
    },
    "lobby_timeout": None,
    "bot_disclosure": "revealed_at_end",
    "payment": {"show_up_fee": 3.0, "per_point": 1.0, "cap": 20.0},
}


def shoot(page: Any, name: str) -> None:
    page.set_viewport_size(PHONE)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"{name}: the page is {width}px wide at 375px"
    harness.screenshot(page, f"experiment-{name}-phone.png")
    page.set_viewport_size(DESKTOP)
    harness.screenshot(page, f"experiment-{name}-desktop.png")
    page.set_viewport_size(PHONE)


class Study:
    def __init__(self, base_url: str, database: Path, code: str) -> None:
        self.base_url, self.database, self.code = base_url, database, code

    def query(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.database) as db:
            return db.execute(sql, args).fetchall()

    def answers(self, label: str) -> dict[str, str]:
        """The quiz's right answers for ``label``'s treatment, from the stored design."""
        (treatment,) = self.query(
            "SELECT p.treatment FROM experiments_participant p JOIN experiments_experiment e "
            "ON p.experiment_id = e.id WHERE p.label = ? AND e.code = ?",
            label,
            self.code,
        )[0]
        (design,) = self.query(
            "SELECT design FROM experiments_experiment WHERE code = ?", self.code
        )[0]
        scenario = json.loads(design)["treatments"][treatment]["scenario"]
        return {q.key: q.answer for q in materials.quiz(scenario)}

    def enter(self, body: dict[str, Any]) -> dict[str, Any]:
        request = urllib.request.Request(
            f"{self.base_url}/api/experiments/{self.code}/enter",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return dict(json.loads(response.read()))
        except urllib.error.HTTPError as error:
            return dict(json.loads(error.read()))

    def program(self, label: str) -> JoinInfo:
        body = {"label": label, "client": CLIENT, "consent": True}
        assert self.enter(body)["code"] == "quiz"
        seat = self.enter({**body, "answers": self.answers(label)})
        assert "token" in seat, seat
        return JoinInfo(
            player_id=seat["player_id"],
            token=seat["token"],
            role=seat["role"],
            nickname=seat["nickname"],
            rejoin_code=seat["rejoin_code"],
            game=seat["game"],
            ws_url=seat["ws_url"],
        )


def play_in_browser(page: Any) -> None:
    """Bid 0.1 each round and stay idle without a permit, until the game is over."""
    done: set[tuple[str, str]] = set()
    for _ in range(600):
        phase = page.locator("#phase")
        status = phase.get_attribute("data-status")
        if status == "finished":
            return
        key = (phase.get_attribute("data-round") or "", phase.get_attribute("data-phase") or "")
        if key not in done and key[1] == "bidding" and page.locator("#bid-amount").count():
            page.get_by_role("textbox", name="Your sealed bid").fill("0.1")
            page.get_by_role("button", name="Place bid").click()
            done.add(key)
        elif key not in done and key[1] == "compliance":
            idle = page.get_by_role("button", name="Stay idle")
            if idle.count():
                idle.click()
                done.add(key)
        page.wait_for_timeout(200)
    raise AssertionError("the game did not end")


def test_two_treatments_by_two_rooms_played_by_programs_and_a_browser_participant(
    app_server, chromium_browser, tmp_path
):
    base_url, manage = app_server.base_url, app_server.manage

    design = tmp_path / "design.json"
    design.write_text(json.dumps(DESIGN))
    made = manage("experiment", "create", str(design), "--json",
                  "--base-url", base_url)  # fmt: skip
    assert made.returncode == 0, made.stderr
    created = json.loads(made.stdout)
    study = Study(base_url, app_server.database, created["code"])

    # The browser participant: entry link, consent, instructions and quiz, the room.
    context = chromium_browser.new_context(viewport=PHONE)
    page = context.new_page()
    page.goto(f"{created['entry_url']}?label=WEB-1")
    shoot(page, "consent")
    page.get_by_role("button", name="I agree, continue").click()
    page.wait_for_selector("#instructions-title")
    for key, answer in study.answers("WEB-1").items():
        page.locator(f"input[name={key}][value='{answer}']").check()
    shoot(page, "instructions")
    page.get_by_role("button", name="Continue to the game").click()
    page.wait_for_url("**/play/*/")
    page.wait_for_selector("#connection.is-online")

    # Seven programs fill the other seats over the protocol, in a thread of their own.
    infos = [study.program(f"bot-{n}") for n in range(7)]
    results: list[Any] = []

    async def play_all() -> None:
        results.extend(
            await asyncio.wait_for(
                asyncio.gather(*(Player(info, seed=n).play() for n, info in enumerate(infos))),
                timeout=240,
            )
        )

    thread = threading.Thread(target=lambda: asyncio.run(play_all()))
    thread.start()
    # Revealed at the end: while the game runs the players' list tells no bot apart.
    page.wait_for_selector("#phase[data-status=running]")
    players = page.locator("#players")
    assert players.locator(".badge").count() == 0
    assert "bot-" not in players.inner_text()
    shoot(page, "play-bots-hidden")
    play_in_browser(page)
    thread.join(timeout=260)
    assert len(results) == 7 and all(r["type"] == "game_over" for r in results)
    # Once the game is over the list shows them (the room's bot lab and governor).
    page.wait_for_selector("#players .badge")
    assert players.get_by_text("Bot", exact=True).count() == 2

    # After play: the completion page with the payoff, the payment and a code.
    page.goto(created["entry_url"])
    page.wait_for_selector("[data-field=completion-code]")
    code_shown = page.locator("[data-field=completion-code]").inner_text()
    # Revealed at the end: the room's other human seat was a declared program.
    assert "2 of the 3 labs" in page.locator("[data-field=disclosure]").inner_text()
    shoot(page, "complete")

    # The researcher's pages.
    staff = researcher_page(chromium_browser, app_server, "rita", viewport=PHONE)
    staff.goto(f"{base_url}/console/experiments/{study.code}/")
    staff.wait_for_selector("[data-field=arrivals]")
    assert staff.locator("tr[data-game]").count() == 4
    shoot(staff, "monitor")
    staff.goto(f"{base_url}/console/experiments/")
    shoot(staff, "list")
    staff.goto(f"{base_url}/console/experiments/new/")
    staff.locator("#design-text").fill('{"treatments": {"a": {"rooms": "two"}}}')
    staff.wait_for_selector("#design-verdict [data-key='treatments.a.rooms']")
    shoot(staff, "editor-error")

    out = tmp_path / "data"
    exported = manage("experiment", "export", study.code, "--out", str(out))
    assert exported.returncode == 0, exported.stderr
    games = {
        row[0]
        for row in study.query(
            "SELECT g.code FROM permitgame_game g JOIN experiments_room r ON r.game_id = g.id "
            "JOIN experiments_experiment e ON r.experiment_id = e.id WHERE e.code = ?",
            study.code,
        )
    }
    assert len(games) == 4  # two treatments by two rooms
    for game in games:
        replayed = manage("replay_game", game)
        assert replayed.returncode == 0, replayed.stdout + replayed.stderr
        assert "hash chain of its" in replayed.stdout

    participants = list(csv.DictReader(io.StringIO((out / "participants.csv").read_text())))
    assert len(participants) == 8
    assert Counter((p["treatment"], p["room"]) for p in participants) == {
        ("random", "1"): 2, ("random", "2"): 2, ("targeted", "1"): 2, ("targeted", "2"): 2,
    }  # fmt: skip
    web = next(p for p in participants if p["label"] == "WEB-1")
    assert web["completion_code"] == code_shown and web["quiz_passed"] == "1"
    labs = list(csv.DictReader(io.StringIO((out / "labs.csv").read_text())))
    assert len(labs) == 4 * 2 * 3
    assert Counter(r["seat"] for r in labs) == {"program": 7 * 2, "human": 2, "bot": 4 * 2}
    assert all(r["bid_by"] == "program" for r in labs if r["seat"] == "program")
    assert all(r["cf_bid"] != "" for r in labs if r["bid_by"] in ("human", "program"))
