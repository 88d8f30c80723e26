"""Guessing is throttled; a real class is not.

Game codes and rejoin codes are short enough to type, so the server counts what would be
guessing (codes that name nothing) per client address, and wrong rejoin codes per game too; the
answer is 429 with the protocol's error body (or the page's message) and Retry-After. A class of
200 students behind one NAT address joins within a minute untouched.
"""

import json
import time
from dataclasses import replace
from types import SimpleNamespace

import pytest
from django.core.cache import caches
from django.test import Client, override_settings

from permitgame import services, throttle
from permitgame.models import Seat
from permitgame.settings import redis_caches
from sim_core import load_preset


def _post(client, path, body, **extra):
    return client.post(path, json.dumps(body), content_type="application/json", **extra)


def _assert_limited(response):
    assert response.status_code == 429
    body = response.json()
    assert (body["type"], body["code"]) == ("error", "rate_limited")
    assert "try again in" in body["message"]
    assert 1 <= int(response["Retry-After"]) <= 60


def _game(labs=5, **options):
    scenario = load_preset("targeted_audit")
    scenario = scenario.with_changes(
        labs=replace(scenario.labs, count=labs),
        market=replace(scenario.market, token_cap=max(1, labs // 2)),
    )
    options.setdefault("human_labs", labs)
    return services.game_create(scenario=scenario, **options)


@pytest.fixture
def one_window(monkeypatch):
    """The limits' clock held inside one window, a few seconds after it began.

    The windows are fixed (whole minutes of the wall clock), so a test counting up to a limit
    that ran across the turn of a minute was counted in two windows and never limited (it
    failed once so in a fresh clone). The windows' turn is not what these tests are about.
    """
    start = time.time() // 60 * 60 + 5
    monkeypatch.setattr(throttle, "time", SimpleNamespace(time=lambda: start))


@pytest.mark.django_db
@pytest.mark.usefixtures("one_window")
def test_a_game_code_guessing_loop_gets_429_after_the_limit(client):
    game = _game()
    limit = throttle.LIMITS["code_miss"].count
    answers = [
        _post(client, f"/api/games/ZZ{n:04d}/join", {"nickname": "x"}).status_code
        for n in range(limit)
    ]
    assert answers == [404] * limit
    _assert_limited(_post(client, "/api/games/ZZ9999/join", {"nickname": "x"}))
    # The lookups of GET /api/games/<code>, rejoin and the join page count into the same limit.
    _assert_limited(client.get("/api/games/ZZ9998"))
    _assert_limited(_post(client, "/api/games/ZZ9997/rejoin", {"rejoin_code": "AAAAAA"}))
    page = client.post("/join/", {"code": "ZZ9996", "nickname": "x"})
    assert page.status_code == 429 and int(page["Retry-After"]) >= 1
    assert "Too many attempts" in page.content.decode()
    # Even the right code waits: the address is guessing.
    _assert_limited(_post(client, f"/api/games/{game.code}/join", {"nickname": "x"}))
    # Another address is not affected.
    other = _post(client, f"/api/games/{game.code}/join", {"nickname": "y"}, REMOTE_ADDR="10.0.0.9")
    assert other.status_code == 201


@pytest.mark.django_db
@pytest.mark.usefixtures("one_window")
def test_a_rejoin_code_guessing_loop_gets_429_per_address_and_per_game(client):
    game = _game()
    ana = services.seat_join(game=game, nickname="Ana")
    path = f"/api/games/{game.code}/rejoin"
    per_address = throttle.LIMITS["rejoin_miss"].count
    for n in range(per_address - 1):
        assert _post(client, path, {"rejoin_code": f"Q{n:05d}"}).status_code == 403
    # A right code is not counted, and still works before the limit.
    assert _post(client, path, {"rejoin_code": ana.rejoin_code}).json()["token"] == ana.token
    assert _post(client, path, {"rejoin_code": "QQQQQQ"}).status_code == 403
    _assert_limited(_post(client, path, {"rejoin_code": ana.rejoin_code}))
    # Spread over many addresses, the guesses at one game are limited too.
    per_game = throttle.LIMITS["rejoin_miss_game"].count
    address = 1
    for _ in range(per_game - per_address):
        _post(client, path, {"rejoin_code": "QQQQQQ"}, REMOTE_ADDR=f"10.1.0.{address}")
        address += 1
    _assert_limited(_post(client, path, {"rejoin_code": "QQQQQQ"}, REMOTE_ADDR="10.2.0.1"))
    page = Client(REMOTE_ADDR="10.3.0.1").post(
        "/rejoin/", {"code": game.code, "rejoin_code": ana.rejoin_code}
    )
    assert page.status_code == 429 and "wrong rejoin codes" in page.content.decode()
    # Another game's rejoin codes are not blocked by it.
    other = _game()
    bo = services.seat_join(game=other, nickname="Bo")
    again = _post(
        client,
        f"/api/games/{other.code}/rejoin",
        {"rejoin_code": bo.rejoin_code},
        REMOTE_ADDR="10.4.0.1",
    )
    assert again.status_code == 200


@pytest.mark.django_db
def test_two_hundred_students_behind_one_address_join_one_game_in_a_minute():
    game = _game(labs=200, human_labs=200)
    nat = Client(REMOTE_ADDR="203.0.113.7")
    statuses = []
    for n in range(200):
        if n % 10 == 0:  # every tenth student mistypes the code first
            assert nat.post("/join/", {"code": "NOPE00", "nickname": f"s{n}"}).status_code == 400
        statuses.append(
            _post(nat, f"/api/games/{game.code}/join", {"nickname": f"student {n}"}).status_code
        )
    assert statuses == [201] * 200
    assert Seat.objects.filter(game=game, token__isnull=False).count() == 200


@pytest.mark.django_db
def test_the_join_page_form_seats_a_class_through_one_address_too():
    game = _game(labs=60, human_labs=60)
    for n in range(60):
        browser = Client(REMOTE_ADDR="203.0.113.8")
        assert browser.get(f"/join/{game.code}/").status_code == 200
        answer = browser.post("/join/", {"code": game.code, "nickname": f"s{n}"})
        assert answer.status_code == 302, answer.content.decode()[:500]


@pytest.mark.django_db
def test_instructor_login_locks_a_username_out_after_wrong_passwords(client, ana):
    from tests.permitgame.console_fixtures import PASSWORD

    for _ in range(4):
        wrong = client.post("/accounts/login/", {"username": "ana", "password": "nope"})
        assert wrong.status_code == 200 and "do not match" in wrong.content.decode()
    locked = client.post("/accounts/login/", {"username": "ana", "password": "nope"})
    assert locked.status_code == 429 and int(locked["Retry-After"]) == 15 * 60
    assert "Too many wrong passwords" in locked.content.decode()
    # Now even the right password waits, at this address.
    right = client.post("/accounts/login/", {"username": "ana", "password": PASSWORD})
    assert right.status_code == 429
    # The instructor at another address is not locked out by whoever guessed.
    elsewhere = Client(REMOTE_ADDR="10.9.9.9")
    answer = elsewhere.post("/accounts/login/", {"username": "ana", "password": PASSWORD})
    assert answer.status_code == 302
    # The admin's login is locked by the same rule.
    admin = client.post("/admin/login/", {"username": "ana", "password": PASSWORD})
    assert admin.status_code == 429


@pytest.mark.django_db
@pytest.mark.usefixtures("one_window")
def test_login_attempts_per_address_are_capped_across_usernames(client):
    limit = throttle.LIMITS["login"].count
    for n in range(limit):
        answer = client.post("/accounts/login/", {"username": f"u{n}", "password": "x"})
        assert answer.status_code == 200
    capped = client.post("/accounts/login/", {"username": "another", "password": "x"})
    assert capped.status_code == 429 and int(capped["Retry-After"]) >= 1
    assert "Too many attempts" in capped.content.decode()


@pytest.mark.redis
@pytest.mark.django_db
def test_counters_are_shared_through_redis_between_processes(redis_url):
    from django.core.cache.backends.redis import RedisCache

    options = {"KEY_PREFIX": "permitgame-test"}
    redis_cache = redis_caches(redis_url, options["KEY_PREFIX"])  # a deployment's own
    with override_settings(CACHES=redis_cache, RATE_LIMITS={"code_miss": (3, 3600)}):
        caches["default"].clear()
        try:
            for _ in range(3):
                assert Client().get("/api/games/NOPE01").status_code == 404
            _assert_limited_hour(Client().get("/api/games/NOPE02"))
            # Another process's connection reads the same count from Redis.
            other = RedisCache(redis_url, options)
            limit = throttle.limit_of("code_miss")
            number, _ = throttle._window(limit, time.time())
            assert other.get(throttle._key("code_miss", "127.0.0.1", number)) == 3
        finally:
            caches["default"].clear()


@pytest.mark.redis
@pytest.mark.django_db
def test_requests_on_threads_of_their_own_share_one_pool_of_redis_connections(redis_url):
    import threading

    import redis

    # Each Django request is a context of its own, with a cache object of its own; a
    # deployment's CACHES (settings) give them the process's one pool instead of a connection
    # each.
    shared = redis_caches(redis_url, "permitgame-pool-test")
    server = redis.Redis.from_url(redis_url)
    with override_settings(CACHES=shared, RATE_LIMITS={"code_miss": (50, 3600)}):
        caches["default"].clear()
        try:
            before = server.info("stats")["total_connections_received"]
            statuses: list[int] = []

            def ask(index: int) -> None:
                statuses.append(Client().get(f"/api/games/NOPE{index:02d}").status_code)

            for index in range(12):
                thread = threading.Thread(target=ask, args=(index,))
                thread.start()
                thread.join()
            opened = server.info("stats")["total_connections_received"] - before
            assert statuses == [404] * 12
            assert opened <= 1  # one connection, kept, for twelve requests' counters
            limit = throttle.limit_of("code_miss")
            number, _ = throttle._window(limit, time.time())
            assert caches["default"].get(throttle._key("code_miss", "127.0.0.1", number)) == 12
        finally:
            caches["default"].clear()


def _assert_limited_hour(response):
    assert response.status_code == 429 and response.json()["code"] == "rate_limited"
    assert 1 <= int(response["Retry-After"]) <= 3600
