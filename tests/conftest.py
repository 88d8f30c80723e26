"""Fixtures shared by every test.

The server fixtures are session-scoped: each starts one real server on 127.0.0.1 the first time a
test asks for it and stops it when the session ends. They are thin wrappers over
``tests/harness.py``; use the harness directly for a second instance with other settings.
"""

from collections.abc import Iterator
from typing import Any

import pytest
from django.test import override_settings

from tests import harness


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--postgres",
        action="store_true",
        help="run the database tests on a real PostgreSQL server started for the session "
        "(the postgres_url fixture) instead of SQLite; `make test` runs the service and "
        "whole-game tests this way too",
    )


@pytest.hookimpl(trylast=True)  # after pytest-django's own reordering
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run the tests that use ``chromium_browser`` last, the longest modules of them first.

    Playwright's sync API keeps an asyncio loop marked as running on the main thread for as long
    as it is open, and pytest-asyncio cannot start a test's loop while it is. With the browser
    tests last, the session-scoped browser opens only after every async test has run.

    Tests marked ``postgres`` are skipped unless the run is ``--postgres``.
    """
    items.sort(key=_browser_modules_last_longest_first)
    if hasattr(config, "workerinput"):
        _browser_tests_in_modules_of_their_own(items)
    if not config.getoption("--postgres"):
        # PostgreSQL's own tests run in the PostgreSQL pass (`make test` runs both passes).
        skip = pytest.mark.skip(reason="needs --postgres (make test runs it)")
        for item in items:
            if "postgres" in item.keywords:
                item.add_marker(skip)


#: Seconds a browser module takes on an idle core (measured with ``--durations``). Under
#: ``make test`` the browser modules run last, each whole on one worker: started longest first,
#: the workers finish together instead of one waiting out a long module on its own at the end.
#: A module not listed runs after these.
BROWSER_MODULE_SECONDS = {
    "tests/permitgame/test_play_pages.py": 38,
    "tests/permitgame/test_console_pages.py": 28,
    "tests/permitgame/test_story_pages.py": 17,
    "tests/permitgame/test_browser_security.py": 14,
    "tests/permitgame/test_experiment_live.py": 11,
    "tests/permitgame/test_experiment_monitor.py": 8,
    "tests/permitgame/test_hall_pages.py": 8,
    "tests/permitgame/test_trading_pages.py": 6,
}


def _browser_modules_last_longest_first(item: pytest.Item) -> tuple[bool, int]:
    if "chromium_browser" not in getattr(item, "fixturenames", ()):
        return (False, 0)
    return (True, -BROWSER_MODULE_SECONDS.get(item.nodeid.split("::", 1)[0], 0))


def _browser_tests_in_modules_of_their_own(items: list[pytest.Item]) -> None:
    """Under ``pytest -n N --dist loadfile`` (``make test``) a worker runs whole modules, in
    collection order: with the browser tests last, the browser modules come last. A module that
    mixed browser tests with others would open the browser before the async tests of the modules
    after it, so it is refused here with the rule to follow.
    """
    kinds: dict[str, set[bool]] = {}
    for item in items:
        module = item.nodeid.split("::", 1)[0]
        kinds.setdefault(module, set()).add("chromium_browser" in getattr(item, "fixturenames", ()))
    mixed = sorted(module for module, seen in kinds.items() if len(seen) > 1)
    if mixed:
        raise pytest.UsageError(
            "tests that use chromium_browser go in modules of their own (make test runs whole "
            f"modules on each worker, the browser ones last); these mix them with others: {mixed}"
        )


@pytest.fixture(autouse=True, scope="session")
def _in_memory_channel_layer() -> Iterator[None]:
    """Tests use the in-memory channel layer, whatever REDIS_URL the developer has set.

    Also, in every test of this process, passwords are hashed cheaply (MD5): instructors are made
    in hundreds of tests, and the real hasher costs a tenth of a second each time. Servers the
    tests start as processes keep the real settings.

    Session-scoped (a function-scoped autouse fixture would trip Hypothesis's health check).
    Tests of the Redis layer build it from the ``redis_url`` fixture explicitly.
    """
    with override_settings(
        CHANNEL_LAYERS={"default": {"BACKEND": "permitgame.layers.InMemoryLayer"}},
        PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
    ):
        yield


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """``redis://127.0.0.1:PORT/0`` of a real redis-server started for this session."""
    with harness.redis_server() as url:
        yield url


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """``postgres://permitgame@127.0.0.1:PORT/permitgame`` of a real, empty PostgreSQL cluster."""
    with harness.postgres_server() as url:
        yield url


@pytest.fixture(scope="session")
def app_server() -> Iterator[harness.LiveServer]:
    """Real Daphne serving the app from a migrated SQLite file, shared by the browser tests.

    Tests that use it make their own games (and users) with names of their own, so they do not
    meet; ``app_server.database`` is the file, for reading what the server stored.
    """
    with harness.live_server() as server:
        yield server


@pytest.fixture(scope="session")
def live_server_url(app_server: harness.LiveServer) -> str:
    """``http://127.0.0.1:PORT`` of ``app_server``."""
    return app_server.base_url


@pytest.fixture(scope="session")
def chromium_browser() -> Iterator[Any]:
    """A Playwright ``Browser``: Debian's Chromium, headless, with no background networking.

    Playwright's ``expect`` waits for its condition up to 15 s instead of 5 (the tests' pages
    wait 15 s too): on a machine busy with other suites, an answer over the socket can take
    longer than 5 s to show, and the assertion is the same either way.
    """
    from playwright.sync_api import expect

    expect.set_options(timeout=15_000)
    with harness.chromium() as browser:
        yield browser
