"""Fixtures of the game server's tests: a file-backed test database, frozen time, games."""

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest

from permitgame import clock
from sim_core import Scenario, load_preset
from tests.permitgame.console_fixtures import make_instructor


@pytest.fixture(scope="session")
def django_db_modify_db_settings(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Give SQLite test runs a file instead of shared-cache memory; or, with ``--postgres``,
    put the test database on the session's real PostgreSQL server.

    The services' transactions begin IMMEDIATE (see settings); a shared-cache in-memory database
    answers a second writer with "table is locked" at once instead of letting it wait, so the
    tests where threads or sockets race would test SQLite's cache mode rather than our locking.
    """
    from django.conf import settings

    database = settings.DATABASES["default"]
    if request.config.getoption("--postgres"):
        _use_postgres(database, request.getfixturevalue("postgres_url"))
    if database["ENGINE"] == settings.SQLITE_ENGINE:
        database.setdefault("TEST", {})["NAME"] = str(
            tmp_path_factory.mktemp("db") / "test.sqlite3"
        )


@pytest.fixture(scope="session", autouse=True)
def _postgres_sessions_closed(request: pytest.FixtureRequest) -> Iterator[None]:
    """With ``--postgres``: end the test database's other sessions before it is dropped.

    The server's threads in this process (the threads that record moves, the one that
    authenticates sockets) keep the connection of their last call while they live, which a
    server process's end closes; a test session ends before its threads do, and PostgreSQL
    refuses to drop a database with a session open ("being accessed by other users"). Ended
    here, after the last test and before pytest-django drops the database.
    """
    if not request.config.getoption("--postgres"):
        yield
        return
    request.getfixturevalue("django_db_setup")  # so this ends before the database is dropped
    yield
    from django.db import connection

    with request.getfixturevalue("django_db_blocker").unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


def _use_postgres(database: dict[str, Any], url: str) -> None:
    """Point the default database's settings (in place) at ``url``, as settings.py would."""
    import dj_database_url
    from django.db import connections

    database.update(dj_database_url.parse(url, conn_max_age=0, conn_health_checks=True))
    # SQLite's transaction mode and pragmas do not apply. No pool here: the tests' own threads
    # would keep pooled connections that PostgreSQL then refuses to drop the test database
    # under; the servers' pool is tested with a real Daphne (test_servers.py).
    database["OPTIONS"] = {}
    # No connection was opened yet; drop the handler's SQLite wrapper if one was made.
    with contextlib.suppress(AttributeError):
        del connections["default"]


@pytest.fixture
def frozen_clock() -> Iterator[clock.FrozenClock]:
    """Freeze the server's time; tests move it with ``frozen_clock.advance(seconds)``."""
    with clock.frozen() as frozen:
        yield frozen


@pytest.fixture
def small_scenario() -> Scenario:
    """targeted_audit with 5 labs, a cap of 2 permits and 2 rounds: quick and oversubscribed."""
    scenario = load_preset("targeted_audit")
    labs = scenario.labs
    market = scenario.market
    from dataclasses import replace

    return scenario.with_changes(
        rounds=2,
        labs=replace(labs, count=5),
        market=replace(market, token_cap=2),
    )


@pytest.fixture
def ana(django_user_model: Any) -> Any:
    """An instructor."""
    return make_instructor(django_user_model, "ana")


@pytest.fixture
def ben(django_user_model: Any) -> Any:
    """Another instructor."""
    return make_instructor(django_user_model, "ben")


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Start every test with empty rate-limit counters (they live in the process's cache).

    A hook rather than an autouse fixture: a function-scoped fixture trips Hypothesis's health
    check in the tests that use @given.
    """
    from django.core.cache import cache

    cache.clear()
