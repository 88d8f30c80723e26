"""The load benchmark's harness (bench/load) works: a mechanism test, not a timing test.

A tiny configuration (6 labs and a governor, one room, one round, one Daphne) runs end to end on
real servers the harness starts, and its report has every column and loses nothing. The loss
count itself is checked on a client that misses a phase.
"""

import json
import random
import re
import subprocess

import pytest

from bench.load import trace
from bench.load.__main__ import COLUMNS, table
from bench.load.clients import GameRun, Player
from tests.harness import REPO_ROOT, python_module


def run_output(module: str, *args: str, timeout: float = 300) -> str:
    """Run ``python -m module args`` from the checkout; return what it printed."""
    result = python_module(module, *args, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def run_module(module: str, *args: str) -> dict:
    """Run ``python -m module args`` from the checkout; return the JSON it printed."""
    return json.loads(run_output(module, *args))


def _player(role: str = "lab") -> Player:
    return Player(
        "ABCDEF", "ana", role, "http://127.0.0.1:1", "http://127.0.0.1:1", random.Random(1)
    )


def test_a_missed_phase_counts_as_lost_and_a_seq_gap_asks_for_the_snapshot() -> None:
    player = _player()
    player.player_id = 1
    other = _player()
    other.player_id = 2
    run = GameRun("ABCDEF", [player, other], rounds=1)
    for each in (player, other):
        each.connected_at = 0.0
        each.take({"type": "state", "seq": 0, "game": {"status": "lobby"}}, 0.0)
    events = [
        {"type": "phase", "round": 1, "phase": "bidding", "seq": 1},
        {"type": "market", "round": 1, "winners": [2], "seq": 2},
        {"type": "phase", "round": 1, "phase": "compliance", "seq": 3},
        {"type": "phase", "round": 1, "phase": "audit", "seq": 4},
        {"type": "round_results", "round": 1, "seq": 5},
        {"type": "your_results", "round": 1, "seq": 6},
        {"type": "phase", "round": 1, "phase": "results", "seq": 7},
        {"type": "game_over", "seq": 8},
    ]
    for event in events:
        other.take(dict(event), 0.0)
    commands = []
    for event in events:
        if event.get("phase") != "audit":  # this one never reaches the first player
            commands += player.take(dict(event), 0.0)
    assert run.lost() == 1  # the other player, who got everything, only the first one lost
    assert player.gaps == 1 and other.gaps == 0
    assert {"type": "sync"} in commands
    # the lab without a permit owed a run choice, the winner did not
    assert [c["type"] for c in commands if c["type"] != "sync"] == ["bid", "decide"]
    # the state answering the sync counts as a resync
    player.take({"type": "state", "seq": 8, "game": {"status": "finished"}}, 0.0)
    assert player.resyncs == 1
    # a progress is not an event: the seq of the last event is no gap, one above it is
    other.take({"type": "progress", "seq": 8}, 0.0)
    other.take({"type": "progress", "seq": 7}, 0.0)
    assert other.gaps == 0
    other.take({"type": "progress", "seq": 9}, 0.0)
    assert other.gaps == 1


@pytest.mark.slow
def test_a_labs_choice_reads_a_class_phase_list_but_not_a_halls() -> None:
    # A hall's phase names only the governor among those it waits for (waiting counts them
    # all): its empty list does not mean a lab owes nothing. A class's phase names everyone.
    hall_lab, class_lab = _player(), _player()
    hall_lab.player_id = class_lab.player_id = 7
    for each in (hall_lab, class_lab):
        each.take({"type": "state", "seq": 0, "game": {"status": "lobby"}}, 0.0)
        each.take({"type": "market", "round": 1, "winners": [2], "seq": 1}, 0.0)
    phase = {"type": "phase", "round": 1, "phase": "compliance", "seq": 2}
    commands = hall_lab.take({**phase, "waiting": 50, "waiting_for": []}, 0.0)
    assert [c["type"] for c in commands] == ["decide"]
    assert class_lab.take({**phase, "waiting": 1, "waiting_for": [3]}, 0.0) == []


def test_a_tiny_run_reports_every_column_loses_nothing_and_traces_each_phase_change() -> None:
    tiny = "--scenarios 6 --setups one --rounds 2 --repeats 1 --fires 3 --timeout 240 --trace"
    report = run_module("bench.load", *tiny.split(), "--json", "--no-write")
    (row,) = report["rows"]
    assert row["complete"] == "1/1"
    assert row["lost_max"] == 0 and row["gaps"] == 0
    assert row["failed_handshakes"] == 0 and row["failed_joins"] == 0
    assert row["moves"] >= 2 * (6 + 1)  # every lab bid, the governor audited, each round
    # Each player moved once a phase: no move sent twice (an event's messages in one frame
    # each call for the move; the first sends it), none refused.
    assert row["errors"] == {}
    assert "(0) |" in table(report["rows"])
    for key in ("floor_p95", "phase_p95", "ratio", "ack_p50", "ack_p95", "join_s"):
        assert row[key] is not None and row[key] > 0, key
    assert row["lateness_p95"] is not None  # the results phase ended by its deadline
    # The server changed the phase after the deadline, and before the last client heard it.
    assert 0 <= row["change_lateness_max"] <= row["lateness_max"]
    assert row["cpu_s"] > 0 and row["peak_rss_mib"] > 0
    # The play after the joins, per move made (clock ticks of 10 ms: it may round to nothing).
    assert 0 <= row["play_cpu_s"] <= row["cpu_s"]
    assert row["cpu_ms_per_move"] == pytest.approx(1000 * row["play_cpu_s"] / row["moves"])
    assert row["client_play_cpu_s"] > 0
    assert row["floor_lost"] == 0
    # The game server's log is kept for the reader, and it has nothing to say.
    assert row["server_log_problems"] == 0
    assert (REPO_ROOT / "artifacts" / "bench-load-logs" / "6-one" / "game-0.log").is_file()
    assert set(row["targets"]) == {
        "phase p95 <= 50 ms",
        "ack p95 <= 50 ms",
        "deadline late <= 0.5 s",
    }
    rendered = table(report["rows"])
    header = rendered.splitlines()[0]
    assert all(column in header for column in COLUMNS)
    assert len(rendered.splitlines()[2].split(" | ")) == len(COLUMNS)
    assert f"({row['cpu_ms_per_move']:.2f} ms) / " in rendered
    for key in ("nproc", "cpu", "memory", "python", "django", "channels", "commit"):
        assert report["machine"][key], key
    assert report["load_before"] and report["load_after"]
    # --trace: each phase change's way through the server, step by step, beside the clients.
    traced = REPO_ROOT / "artifacts" / "bench-load-trace" / "6-one" / "repeat-1.txt"
    summary, *blocks = [block.splitlines() for block in traced.read_text().strip().split("\n\n")]
    assert summary[0] == "the way of 6 phase changes (median, slowest):"
    assert [line.split("  ")[1].strip() for line in summary[1:]] == [*trace.PARTS]
    assert [block[0].split(" (")[0] for block in blocks] == [
        f"round {r}, {change}"
        for r in (1, 2)
        for change in ("bidding -> compliance", "compliance -> audit", "audit -> results")
    ]
    line = re.compile(r"^\s*([+-][\d.]+)\s+[\d.]+ ms  (\S+)\s+(\S+)\s+(\S.*)$")
    built: set[str] = set()
    for header, *lines in blocks:
        matches = [line.fullmatch(text) for text in lines]
        assert all(matches), lines
        steps = [m.groups() for m in matches if m]  # (at, where, thread, step)
        # The moves' thread: the batch that ended the phase, its lock, its resolve and its phase
        # machine, the rows carried on once committed (and the round it settled added to the
        # ledger), then the event's publish, its screens and its send; the hub hands it to the
        # room's 7 sockets.
        named = [step.split(" (")[0] for _, _, thread, step in steps if thread.startswith("moves")]
        expected = ["record", "lock", "resolve", "phases", "carry", "publish", "screens", "send"]
        if "audit -> results" in header:  # settled by the governor's batch, handed to the ledger
            expected.insert(4, "ledger")
        way = [name for name in named if name in expected]  # the finer steps: below
        way = way[way.index("record") :]  # (the window may open inside an earlier batch)
        firsts = [name for i, name in enumerate(way) if name not in way[:i]]
        assert firsts[: len(expected)] == expected, (header, way)
        # Within them, the finer steps: the log's saves and the game's write in the batch, who
        # is online in the publish's screens (and the room's build, where it was not kept).
        assert {"save", "game saved", "who is online"} <= set(named), (header, named)
        built.update(named)
        hand_out = next((float(at), step) for at, _, _, step in steps if "hand-out" in step)
        assert hand_out[1] == "hand-out (hub.event, 7 sockets)"
        last_client = float(header.rsplit("last ", 1)[1].removesuffix(" ms"))
        assert last_client >= hand_out[0]  # no client has it before the hub hands it out
    assert "room" in built  # a new version's room, built from the rows its batch carried on


def test_a_tiny_run_of_labs_on_pages_plays_to_the_end_and_answers_every_move() -> None:
    # --pages: the labs read the pages' HTML fragments and send their forms, as phones do.
    tiny = "--scenarios 6 --setups one --rounds 1 --repeats 1 --fires 3 --timeout 240 --pages"
    report = run_module("bench.load", *tiny.split(), "--json", "--no-write")
    (row,) = report["rows"]
    assert report["pages"] is True and row["label"].endswith("labs on pages")
    # The game ends only if every lab found its bid form and its run-or-idle forms in the
    # fragments (the phases' deadlines are minutes away).
    assert row["complete"] == "1/1"
    assert row["lost_max"] == 0 and row["gaps"] == 0 and row["errors"] == {}
    assert row["moves"] >= 6  # each lab's bid answered (its #flash), the governor's audit acked
    assert row["ack_p95"] is not None and row["phase_p95"] is not None


def test_a_tiny_run_with_the_console_open_keeps_it_open_and_fed_to_the_end() -> None:
    # --console: the game belongs to an instructor whose console is open throughout, as a
    # class's projector shows it; the players' figures then include what the console costs.
    # On both setups: the instructor's session is made in SQLite and in PostgreSQL alike.
    tiny = "--scenarios 6 --setups one,two --rounds 1 --repeats 1 --fires 3 --timeout 240"
    report = run_module("bench.load", *tiny.split(), "--console", "--json", "--no-write")
    assert report["console"] is True
    assert [row["setup"] for row in report["rows"]] == ["one", "two"], report["stopped"]
    for row in report["rows"]:
        assert row["label"].endswith("console open")
        assert row["complete"] == "1/1" and row["lost_max"] == 0 and row["errors"] == {}
        # Its snapshot, then its updates (a moment after each event, the events that come
        # meanwhile sharing one): the host socket was let in and fed to the game's end.
        assert row["console_errors"] == []
        assert row["console_frames"] >= 2 and row["console_kib"] > 10
        assert row["consoles_finished"] == 1


def test_a_traced_phase_change_is_cut_into_parts_that_add_up_to_its_way() -> None:
    def step(began: float, ended: float, name: str, detail: str = "", pid: int = 1) -> trace.Step:
        thread = "MainThread" if name == "hand-out" else "moves_0"
        return trace.Step(began, ended, pid, thread, name, detail)

    steps = (
        step(0.001, 0.009, "record", "3 moves"),
        step(0.010, 0.020, "publish", "event 2: market, phase"),
        step(0.012, 0.015, "screens"),
        step(0.018, 0.024, "send", "RoomEvent"),
        step(0.021, 0.023, "hand-out", "hub.event, 100 sockets", pid=1),
        step(0.022, 0.026, "hand-out", "hub.event, 101 sockets", pid=2),
    )
    change = trace.Change("round 1, bidding -> compliance", 0.0, 0.004, 0.025, 0.031, steps)
    parts = change.segments()
    assert parts is not None and [*parts] == [*trace.PARTS]
    assert parts == pytest.approx(
        {
            "change -> publish": 0.006,
            "publish -> send": 0.008,
            "send -> hand-out": 0.003,
            "hand-out": 0.005,  # from the first hub's start to the last one's end
            "hand-out -> last client": 0.005,
            "change -> last client": 0.027,
        }
    )
    *way, whole = parts.values()
    assert sum(way) == pytest.approx(whole)
    # A change whose event was never sent (a refused move, a trace cut short) has no parts.
    assert trace.Change("r", 0.0, 0.004, 0.025, 0.031, steps[:3]).segments() is None


async def test_a_player_keeps_trying_its_handshake_until_the_game_is_stopped() -> None:
    import asyncio

    from bench.load import clients
    from tests.harness import free_port

    player = _player()
    player.ws_url = f"ws://127.0.0.1:{free_port()}/ws/api/games/ABCDEF/?token=t"  # nobody there
    stop = asyncio.Event()
    task = asyncio.ensure_future(player.play(stop))
    try:
        for _ in range(300):
            if player.handshake_failures > clients.HANDSHAKE_ATTEMPTS:
                break
            await asyncio.sleep(0.05)
        # More tries than the floor's sockets get: a slow room does not lose the player.
        assert player.handshake_failures > clients.HANDSHAKE_ATTEMPTS and not task.done()
        assert sum(player.errors.values()) == player.handshake_failures
        stop.set()  # the game's time limit: it stops trying
        await asyncio.wait_for(task, 10)
    finally:
        task.cancel()


async def test_a_message_is_timed_when_it_reached_the_machine_not_when_its_seat_read_it() -> None:
    """The one client process plays every seat: while it works for the others, a seat's
    message waits, and that wait is the benchmark's own, not the server's. Each message keeps
    the time it reached the machine (the kernel's), however late the process reads it."""
    import asyncio
    import threading
    import time

    import websockets
    from websockets.sync.server import serve

    from bench.load import clients

    def two_messages(socket) -> None:  # a server on a thread of its own
        socket.send("first")
        time.sleep(0.05)
        socket.send("second")
        for _ in socket:  # until the client closes
            pass

    with serve(two_messages, "127.0.0.1", 0) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        port = server.socket.getsockname()[1]
        async with websockets.connect(f"ws://127.0.0.1:{port}/", **clients.WS_OPTIONS) as socket:
            assert isinstance(socket, clients.StampedConnection) and socket.kernel_stamps
            opened = time.time()
            time.sleep(0.3)  # the process is busy (not even reading its sockets)
            assert await socket.recv() == "first"
            first = socket.arrived()
            assert await socket.recv() == "second"
            second, read = socket.arrived(), time.time()
        server.shutdown()
    # Both long before they were read. Read in one go, both carry the time the later one
    # arrived (never a time before a message's own arrival), 50 ms after the first was sent.
    assert opened - 0.01 <= first <= second <= opened + 0.2
    assert read - second >= 0.1
    await asyncio.sleep(0)


def test_the_game_servers_logs_are_kept_and_their_warnings_counted(tmp_path) -> None:
    from bench.load import servers

    served = servers.Servers(servers.SETUPS["two"], {})
    for index, text in enumerate(
        [
            "2026-12-04 INFO daphne: started\nTraceback (most recent call last):\n  x\n",
            "2026-12-04 ERROR permitgame.hub: the hub channel could not be read\nplain\n",
        ]
    ):
        log = tmp_path / f"game-{index}.log"
        log.write_text(text)
        served.game.append(servers.Daphne(None, "http://127.0.0.1:1", log))  # type: ignore[arg-type]
    folder, problems = servers.keep_logs(served, "test-keep")
    try:
        assert problems == 2  # the traceback and the error; not the information
        assert sorted(path.name for path in folder.iterdir()) == ["game-0.log", "game-1.log"]
    finally:
        import shutil

        shutil.rmtree(folder)


def test_the_join_benchmark_fills_lobbies_and_reports_the_cpu_of_a_join() -> None:
    report = run_module("bench.load.joins", "--setup", "one", "--labs", "3", "--games", "2")
    assert report["joins"] == 2 * 3  # the governor and two labs of each lobby: none started
    assert report["server_cpu_ms_per_join"] > 0 and report["join_seconds_p50"] > 0
    assert report["database_cpu_ms_per_join"] is None  # SQLite, in the server's process


def test_a_comparison_alternates_the_two_checkouts_and_leaves_no_worktree_behind() -> None:
    """``bench.load.compare`` runs the benchmark in a worktree of the base and in this checkout
    in turn, and sums each side up; the worktree is gone afterwards."""
    worktrees = ["git", "worktree", "list", "--porcelain"]
    before = subprocess.run(worktrees, cwd=REPO_ROOT, capture_output=True, text=True).stdout
    tiny = "--base HEAD --pairs 1 --scenarios 4 --setups one --repeats 1 --rounds 1"
    lines = run_output("bench.load.compare", *tiny.split(), timeout=600).splitlines()
    runs = [line for line in lines if line.startswith("pair 1, ")]
    assert [line.split(":")[0] for line in runs] == ["pair 1, base HEAD", "pair 1, this checkout"]
    assert all(re.search(r"ratio \d+\.\d\dx, .* lost 0,", line) for line in runs), runs
    table_rows = [line for line in lines if line.startswith("| 4 | one |")]
    assert [row.split(" | ")[2] for row in table_rows] == ["base HEAD", "this checkout"]
    assert all(" of 1 |" in row for row in table_rows)
    after = subprocess.run(worktrees, cwd=REPO_ROOT, capture_output=True, text=True).stdout
    assert after == before
