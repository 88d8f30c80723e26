"""The browser side of security, in a real Chromium against Daphne.

The Content-Security-Policy allows no inline script, handler or style and no eval, so every page
must work without one: on the home, join, play (lab and governor), login, console, create-game,
projector and debrief pages, no CSP violation is reported and none is logged. The
projector, shown to the whole class, shows no instructor controls, no bot strategies, no
response times and no presence labels ("idle", "gone") next to names.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from playwright.sync_api import expect

from tests import harness

pytestmark = [pytest.mark.browser, pytest.mark.slow]

WAIT_MS = 15_000
USERNAME = "csp-staff"
PASSWORD = "a-long-test-password-9"
CREATE_STAFF = f"""
from django.contrib.auth import get_user_model
get_user_model().objects.create_user({USERNAME!r}, password={PASSWORD!r}, is_staff=True)
"""
WATCH = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__violations.push(event.violatedDirective + " " + (event.blockedURI || "inline")
    + " at " + event.sourceFile + ":" + event.lineNumber);
});
"""


@pytest.fixture(scope="module")
def server(app_server: harness.LiveServer) -> dict[str, Any]:
    """The session's Daphne server, with a staff account and a game of this module's own."""
    base_url = app_server.base_url
    made = app_server.manage("shell", "-c", CREATE_STAFF)
    assert made.returncode == 0, made.stderr
    game = app_server.manage(
        "creategame", "--scenario", "targeted_audit", "--labs", "3", "--human-labs", "1",
        "--human-governor", "--phase-seconds", "120", "--json", "--base-url", base_url,
    )  # fmt: skip
    assert game.returncode == 0, game.stderr
    return {"base_url": base_url, "code": json.loads(game.stdout)["code"]}


class Watched:
    """One person's browser windows, whose pages report CSP violations and console errors.

    Each page is a window of its own with the cookies (the login) of the person's windows so
    far: in tabs of one window, the tabs behind would run no animation frames, and each click
    there would wait about a second for them.
    """

    def __init__(self, browser: Any) -> None:
        self.browser = browser
        self.contexts: list[Any] = []
        self.errors: list[str] = []
        self.pages: list[Any] = []

    def page(self) -> Any:
        state = self.contexts[-1].storage_state() if self.contexts else None
        context = self.browser.new_context(
            viewport={"width": 1280, "height": 800}, storage_state=state
        )
        context.add_init_script(WATCH)
        self.contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        page.on(
            "console",
            lambda message: (
                self.errors.append(f"{page.url}: {message.text}")
                if message.type == "error"
                else None
            ),
        )
        page.on("pageerror", lambda error: self.errors.append(f"{page.url}: {error}"))
        self.pages.append(page)
        return page

    def violations(self, page: Any, name: str) -> list[str]:
        page.wait_for_timeout(300)
        return [f"{name}: {v}" for v in page.evaluate("window.__violations")]


def test_no_page_breaks_the_content_security_policy(server, chromium_browser):
    base, code = server["base_url"], server["code"]
    found: list[str] = []
    student, governor, teacher = (Watched(chromium_browser) for _ in range(3))
    try:
        # The response carries the policy, with no inline scripts allowed.
        home = student.page()
        answer = home.goto(f"{base}/")
        policy = answer.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "unsafe-inline" not in policy
        found += student.violations(home, "home")

        ana = student.page()
        ana.goto(f"{base}/join/{code}/")
        found += student.violations(ana, "join")
        ana.get_by_label("Nickname").fill("Ana")
        ana.get_by_role("button", name="Join", exact=True).click()
        ana.wait_for_url("**/play/*/")
        ana.wait_for_selector("#connection.is-online")
        # The seat's own rows are marked by a style rule the static script adds.
        after = ana.evaluate(
            "getComputedStyle(document.querySelector("
            "'[data-player-id=\"' + document.querySelector('.play').dataset.seat + '\"] .who'"
            "), '::after').content"
        )
        assert "(you)" in after
        found += student.violations(ana, "play (lab)")

        gil = governor.page()
        gil.goto(f"{base}/join/{code}/")
        gil.get_by_label("Nickname").fill("Gil")
        gil.get_by_role("button", name="Join", exact=True).click()
        gil.wait_for_url("**/play/*/")
        gil.wait_for_selector("#connection.is-online")
        found += governor.violations(gil, "play (governor)")

        console = teacher.page()
        console.goto(f"{base}/accounts/login/")
        found += teacher.violations(console, "login")
        console.get_by_label("Username").fill(USERNAME)
        console.get_by_label("Password").fill(PASSWORD)
        console.get_by_role("button", name="Log in").click()
        console.wait_for_url("**/console/")
        console.goto(f"{base}/console/new/")
        console.get_by_label("Start from").select_option("random_audit")  # an htmx swap
        expect(console.locator('[data-field="preset"] .help strong')).to_have_text(
            "random_audit", timeout=WAIT_MS
        )
        console.wait_for_function("() => !document.querySelector('.htmx-request')")
        found += teacher.violations(console, "new game")

        console.goto(f"{base}/console/games/{code}/")
        console.wait_for_selector('.socket-state[data-socket-state="open"]')
        projector = teacher.page()
        projector.goto(f"{base}/console/games/{code}/projector/")
        projector.wait_for_selector('.socket-state[data-socket-state="open"]')
        # creategame's games start once every human seat is taken: Ana and Gil have joined.
        for page in (console, projector):
            page.wait_for_selector('#host-status[data-status="running"]')
        ana.wait_for_selector('#phase[data-phase="bidding"]')
        ana.get_by_role("textbox", name="Your sealed bid").fill("0.2")
        ana.get_by_role("button", name="Place bid").click()
        expect(console.locator("#host-seats")).to_contain_text("bot (")  # bot strategies
        found += teacher.violations(console, "console")

        # The projector, after the pushed updates: nothing only the instructor may see.
        projector.wait_for_function(
            "() => document.querySelector('#host-status .host-waiting') !== null"
        )
        shown = projector.locator("body").inner_text()
        assert "Ana" in shown
        for private in (r"bot \(", r"\d+ ms", r"idle", r"gone", r"timed out", r"standing in"):
            assert not re.search(private, shown), (private, shown)
        for control in ("Pause", "End the game", "Advance now", "+30 s", "Hand to bot"):
            assert control not in shown, control
        assert projector.locator("[data-control]:visible").count() == 0
        assert projector.locator("#host-seats:visible").count() == 0
        harness.screenshot(projector, "projector-running-desktop.png", full_page=False)
        found += teacher.violations(projector, "projector")

        console.on("dialog", lambda dialog: dialog.accept())
        console.locator('[data-control="end"]').click()
        console.wait_for_selector('#host-status[data-status="finished"]')
        debrief = teacher.page()
        debrief.goto(f"{base}/console/games/{code}/debrief/")
        debrief.wait_for_selector("h1")
        # Its parts (when a round was played) load by htmx, polling until they are drawn.
        debrief.wait_for_function(
            "() => !document.querySelector('.debrief-part[data-status=running], .htmx-request')",
            timeout=90_000,
        )
        found += teacher.violations(debrief, "debrief")
        for page in (ana, gil):
            page.wait_for_selector('#phase[data-status="finished"]')
        found += student.violations(ana, "play (lab) at game over")
        found += governor.violations(gil, "play (governor) at game over")
    finally:
        errors = student.errors + governor.errors + teacher.errors
        for watched in (student, governor, teacher):
            for context in watched.contexts:
                context.close()
    assert found == []
    # The browser's own report of a blocked script, style or eval, in the console.
    assert [e for e in errors if "Content Security Policy" in e or "Refused to" in e] == []
