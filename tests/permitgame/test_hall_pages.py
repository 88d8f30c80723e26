"""The players' pages in a lecture hall: a governor of 200 labs, in a real browser.

The audit list of 200 rows can be narrowed to the warnings or the labs without a permit and
ordered by them; ticks survive the narrowing and are all sent. A lab's page counts the permit
holders and ranks the first 40 labs at the end. Screenshots at 375 px and
1920x1080 go to artifacts/. A page that sees a gap in the sequence numbers asks for its screen.
"""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import expect

from tests import harness
from tests.permitgame.test_play_pages import (  # noqa: F401 (server: the module's fixture)
    PHONE,
    Player,
    join,
    open_player,
    server,
    wait_phase,
)

FULL_HD = {"width": 1920, "height": 1080}


def shoot(page: Any, name: str) -> None:
    """Save phone and full-HD screenshots of the visible screen; nothing overflows the phone."""
    page.set_viewport_size(PHONE)
    harness.screenshot(page, f"hall-{name}-phone.png", full_page=False)
    width = page.evaluate("document.documentElement.scrollWidth")
    wide = page.evaluate(
        "[...document.querySelectorAll('body *')]"
        ".filter(e => e.getBoundingClientRect().right > 376)"
        ".slice(0, 5).map(e => e.tagName + '.' + e.className + '#' + e.id)"
    )
    assert width <= PHONE["width"], f"{name}: the page is {width}px wide at 375px: {wide}"
    page.set_viewport_size(FULL_HD)
    harness.screenshot(page, f"hall-{name}-desktop.png", full_page=False)
    page.set_viewport_size(PHONE)


def visible_rows(player: Player) -> Any:
    return player.page.locator("#audit-rows tr:not([hidden])")


def test_a_governor_of_200_labs_narrows_orders_and_sends_the_audit_list(server, chromium_browser):  # noqa: F811
    code = server.create_game("--labs", "200", "--human-governor", "--phase-seconds", "600")["code"]
    gil = open_player(chromium_browser)
    page = gil.page
    try:
        join(gil, server, code, "Gil")  # the only human seat: the game starts, bots bid and run
        wait_phase(gil, 1, "audit")
        page.wait_for_selector("#audit-form")
        expect(page.locator("#audit-rows tr")).to_have_count(200)
        warnings = page.locator('#audit-rows tr[data-signal="1"]').count()
        no_permit = page.locator('#audit-rows tr[data-permit="0"]').count()
        both = page.locator('#audit-rows tr[data-signal="1"][data-permit="0"]').count()
        assert 0 < both <= warnings < 200 and no_permit < 200
        shown = page.locator("[data-shown]")
        expect(shown).to_have_text("200 labs")

        page.get_by_label("Show").select_option("warning")
        expect(visible_rows(gil)).to_have_count(warnings)
        expect(shown).to_have_text(f"Showing {warnings} of 200 labs")
        first = visible_rows(gil).first
        first.locator("input[name=labs]").check()
        ticked = first.get_attribute("data-player-id")
        page.get_by_label("Show").select_option("warning-nopermit")
        expect(visible_rows(gil)).to_have_count(both)
        shoot(page, "governor-200-warnings")
        page.get_by_label("Show").select_option("all")
        expect(visible_rows(gil)).to_have_count(200)
        page.get_by_label("Order").select_option("signal")
        signals = page.eval_on_selector_all(
            "#audit-rows tr", "rows => rows.map(r => r.dataset.signal)"
        )
        assert signals == ["1"] * warnings + ["0"] * (200 - warnings)
        page.get_by_label("Order").select_option("permit")
        permits = page.eval_on_selector_all(
            "#audit-rows tr", "rows => rows.map(r => r.dataset.permit)"
        )
        assert permits == ["0"] * no_permit + ["1"] * (200 - no_permit)
        # The choice holds when an update redraws the form (the whole screen sent again); the
        # form is morphed, so the list keeps where it was scrolled to and the focus its control.
        page.get_by_label("Show").select_option("nopermit")
        rows_box = page.locator("#audit-form .table-scroll")
        top = rows_box.evaluate("box => { box.scrollTop = 300; return box.scrollTop; }")
        assert top > 0
        page.get_by_label("Show").focus()
        page.evaluate("window.__show = document.activeElement")
        page.evaluate("document.querySelector('#governor-action').dataset.old = '1'")
        page.evaluate("window.permitgameSync()")
        page.wait_for_selector("#governor-action:not([data-old])", state="attached")
        expect(visible_rows(gil)).to_have_count(no_permit)
        expect(page.get_by_label("Show")).to_have_value("nopermit")
        assert rows_box.evaluate("box => box.scrollTop") == top
        assert page.evaluate("document.activeElement === window.__show && __show.isConnected")
        # The keyboard reaches the tools before the long list.
        page.get_by_label("Show").focus()
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.matches('[data-sort]')")
        shoot(page, "governor-200-audit")

        # The lab ticked while the list was narrowed is sent, hidden or not.
        page.get_by_label("Show").select_option("all")
        assert page.locator(f'#audit-rows tr[data-player-id="{ticked}"] input').is_checked()
        page.get_by_role("button", name="Send audits").click()
        wait_phase(gil, 1, "results")
        expect(page.locator("#governor-action")).to_contain_text(f"Lab {ticked}")
    finally:
        page.context.close()


def test_the_page_asks_for_its_screen_when_a_number_is_skipped(server, chromium_browser):  # noqa: F811
    code = server.create_game("--labs", "3", "--human-labs", "1", "--phase-seconds", "600")["code"]
    ana = open_player(chromium_browser)
    page = ana.page
    try:
        join(ana, server, code, "Ana")
        wait_phase(ana, 1, "bidding")
        # Each step runs whole in the page, between two of the socket's messages (the room's
        # bots keep moving, and each message moves the page's number on): the page's number is
        # set by a snapshot first, then the message under test is swapped in.
        page.evaluate("window.__frames = []")
        # An event two numbers ahead arrives (the one between was lost): the page asks again.
        page.evaluate(
            """() => {
              const marker = document.getElementById('seq');
              const seq = Number(marker.dataset.seq);
              marker.dataset.kind = 'snapshot';
              window.permitgameCheckSeq(null);
              marker.dataset.seq = String(seq + 2);
              marker.dataset.kind = 'event';
              window.permitgameCheckSeq({ send: (m) => window.__frames.push(m) });
            }"""
        )
        assert page.evaluate("window.__frames") == ['{"type":"sync"}']
        # A progress message repeating the page's number is no gap.
        page.evaluate(
            """() => {
              const marker = document.getElementById('seq');
              marker.dataset.kind = 'snapshot';
              window.permitgameCheckSeq(null);
              marker.dataset.kind = 'progress';
              window.permitgameCheckSeq({ send: (m) => window.__frames.push(m) });
            }"""
        )
        assert page.evaluate("window.__frames.length") == 1
        # The real socket answers a sync with the whole screen (a snapshot marker), whatever
        # events follow it.
        sent = len(ana.frames)
        page.evaluate("window.permitgameSync()")
        for _ in range(300):
            if any('data-kind="snapshot"' in frame for frame in ana.frames[sent:]):
                break
            page.wait_for_timeout(50)
        else:
            raise AssertionError("no snapshot answered the sync")
    finally:
        page.context.close()


def test_a_lab_in_a_hall_sees_the_holders_counted_and_the_first_forty_ranked(
    server,  # noqa: F811
    chromium_browser,
):
    # 60 labs, the page's one human among them; the phases end on their deadlines.
    code = server.create_game(
        "--labs", "60", "--human-labs", "1", "--phase-seconds", "2", "--results-seconds", "1"
    )["code"]
    ana = open_player(chromium_browser)
    page = ana.page
    try:
        join(ana, server, code, "Ana")
        page.wait_for_selector("#market .holders")
        expect(page.locator("#market .holders")).to_contain_text(re.compile(r":\s+\d+ labs\."))
        expect(page.locator("#market .holder")).to_have_count(0)  # no list of the holders
        expect(page.locator("#players li")).to_have_count(0)  # nor of the players: counts
        expect(page.locator("#players")).to_contain_text("61 seats: 1 with a player, 1 online.")
        page.wait_for_selector("#game-over:not([hidden])", timeout=60_000)
        expect(page.locator("#game-over li")).to_have_count(40)
        expect(page.locator("#game-over")).to_contain_text("The first 40 of 60 labs")
        expect(page.locator("#lab-next")).to_contain_text(re.compile(r"you finished \d+\w\w of 60"))
        shoot(page, "lab-game-over")
    finally:
        page.context.close()
