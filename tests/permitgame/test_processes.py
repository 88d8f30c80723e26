"""Real server processes: SIGKILL and restart, two Daphnes sharing Redis.

Each test starts real Daphne processes (the harness's building blocks) on a migrated SQLite
file, so the server's own clock loop fires the deadlines. A test moves a deadline into the past
by writing it to the database, as if the time had passed: nothing sleeps until a deadline.
"""

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
import websockets
from websockets.typing import Origin

from permitgame.client import JoinInfo, Player, join
from tests import harness

SCENARIO = {
    "name": "two_rounds",
    "rounds": 2,
    "labs": {"count": 4},
    "market": {"type": "clearing", "token_cap": 2},
    "governor": {"policy": "policy"},
}
PAST = "2000-01-01 00:00:00"


@contextlib.contextmanager
def daphne(env, log_dir: Path, port: int | None = None):
    """Run Daphne on loopback; yield (process, base_url). The caller may SIGKILL the process."""
    port = port or harness.free_port()
    url = f"http://127.0.0.1:{port}"
    log = log_dir / f"daphne-{port}-{time.monotonic_ns()}.log"
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            harness.daphne_command(port),
            cwd=harness.REPO_ROOT, env=harness.app_env(env), stdout=log_file,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
    try:
        harness.wait_until(
            lambda: _answers(f"{url}/api/games/NONE00"), what="daphne", process=process, log=log
        )
        yield process, url
    finally:
        harness.stop_process(process)


def _answers(url: str) -> bool:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except urllib.error.HTTPError:
        return True


def create_game(env, tmp_path, *args):
    """Create the two-round game; no results screen to wait out (these tests are not of it)."""
    scenario = tmp_path / "two_rounds.json"
    scenario.write_text(json.dumps(SCENARIO))
    result = harness.manage(
        "creategame", "--scenario", str(scenario), "--seed", "5", "--json", *args,
        "--results-seconds", "0", env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["code"]


def sql(db_path: Path, query: str, *params):
    with contextlib.closing(sqlite3.connect(db_path, timeout=30)) as connection:
        rows = connection.execute(query, params).fetchall()
        connection.commit()
    return rows


def expire_deadline(db_path: Path, code: str) -> None:
    """Move the game's deadline into the past, as if its time had run out."""
    sql(db_path, "UPDATE permitgame_game SET phase_deadline = ? WHERE code = ?", PAST, code)


async def open_socket(info: JoinInfo):
    origin = Origin(info.ws_url.replace("ws://", "http://").split("/ws/")[0])
    return await websockets.connect(info.ws_url, origin=origin, open_timeout=20)


async def receive_until(socket, predicate, timeout=20.0):
    """Return every message up to and including the first that satisfies ``predicate``."""
    got = []
    async with asyncio.timeout(timeout):
        while True:
            message = json.loads(await socket.recv())
            got.append(message)
            if predicate(message):
                return got


@pytest.mark.slow
def test_sigkill_mid_phase_loses_no_move_and_the_deadline_fires_after_restart(tmp_path):
    env = {"DATABASE_URL": harness.migrated_sqlite(tmp_path)}
    db_path = tmp_path / "db.sqlite3"
    code = create_game(env, tmp_path, "--labs", "4", "--human-labs", "2", "--phase-seconds", "600")
    port = harness.free_port()

    async def before_the_crash(url):
        ana, ben = join(url, code, "Ana"), join(url, code, "Ben")  # the game starts
        socket = await open_socket(ana)
        state = json.loads(await socket.recv())
        assert (state["game"]["status"], state["game"]["phase"]) == ("running", "bidding")
        await socket.send(json.dumps({"type": "bid", "round": 1, "amount": 0.3}))
        ack = await receive_until(socket, lambda m: m["type"] in ("ack", "error"))
        assert ack[-1]["type"] == "ack"
        return ana, ben

    with daphne(env, tmp_path, port) as (process, url):
        ana, _ = asyncio.run(before_the_crash(url))
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)

    bids = sql(db_path, "SELECT actor, payload FROM permitgame_move WHERE action = 'bid'")
    # The protocol's client declares itself, so its moves are a program's.
    logged = [(actor, json.loads(payload)) for actor, payload in bids]
    assert logged == [("program", {"amount": 0.3})]
    expire_deadline(db_path, code)  # the server was down while the bidding time ran out

    def deadline_fired() -> bool:
        return sql(db_path, "SELECT round_no, phase FROM permitgame_game")[0] != (1, "bidding")

    async def after_the_restart():
        socket = await open_socket(ana)
        state = json.loads(await socket.recv())
        assert state["type"] == "state" and state["history"][0]["bid"] == 0.3
        await socket.close()
        return await Player(ana, strategy="rational", seed=1).play()

    with daphne(env, tmp_path, port):
        # The restarted server's clock fires the deadline with no socket connected.
        harness.wait_until(deadline_fired, what="the deadline after the restart", timeout=20)
        over = asyncio.run(after_the_restart())
    assert over["type"] == "game_over" and len(over["standings"]) == 4
    [(actor,)] = sql(
        db_path,
        "SELECT m.actor FROM permitgame_move m JOIN permitgame_seat s ON m.seat_id = s.id "
        "WHERE m.action = 'bid' AND m.round_no = 1 AND s.nickname = 'Ben'",
    )
    assert actor == "bot"
    assert sql(db_path, "SELECT status FROM permitgame_game WHERE code = ?", code) == [
        ("finished",)
    ]


@pytest.mark.slow
@pytest.mark.redis
def test_two_processes_share_events_through_redis_and_fire_a_deadline_once(tmp_path, redis_url):
    env = {"DATABASE_URL": harness.migrated_sqlite(tmp_path), "REDIS_URL": redis_url}
    db_path = tmp_path / "db.sqlite3"
    code = create_game(env, tmp_path, "--labs", "4", "--human-labs", "2", "--phase-seconds", "600")

    async def play(url_one, url_two):
        ana, ben = join(url_one, code, "Ana"), join(url_two, code, "Ben")
        on_one, on_two = await open_socket(ana), await open_socket(ben)
        await on_one.recv()
        await on_two.recv()
        # Ben bids through process two; Ana, on process one, hears that he has acted.
        await on_two.send(json.dumps({"type": "bid", "round": 1, "amount": 0.2}))
        heard = await receive_until(
            on_one,
            lambda m: m["type"] == "progress" and m.get("waiting_for") == [ana.player_id],
        )
        assert heard[-1]["phase"] == "bidding"
        # Both processes' clocks see the deadline pass; one of them fires it.
        expire_deadline(db_path, code)
        moved = await receive_until(
            on_two, lambda m: m["type"] == "phase" and m["round"] == 1 and m["phase"] != "bidding"
        )
        assert moved[-1]["phase"] in ("compliance", "audit", "results")
        await asyncio.sleep(1.5)  # let the other process's clock beat a few more times
        await on_one.close()
        await on_two.close()

    with daphne(env, tmp_path) as (_, url_one), daphne(env, tmp_path) as (_, url_two):
        asyncio.run(play(url_one, url_two))
    phase_rows = sql(
        db_path,
        "SELECT count(*) FROM permitgame_move WHERE action = 'phase' AND round_no = 1 "
        "AND phase = 'compliance'",
    )
    assert phase_rows == [(1,)]
    defaults = sql(db_path, "SELECT count(*) FROM permitgame_move WHERE actor = 'default'")
    assert defaults == [(1,)]  # Ana was connected: one default bid, given once
