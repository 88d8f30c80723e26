"""The home page in a real browser, served by real Daphne, with every asset from our own host."""

from urllib.parse import urlsplit

import pytest

from tests import harness

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_home_page_loads_htmx_from_our_own_host_when_served_by_daphne(
    chromium_browser, live_server_url
):
    context = chromium_browser.new_context(viewport={"width": 390, "height": 844})  # a phone
    page = context.new_page()
    requests: list[str] = []
    failed: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.on("requestfailed", lambda request: failed.append(request.url))
    page.on(
        "response",
        lambda response: (
            failed.append(f"{response.status} {response.url}") if response.status >= 400 else None
        ),
    )
    try:
        response = page.goto(live_server_url + "/", wait_until="load")
        assert response is not None
        assert response.status == 200

        assert page.get_by_role("heading", level=1).inner_text() == "PermitGame"
        assert page.evaluate("typeof window.htmx") == "object"
        assert page.evaluate("window.htmx.version").startswith("2.")
        viewport = page.locator('meta[name="viewport"]').get_attribute("content")
        assert viewport is not None
        assert "width=device-width" in viewport
        harness.screenshot(page, "home-phone.png")
    finally:
        context.close()

    hosts = {urlsplit(url).hostname for url in requests}
    assert hosts == {"127.0.0.1"}, requests
    assert any(url.endswith("/static/vendor/htmx/htmx.min.js") for url in requests)
    assert any(url.endswith("/static/vendor/htmx/ws.min.js") for url in requests)
    assert any(url.endswith("/static/permitgame/app.css") for url in requests)
    assert failed == []
