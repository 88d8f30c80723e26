"""The experiment monitor's room controls in a real browser: each answers in place (htmx), the
page keeps its place, the keyboard focus stays on the control (or the one that took its place),
and a refused control shows its message in the page. Screenshots at 375 px and 1920x1080 go to
``artifacts/``."""

from __future__ import annotations

import contextlib
import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from permitgame.client import CLIENT
from tests import harness
from tests.permitgame.console_fixtures import researcher_page

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PHONE, DESKTOP = harness.PHONE, harness.PROJECTOR
DESIGN = {
    "name": "Monitor study",
    "seed": 2,
    "treatments": {
        name: {
            "scenario": "targeted_audit",
            "overrides": {"rounds": 3, "labs": {"count": 3}},
            "seats": {"human_labs": 1},
            "rooms": 3,
            "durations": {"bidding": 900, "compliance": 900, "audit": 900, "results": 900},
        }
        for name in ("alpha", "beta")
    },
    "lobby_timeout": None,
    "quiz": {"enabled": False},
}


def enter(base_url: str, code: str, label: str) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{base_url}/api/experiments/{code}/enter",
        data=json.dumps({"label": label, "client": CLIENT, "consent": True}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return dict(json.loads(response.read()))


def shoot(page: Any, name: str) -> None:
    page.set_viewport_size(PHONE)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"{name}: the page is {width}px wide at 375px"
    harness.screenshot(page, f"monitor-{name}-phone.png")
    page.set_viewport_size(DESKTOP)
    harness.screenshot(page, f"monitor-{name}-desktop.png", full_page=False)


def focused(page: Any) -> str:
    return str(page.evaluate("document.activeElement && document.activeElement.id"))


def focus_settles(page: Any, expected: str) -> str:
    """Where the focus is once the swap has put it back (a moment after the new control is in
    the page): ``expected``'s id as soon as it gets there, else wherever it is after 5 s."""
    with contextlib.suppress(PlaywrightTimeout):
        page.wait_for_function(
            "(id) => document.activeElement && document.activeElement.id === id",
            arg=expected,
            timeout=5000,
        )
    return focused(page)


def test_the_monitors_room_controls_answer_in_place_and_keep_the_focus(
    app_server: harness.LiveServer, chromium_browser: Any, tmp_path: Path
) -> None:
    server = app_server
    design = tmp_path / "design.json"
    design.write_text(json.dumps(DESIGN))
    made = server.manage("experiment", "create", str(design), "--json",
                         "--base-url", server.base_url)  # fmt: skip
    assert made.returncode == 0, made.stderr
    code = json.loads(made.stdout)["code"]
    games = [enter(server.base_url, code, f"prog-{n}")["game"] for n in range(4)]
    page = researcher_page(chromium_browser, server, "mona", viewport=DESKTOP)
    monitor = f"{server.base_url}/console/experiments/{code}/"
    page.goto(monitor)
    page.wait_for_selector("tr[data-game]")
    assert page.locator("tr[data-game]").count() == 4  # four rooms, one participant each
    game = games[0]
    row = page.locator(f'tr[data-game="{game}"]')
    assert "running" in row.inner_text()
    page.evaluate("window.notReloaded = true")  # gone if a control loaded a new page

    # Keyboard only: Tab to the room's Pause, press Enter.
    pause = page.locator(f"#control-{game}-pause")
    pause.focus()
    page.keyboard.press("Enter")
    page.wait_for_selector(f"#control-{game}-resume")
    flash = page.locator("#monitor-flash")
    assert "room 1: Paused" in flash.inner_text()
    assert page.url == monitor
    resume = f"control-{game}-resume"
    assert focus_settles(page, resume) == resume  # the control that took its place
    assert "paused" in row.inner_text()
    # The monitor keeps refreshing itself (every 2 s) without taking the focus away: wait
    # for its next refresh to be in place.
    page.evaluate(
        """window.refreshed = 0;
           document.body.addEventListener("htmx:afterSettle", function (event) {
             if (event.detail.requestConfig.verb === "get") window.refreshed += 1;
           });"""
    )
    page.wait_for_function("() => window.refreshed > 0")
    assert focused(page) == f"control-{game}-resume"
    shoot(page, "paused")

    # Space on Resume: running again, the focus back on Pause.
    page.keyboard.press(" ")
    page.wait_for_selector(f"#control-{game}-pause")
    assert focus_settles(page, f"control-{game}-pause") == f"control-{game}-pause"
    assert "Resumed" in flash.inner_text()

    # A second monitor that has not seen the room end: its End is refused, in the page.
    stale = chromium_browser.new_context(viewport=DESKTOP)
    stale.add_cookies(page.context.cookies())
    other = stale.new_page()
    other.goto(monitor)
    other.wait_for_selector(f"#control-{game}-end")
    other.evaluate("window.notReloaded = true")
    other.evaluate(  # stop its refresh, so that it keeps the room as it was
        """document.body.addEventListener("htmx:beforeRequest", function (event) {
             if (event.detail.requestConfig.verb === "get") event.preventDefault();
           });"""
    )
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator(f"#control-{game}-end").click()
    page.locator(f'tr[data-game="{game}"] .state-finished').wait_for()
    assert "The game is over" in flash.inner_text()
    assert focus_settles(page, "monitor-flash") == "monitor-flash"  # no control left in that row

    other.once("dialog", lambda dialog: dialog.accept())
    other.locator(f"#control-{game}-end").click()
    alert = other.locator("#monitor-flash[role=alert]")
    alert.wait_for()
    assert "already over" in alert.inner_text()
    assert page.evaluate("window.notReloaded") and other.evaluate("window.notReloaded")
    assert "finished" in other.locator(f'tr[data-game="{game}"]').inner_text()
    shoot(other, "refused")
