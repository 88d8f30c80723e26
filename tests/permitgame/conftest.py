"""Fixtures of the game server's tests: a file-backed test database, frozen time, games."""

from collections.abc import Iterator
from typing import Any

import pytest

from permitgame import clock
from sim_core import Scenario, load_preset
from tests.permitgame.console_fixtures import make_instructor


@pytest.fixture(scope="session")
def django_db_modify_db_settings(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Give SQLite test runs a file instead of shared-cache memory.

    The services' transactions begin IMMEDIATE (see settings); a shared-cache in-memory database
    answers a second writer with "table is locked" at once instead of letting it wait, so the
    tests where threads or sockets race would test SQLite's cache mode rather than our locking.
    """
    from django.conf import settings

    database = settings.DATABASES["default"]
    if database["ENGINE"] == "django.db.backends.sqlite3":
        database.setdefault("TEST", {})["NAME"] = str(
            tmp_path_factory.mktemp("db") / "test.sqlite3"
        )


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


@pytest.fixture(autouse=True)
def _fresh_rate_limits() -> Iterator[None]:
    """Start every test with empty rate-limit counters (they live in the process's cache)."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()
