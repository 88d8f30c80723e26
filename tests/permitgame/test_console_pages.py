"""The instructor's console in a real browser: create a game, run it from the lobby to the debrief.

One Daphne server (SQLite in a temp dir) and one instructor account. The instructor logs in,
creates a game through the form (a bad value first), opens the projector, and two students join
through the address the projector's QR code encodes. The instructor moves seats around in the
lobby, starts, pauses, resumes, extends and advances the game to its end, and the debrief shows
the round charts and the deterrence heatmap with the game's point; a chart is downloaded as PNG
and as CSV with no network. Screenshots of the console (lobby, live), the projector (1920x1080)
and the debrief go to ``artifacts/`` when asked for (``PERMITGAME_SCREENSHOTS=1``); at phone
width (375 px) no console page may overflow, screenshots or not.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import segno
from PIL import Image
from playwright.sync_api import expect

from tests import harness

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PHONE = {"width": 375, "height": 812}
DESKTOP = {"width": 1280, "height": 800}
PROJECTOR = {"width": 1920, "height": 1080}
WAIT_MS = 15_000
USERNAME = "mira"
PASSWORD = "a-long-test-password-7"

# Once per server: the modules that log in as this instructor share the session's server.
CREATE_INSTRUCTOR = f"""
from django.contrib.auth import get_user_model
users = get_user_model().objects
if not users.filter(username={USERNAME!r}).exists():
    users.create_user({USERNAME!r}, password={PASSWORD!r})
"""


@dataclass
class Server:
    base_url: str
    env: dict[str, str]
    database: Path
    manage: harness.ManageProcess  # manage.py commands on the server's settings

    def rows(self, sql: str, *params: Any) -> list[sqlite3.Row]:
        with sqlite3.connect(self.database) as connection:
            connection.row_factory = sqlite3.Row
            return connection.execute(sql, params).fetchall()

    def game(self, code: str) -> sqlite3.Row:
        (row,) = self.rows("SELECT * FROM permitgame_game WHERE code = ?", code)
        return row

    def deadline(self, code: str) -> dt.datetime:
        return dt.datetime.fromisoformat(self.game(code)["phase_deadline"])


def instructor_server(app_server: harness.LiveServer) -> Server:
    """The session's Daphne server, with the instructor account these tests log in as."""
    result = app_server.manage("shell", "-c", CREATE_INSTRUCTOR)
    assert result.returncode == 0, result.stderr
    return Server(app_server.base_url, app_server.env, app_server.database, app_server.manage)


@pytest.fixture(scope="module")
def server(app_server: harness.LiveServer) -> Server:
    """The session's Daphne server, with this module's instructor account."""
    return instructor_server(app_server)


def new_page(browser: Any, viewport: dict[str, int]) -> Any:
    context = browser.new_context(viewport=viewport, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    return page


WIDER_THAN_THE_SCREEN = """
() => [...document.querySelectorAll("body *")]
  .filter(el => el.getBoundingClientRect().right > document.documentElement.clientWidth + 1)
  .filter(el => !el.closest(".table-wrap, .visually-hidden"))
  .slice(0, 5)
  .map(el => el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") + "." + el.className)
"""


def shoot(page: Any, name: str, *, phone: bool = True, viewport: dict[str, int] = DESKTOP) -> None:
    """Save a full-page screenshot at ``viewport`` (and at phone width, checking overflow)."""
    size = page.viewport_size
    wide: list[str] = []
    width = 0
    if phone:
        page.set_viewport_size(PHONE)
        page.evaluate("window.scrollTo(0, 0)")
        harness.screenshot(page, f"console-{name}-phone.png")
        width = page.evaluate("document.documentElement.scrollWidth")
        wide = page.evaluate(WIDER_THAN_THE_SCREEN)
    if harness.screenshots_wanted():
        page.set_viewport_size(viewport)
        page.evaluate("window.scrollTo(0, 0)")
        suffix = "projector" if viewport == PROJECTOR else "desktop"
        harness.screenshot(page, f"console-{name}-{suffix}.png")
    page.set_viewport_size(size)
    assert width <= PHONE["width"], f"{name}: the page is {width}px wide at 375px: {wide}"


def shoot_dark(page: Any, name: str) -> None:
    """Save a desktop screenshot with the system's dark colour scheme (when they are wanted)."""
    if not harness.screenshots_wanted():
        return
    page.emulate_media(color_scheme="dark")
    harness.screenshot(page, f"console-{name}-dark.png")
    page.emulate_media(color_scheme="light")


def flash(page: Any, text: str) -> None:
    expect(page.locator("#console-flash")).to_contain_text(text)


def status(page: Any, **attributes: Any) -> None:
    selector = "#host-status" + "".join(f'[data-{k}="{v}"]' for k, v in attributes.items())
    page.wait_for_selector(selector)


def click_control(page: Any, name: str) -> None:
    page.locator(f'[data-control="{name}"]').first.click()


def focused_control(page: Any) -> str | None:
    page.wait_for_timeout(50)  # the focus is put back a moment after the swap
    return page.evaluate("document.activeElement && document.activeElement.dataset.control")


def version(page: Any) -> int:
    return int(page.locator("#host-status").get_attribute("data-version"))


HTMX_AT_REST = (
    "() => !document.querySelector('.htmx-request, .htmx-swapping, .htmx-settling, .htmx-added')"
)


def log_in(page: Any, server: Server) -> None:
    page.goto(f"{server.base_url}/console/")
    page.wait_for_url("**/accounts/login/?next=/console/")
    shoot(page, "login")
    page.get_by_label("Username").fill(USERNAME)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/console/")
    expect(page.locator("h1")).to_have_text("My games")


def create_game(page: Any, server: Server) -> str:
    """Fill the create form (a bad β first, then a good one); return the new game's code."""
    page.goto(f"{server.base_url}/console/new/")
    page.get_by_label("Title").fill("Thursday seminar")
    # Choosing a preset refills the form from it (htmx) and keeps the title.
    for preset in ("random_audit", "targeted_audit"):
        page.get_by_label("Start from").select_option(preset)
        expect(page.locator('[data-field="preset"] .help strong')).to_have_text(preset)
        page.wait_for_function(HTMX_AT_REST)
    assert page.get_by_label("Title").input_value() == "Thursday seminar"
    page.get_by_label("Rounds").fill("2")
    page.get_by_label("Labs (N)").fill("4")
    page.get_by_label("Token cap (Q)").fill("2")
    page.get_by_label("Seed").fill("2024")
    page.get_by_label("Signal strength (β)").fill("1.5")
    for phase, seconds in (("Bidding", "90"), ("Compliance", "90"), ("Audit", "90")):
        page.get_by_label(phase, exact=True).fill(seconds)
    page.get_by_label("Results", exact=True).fill("")  # the instructor moves on
    page.get_by_role("button", name="Create the game").click()
    page.wait_for_selector('[data-field="beta"] .error')
    error = page.locator('[data-field="beta"] .error').inner_text()
    assert "Signal strength (β)" in error and "[0, 1]" in error, error
    assert page.get_by_label("Signal strength (β)").get_attribute("aria-invalid") == "true"
    assert page.get_by_label("Title").input_value() == "Thursday seminar"
    shoot(page, "new-game-error")
    page.get_by_label("Signal strength (β)").fill("0.9")
    page.get_by_role("button", name="Create the game").click()
    page.wait_for_url(re.compile(r".*/console/games/[A-Z0-9]+/$"))
    return str(page.locator(".console").get_attribute("data-code"))


def qr_join_url(projector: Any) -> str:
    """Return the address the projector's QR code encodes (checked against segno's matrix)."""
    shown = projector.locator(".join-url").inner_text().strip()
    drawn = projector.locator(".join-qr svg path.qrline").get_attribute("d")
    expected = segno.make(shown, error="m").svg_inline(scale=1, border=2, omitsize=True)
    match = re.search(r'class="qrline"[^>]*\sd="([^"]+)"', expected)
    assert match and drawn == match.group(1), "the QR code does not encode the join address"
    return shown


def join(browser: Any, url: str, nickname: str) -> Any:
    page = new_page(browser, PHONE)
    page.goto(url)
    page.get_by_label("Nickname").fill(nickname)
    page.get_by_role("button", name="Join", exact=True).click()
    page.wait_for_url("**/play/*/")
    page.wait_for_selector("#connection.is-online")
    return page


def advance_until(page: Any, done: str, *, limit: int = 12) -> None:
    """Press "Advance now" until ``done`` (a selector) is on the page."""
    for _ in range(limit):
        if page.locator(done).count():
            return
        before = version(page)
        click_control(page, "advance")
        page.wait_for_function(
            "v => Number(document.querySelector('#host-status').dataset.version) > v", arg=before
        )
    page.wait_for_selector(done)


def test_instructor_runs_a_class_from_the_create_form_to_the_debrief(server, chromium_browser):
    console = new_page(chromium_browser, DESKTOP)
    windows: list[Any] = []  # the projector and the students' phones
    try:
        log_in(console, server)
        projector = harness.second_window(console, PROJECTOR)  # the same login
        windows.append(projector)
        projector.set_default_timeout(WAIT_MS)
        code = create_game(console, server)
        console.wait_for_selector('.socket-state[data-socket-state="open"]')
        status(console, status="lobby")
        expect(console.locator(".join-line")).to_contain_text(f"/join/{code}/")

        # The projector: a big code, the address and a QR code of it.
        projector.goto(f"{server.base_url}/console/games/{code}/projector/")
        projector.wait_for_selector('.socket-state[data-socket-state="open"]')
        expect(projector.locator(".join-code")).to_have_text(code)
        url = qr_join_url(projector)
        assert url == f"{server.base_url}/join/{code}/"
        shoot(projector, "projector-empty", phone=False, viewport=PROJECTOR)

        # Two students join by the QR code's address; both screens list them live.
        ana = join(chromium_browser, url, "Ana")
        windows.append(ana)
        ben = join(chromium_browser, url, "Ben")
        windows.append(ben)
        for page in (console, projector):
            expect(page.locator("#host-players .count")).to_have_text("2")
            expect(page.locator("#host-players")).to_contain_text("Ana")
            expect(page.locator("#host-players")).to_contain_text("Ben")
        expect(console.locator('#host-seats tr[data-presence="connected"]')).to_have_count(2)
        shoot(console, "lobby")
        shoot(projector, "projector-lobby", phone=False, viewport=PROJECTOR)

        # Seats in the lobby, by keyboard: a bot lab is added, then removed.
        console.locator("body").focus()
        for _ in range(40):
            console.keyboard.press("Tab")
            if console.evaluate("document.activeElement.dataset.control") == "add-bot":
                break
        else:
            pytest.fail("Tab never reached the add-bot button")
        console.keyboard.press("Enter")
        flash(console, "Added Lab 5, played by a bot.")
        expect(console.locator("#host-seats tbody tr")).to_have_count(6)
        # The seats were replaced, and the focus came back to the same button.
        assert focused_control(console) == "add-bot"
        console.keyboard.press("Tab")
        assert focused_control(console) == "remove-bot"
        console.keyboard.press("Enter")
        flash(console, "Removed a lab seat.")
        expect(console.locator("#host-seats tbody tr")).to_have_count(5)
        assert focused_control(console) == "remove-bot"

        # Ben governs, then a bot again (Ben goes back to a lab).
        console.get_by_label("Governor", exact=True).select_option(label="Ben (Lab 2)")
        click_control(console, "governor")
        flash(console, "Ben is the governor.")
        expect(projector.locator("#host-players .seat-summary")).to_contain_text("governor: Ben")
        console.get_by_role("button", name="Let a bot govern; Ben plays a lab").click()
        flash(console, "A bot governs this game.")

        # Start: round 1's bidding, on every screen.
        click_control(console, "start")
        flash(console, "The game has started.")
        status(console, status="running", round="1", phase="bidding")
        status(projector, status="running", round="1", phase="bidding")
        for page in (ana, ben):
            page.wait_for_selector('#phase[data-status="running"][data-phase="bidding"]')
        expect(console.locator("#host-status .host-waiting")).to_contain_text("Lab 1 (Ana)")

        # Pause and resume: the clock stops and the students see it.
        console.locator('[data-control="pause"]').focus()
        console.keyboard.press("Enter")
        flash(console, "Paused: the clock has stopped.")
        status(console, status="paused")
        assert focused_control(console) == "resume"  # Pause became Resume
        expect(console.locator(".host-countdown-paused")).to_contain_text(" left")
        ana.wait_for_selector('#phase[data-status="paused"]')
        # The console and the phones show the same time left while paused ("0:24").
        paused = console.locator(".host-countdown-paused").inner_text().split()[0]
        phone = ana.locator("#phase .countdown.is-paused .countdown-value").inner_text()
        assert paused == phone.strip(), (paused, phone)
        expect(ana.get_by_role("button", name="Place bid")).to_be_disabled()
        assert server.game(code)["phase_deadline"] is None
        click_control(console, "resume")
        flash(console, "Resumed.")
        status(console, status="running", phase="bidding")

        # Extend: the deadline moves by 30 s and the countdown shows it.
        before = server.deadline(code)
        click_control(console, "extend")
        flash(console, "The timer has 30 s more.")
        assert server.deadline(code) - before == dt.timedelta(seconds=30)
        left = float(console.locator(".host-countdown").get_attribute("data-seconds-left"))
        assert 90 < left <= 120, left
        expect(console.locator(".host-countdown")).to_have_text(re.compile(r"^1:\d\d$"))

        # Ana bids; the console sees who has acted and who is still owed.
        ana.get_by_role("textbox", name="Your sealed bid").fill("0.4")
        ana.get_by_role("button", name="Place bid").click()
        ana.wait_for_selector("#lab-action :text('is in')")
        expect(console.locator("#host-status .host-waiting")).not_to_contain_text("Ana")
        expect(console.locator("#host-status .host-waiting")).to_contain_text("Lab 2 (Ben)")
        seats = console.locator("#host-seats tbody tr")
        expect(seats.filter(has_text="Ana")).to_contain_text("acted")
        expect(seats.filter(has_text="Ben")).to_contain_text("waiting")
        shoot(console, "live-bidding")

        # Advance: Ben's bid defaults; the game moves on, and on to round 2.
        click_control(console, "advance")
        flash(console, "Moved on to the next phase.")
        console.wait_for_selector('#host-status:not([data-phase="bidding"])')
        advance_until(console, '#host-status[data-round="2"][data-phase="bidding"]')
        figures = console.locator("#host-charts figure")
        expect(figures).to_have_count(4)
        expect(projector.locator("#host-charts figure")).to_have_count(4)
        shoot(console, "live-round-2")
        shoot_dark(console, "live-round-2")
        shoot(projector, "projector-live", phone=False, viewport=PROJECTOR)

        # To the end, then the debrief.
        advance_until(console, '#host-status[data-status="finished"]')
        expect(console.locator("#host-standings li")).to_have_count(4)
        console.locator('[data-control="debrief"]').click()
        console.wait_for_url(f"**/console/games/{code}/debrief/")
        console.wait_for_selector('#debrief-heatmap[data-status="done"]', timeout=90_000)
        console.wait_for_selector('#debrief-classes[data-status="done"]', timeout=90_000)
        for name in ("price", "permits", "violations", "compliance", "heatmap", "classes"):
            expect(console.locator(f"#figure-{name} svg")).to_be_visible()
        point = console.locator("#figure-heatmap .game-point")
        expect(point).to_have_count(1)
        game = server.game(code)
        scenario = json.loads(game["scenario"])
        audit = scenario["audit"]
        punishment = audit["collateral"] + audit["fine"] + audit.get("reputation_penalty", 0.0)
        assert float(point.get_attribute("data-p")) == pytest.approx(punishment, abs=1e-3)
        expect(console.locator("#figure-heatmap")).to_contain_text("behaviour flip (simulated)")
        expect(console.locator('[data-number="observed"] .value')).to_have_text(re.compile("%"))
        expect(console.locator('[data-number="predicted"] .value')).to_have_text(re.compile("%"))
        expect(console.locator("table.compare tbody tr")).to_have_count(5)
        expect(console.locator("table.leaderboard tbody tr")).to_have_count(4)
        expect(console.locator("table.leaderboard")).to_contain_text("Ana")

        # Downloads work offline: the heatmap as PNG (drawn in the page) and a chart's CSV.
        with console.expect_download() as caught:
            console.locator("#figure-heatmap [data-png]").click()
        download = caught.value
        assert download.suggested_filename == f"{code}-heatmap.png"
        image = Image.open(io.BytesIO(Path(download.path()).read_bytes()))
        svg = console.locator("#figure-heatmap svg")
        size = (int(svg.get_attribute("width")) * 2, int(svg.get_attribute("height")) * 2)
        assert image.format == "PNG" and image.size == size, image.size
        assert len(image.convert("RGB").getcolors(maxcolors=1 << 20) or []) > 50
        with console.expect_download() as caught:
            console.locator("#figure-price a", has_text="CSV").click()
        lines = Path(caught.value.path()).read_text().splitlines()
        assert lines[0].startswith("round,clearing price") and len(lines) == 3

        shoot(console, "debrief")
        shoot_dark(console, "debrief")
        console.goto(f"{server.base_url}/console/")
        expect(console.locator(f'tr[data-code="{code}"]')).to_contain_text("Finished")
        shoot(console, "home")
        console.go_back()
        console.wait_for_selector('#debrief-heatmap[data-status="done"]')
        console.get_by_role("button", name="Present").click()
        expect(console.locator("body")).to_have_class(re.compile("presenting"))
        shoot(console, "debrief-present", phone=False, viewport=PROJECTOR)
    finally:
        for page in (console, *windows):
            page.context.close()


MAKE_GAME_AND_RIVAL = f"""
from django.contrib.auth import get_user_model
from permitgame import services
from sim_core import load_preset
users = get_user_model().objects
users.create_user("noor", password={PASSWORD!r})
owner = users.get(username={USERNAME!r})
game = services.game_create(scenario=load_preset("targeted_audit"), human_labs=2, owner=owner)
print(game.code)
"""


def test_console_pages_are_refused_to_another_instructor_in_the_browser(server, chromium_browser):
    result = server.manage("shell", "-c", MAKE_GAME_AND_RIVAL)
    assert result.returncode == 0, result.stderr
    code = result.stdout.split()[-1]
    page = new_page(chromium_browser, DESKTOP)
    try:
        page.goto(f"{server.base_url}/accounts/login/")
        page.get_by_label("Username").fill("noor")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url("**/console/")
        expect(page.locator("main")).not_to_contain_text(code)
        for path in ("", "projector/", "debrief/"):
            response = page.goto(f"{server.base_url}/console/games/{code}/{path}")
            assert response.status == 403
            expect(page.locator("[role=alert]")).to_contain_text("belongs to another instructor")
        shoot(page, "refused")
    finally:
        page.context.close()
