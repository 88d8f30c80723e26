"""`make bench-load`: rooms of JSON-protocol players against real servers, beside the floor.

    .venv/bin/python -m bench.load [--quick] [--repeats N] [--scenarios 30,200,20x30,1000]
        [--setups one,two,four] [--rounds 3] [--json] [--no-write] [--save-before]

A scenario is ``N`` (one room of N labs and a governor) or ``RxN`` (R such rooms at once). Each
scenario runs on its setups (default: ``one`` and ``two``; ``four`` for rooms above 500 labs),
each setup on freshly started servers. Per repeat: the bare floor (one group_send to as many
sockets as the game has), then the game(s); every figure is the median over the repeats.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.load import clients, profile, servers, trace
from tests.harness import artifact_path

REPO_ROOT = Path(__file__).resolve().parents[2]
RESULTS = REPO_ROOT / "bench" / "RESULTS.md"
BEFORE = Path(__file__).resolve().parent / "before.json"
#: The last run's report (git-ignored), which --rewrite writes to RESULTS.md again.
LAST = REPO_ROOT / "artifacts" / "bench-load-last.json"
START_MARK = (
    "<!-- bench-load: written by `make bench-load`; everything to the end mark is replaced -->"
)
END_MARK = "<!-- bench-load: end -->"

DEFAULT_SCENARIOS = "30,200,20x30,1000"
QUICK_SCENARIOS = "30"


@dataclass(frozen=True)
class Scenario:
    name: str
    rooms: int
    labs: int

    @property
    def sockets(self) -> int:
        return self.rooms * (self.labs + 1)

    @property
    def label(self) -> str:
        if self.rooms == 1:
            return f"{self.labs} players, 1 room"
        return f"{self.rooms} rooms x {self.labs}"

    def default_setups(self) -> list[str]:
        return ["four"] if self.labs > 500 else ["one", "two"]


def parse_scenario(text: str) -> Scenario:
    rooms, _, labs = text.strip().rpartition("x")
    scenario = Scenario(text.strip(), int(rooms or 1), int(labs))
    if not (1 <= scenario.rooms <= 50 and 2 <= scenario.labs <= 2000):
        raise argparse.ArgumentTypeError(f"scenario {text!r}: 1-50 rooms of 2-2000 labs")
    return scenario


#: Seconds a repeat's games may take per socket (for 3 rounds), beside a fixed 60 s. 0.2 s cut
#: off every 200-player game (joins 20-40 s, then nine phases of 15-17 s each on this shared
#: machine): a row with no game ended says nothing of its latencies or losses.
SECONDS_PER_SOCKET = 0.6


def time_limit(scenario: Scenario, rounds: int) -> float:
    """Seconds a repeat's games may take: 60 s and ``SECONDS_PER_SOCKET`` a socket (3 rounds)."""
    return 60 + SECONDS_PER_SOCKET * scenario.sockets * max(1, rounds) / 3


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = q / 100 * (len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: list[Any]) -> Any:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


# ------------------------------------------------------------------------------------ one repeat


async def one_repeat(
    served: servers.Servers,
    scenario: Scenario,
    *,
    rounds: int,
    fires: int,
    seed: int,
    profile_as: str | None = None,
    trace_as: Path | None = None,
) -> dict[str, Any]:
    floor = await clients.floor([d.url for d in served.floor], scenario.sockets, fires)
    games = servers.create_games(
        served, labs=scenario.labs, games=scenario.rooms, rounds=rounds, console=clients.CONSOLE
    )
    cpu_before = servers.CpuTimes.now(served)
    joined_cpu: list[servers.CpuTimes] = []  # once the joins are over
    started = time.time()
    with contextlib.ExitStack() as stack:
        samples = (
            stack.enter_context(profile.record(served.game[0].process.pid, profile_as))
            if profile_as
            else None
        )
        runs = await clients.play_games(
            games.codes,
            players=scenario.labs,
            rounds=rounds,
            game_urls=[d.url for d in served.game],
            time_limit=time_limit(scenario, rounds),
            seed=seed,
            joined=lambda: joined_cpu.append(servers.CpuTimes.now(served)),
            console_cookie=games.console_cookie,
        )
    wall = time.time() - started
    ended_cpu = servers.CpuTimes.now(served)
    if trace_as is not None:  # the servers' steps beside what the clients saw
        names = {d.process.pid: f"game-{i + 1}" for i, d in enumerate(served.game)}
        found = trace.changes(runs, trace.read(trace_as.parent))
        summary = trace.summary(found)
        trace_as.write_text("\n".join([*summary, "", *trace.timelines(found, names)]))
    cpu = ended_cpu.servers - cpu_before.servers
    players = [p for run in runs for p in run.players]
    acks = [a for p in players for a in p.acks]
    # The play after the joins: what the moves, their events and the clock cost.
    play = ended_cpu - joined_cpu[0] if joined_cpu else None
    phase = [x for run in runs for x in run.phase_latencies()]
    phase_from_move = [x for run in runs for x in run.phase_latencies(from_last_move=True)]
    lateness = [x for run in runs for x in run.deadline_lateness()]
    changed = [x for run in runs for x in run.deadline_changes()]
    joined = [run.joined_at for run in runs]
    errors: dict[str, int] = {}
    for p in players:
        for code, n in p.errors.items():
            errors[code] = errors.get(code, 0) + n
    floor_p95 = percentile(floor["latencies"], 95)
    phase_p95 = percentile(phase, 95)
    floor_command_p95 = percentile(floor["command_latencies"], 95)
    move_p95 = percentile(phase_from_move, 95)
    return {
        "floor_p95": floor_p95,
        "floor_command_p95": floor_command_p95,
        "floor_lost": floor["lost"],
        # How long messages waited in this client process after reaching the machine (not
        # timed: the times are the kernel's, ``clients.StampedConnection``).
        "client_delay_p95": percentile([d for p in players for d in p.client_delays], 95),
        "floor_client_delay_p95": percentile(floor["client_delays"], 95),
        "phase_p95": phase_p95,
        "phase_p50": percentile(phase, 50),
        "ratio": phase_p95 / floor_p95 if phase_p95 is not None and floor_p95 else None,
        # Both from a client's command: the last move of the phase, the floor's fire.
        "phase_move_p95": move_p95,
        "move_ratio": (
            move_p95 / floor_command_p95 if move_p95 is not None and floor_command_p95 else None
        ),
        "ack_p50": percentile(acks, 50),
        "ack_p95": percentile(acks, 95),
        "moves": len(acks),
        "lost": sum(run.lost() for run in runs),
        "gaps": sum(p.gaps for p in players),
        "resyncs": sum(p.resyncs for p in players),
        "join_s": (
            max(j for j in joined if j is not None) - min(run.join_started for run in runs)
            if all(j is not None for j in joined)
            else None
        ),
        "joined": sum(p.ready.is_set() for p in players),
        "seats": len(players),
        "failed_handshakes": sum(p.handshake_failures for p in players),
        "failed_joins": sum(p.join_failures for p in players),
        "cpu_s": cpu,
        "join_cpu_s": joined_cpu[0].servers - cpu_before.servers if joined_cpu else None,
        "play_cpu_s": play.servers + play.databases if play else None,
        "cpu_ms_per_move": 1000 * (play.servers + play.databases) / len(acks)
        if play and acks
        else None,
        "client_play_cpu_s": play.client if play else None,
        "wall_s": wall,
        "lateness_p95": percentile(lateness, 95),
        "lateness_max": max(lateness) if lateness else None,
        "change_lateness_max": max(changed) if changed else None,
        "complete": sum(run.complete for run in runs),
        "games": len(runs),
        "messages": sum(sum(p.counts.values()) for p in players),
        "console_frames": sum(run.console_frames for run in runs),
        "console_kib": sum(run.console_bytes for run in runs) / 1024,
        "console_errors": [run.console_error for run in runs if run.console_error],
        "consoles_finished": sum(run.console_finished for run in runs),
        "errors": errors,
        "servers_alive": all(d.alive() for d in served.game),
        "profile": profile.summary(samples) if samples is not None else [],
    }


AGGREGATED = (
    "floor_p95",
    "floor_command_p95",
    "phase_p95",
    "phase_p50",
    "ratio",
    "phase_move_p95",
    "move_ratio",
    "ack_p50",
    "ack_p95",
    "lost",
    "gaps",
    "resyncs",
    "join_s",
    "failed_handshakes",
    "failed_joins",
    "joined",
    "cpu_s",
    "join_cpu_s",
    "play_cpu_s",
    "cpu_ms_per_move",
    "client_play_cpu_s",
    "wall_s",
    "lateness_p95",
    "messages",
    "moves",
    "floor_lost",
    "client_delay_p95",
    "floor_client_delay_p95",
)


def run_setup(
    scenario: Scenario,
    setup: servers.Setup,
    *,
    repeats: int,
    rounds: int,
    fires: int,
    log: Any,
    profiled: bool = False,
    traced: bool = False,
) -> dict[str, Any]:
    repeats_out: list[dict[str, Any]] = []
    traces = artifact_path("bench-load-trace") / f"{scenario.name}-{setup.name}"
    if traced:
        shutil.rmtree(traces, ignore_errors=True)
    with servers.serve(setup, trace_to=traces if traced else None) as served:
        for index in range(repeats):
            name = f"{scenario.name}-{setup.name}" if profiled and index == 0 else None
            trace_as = traces / f"repeat-{index + 1}.txt" if traced else None
            result = asyncio.run(
                one_repeat(
                    served,
                    scenario,
                    rounds=rounds,
                    fires=fires,
                    seed=1000 + index,
                    profile_as=name,
                    trace_as=trace_as,
                )
            )
            if trace_as is not None:
                print(f"  each phase change through the servers: {trace_as}", file=log)
                for line in trace_as.read_text().split("\n\n", 1)[0].splitlines():
                    print(f"  {line}", file=log)
            repeats_out.append(result)
            if result["profile"]:
                print(f"  where game server 1 spent its time ({name}):", file=log)
                for function, share in result["profile"]:
                    print(f"    {share:6.1%}  {function}", file=log)
            print(
                f"  {scenario.label} / {setup.name} repeat {index + 1}: "
                f"floor {fmt_ms(result['floor_p95'])}, phase {fmt_ms(result['phase_p95'])}, "
                f"ack p95 {fmt_ms(result['ack_p95'])} ({fmt_errors(result['errors'])} refused), "
                f"lost {result['lost']}, "
                f"gaps {result['gaps']}, late {fmt_ms(result['lateness_p95'])} "
                f"(max {fmt_ms(result['lateness_max'])}; the server's change at most "
                f"{fmt_ms(result['change_lateness_max'])} after its deadline), "
                f"joins {fmt_s(result['join_s'])} ({result['joined']}/{result['seats']} connected, "
                f"{result['failed_handshakes']} failed handshakes, "
                f"server CPU {fmt_s(result['join_cpu_s'])}), "
                f"games {result['complete']}/{result['games']}, "
                f"{result['wall_s']:.0f} s, load {os.getloadavg()[0]:.2f}, "
                f"the client's own wait p95 {fmt_ms(result['client_delay_p95'])} "
                f"(floor {fmt_ms(result['floor_client_delay_p95'])}; not timed)"
                + (
                    f", consoles sent {result['console_frames']} frames, "
                    f"{result['console_kib']:.0f} KiB {result['console_errors'] or ''}"
                    if clients.CONSOLE
                    else ""
                ),
                file=log,
                flush=True,
            )
            if not result["servers_alive"]:
                dead = [d for d in served.game if not d.alive()]
                print(servers.tail(dead[0].log), file=log)
                break
            if result["errors"]:
                print(f"  errors: {result['errors']}", file=log)
            if result["complete"] == 0 and index + 1 < repeats:
                # No game ended in its time limit: more repeats would only take the machine
                # longer; the row says how many repeats ran.
                print("  no game ended: the other repeats are skipped", file=log)
                break
        rss = max(d.peak_rss_mib() for d in served.game)
        folder, problems = servers.keep_logs(served, f"{scenario.name}-{setup.name}")
        if problems:
            print(f"  server logs: {problems} lines of warnings or errors, in {folder}", file=log)
    row: dict[str, Any] = {
        "scenario": scenario.name,
        "label": scenario.label
        + (", labs on pages" if clients.PAGES else "")
        + (", console open" if clients.CONSOLE else ""),
        "setup": setup.name,
        "setup_label": setup.label,
        "sockets": scenario.sockets,
        "repeats": len(repeats_out),
        "peak_rss_mib": rss,
        "complete": "{}/{}".format(
            sum(r["complete"] for r in repeats_out), sum(r["games"] for r in repeats_out)
        ),
        "lost_max": max(r["lost"] for r in repeats_out),
        # --console: what the games' consoles were sent, all repeats together.
        "console_frames": sum(r["console_frames"] for r in repeats_out),
        "console_kib": sum(r["console_kib"] for r in repeats_out),
        "console_errors": [e for r in repeats_out for e in r["console_errors"]],
        "consoles_finished": sum(r["consoles_finished"] for r in repeats_out),
        "lateness_max": max(
            (r["lateness_max"] for r in repeats_out if r["lateness_max"] is not None), default=None
        ),
        "change_lateness_max": max(
            (r["change_lateness_max"] for r in repeats_out if r["change_lateness_max"] is not None),
            default=None,
        ),
        "errors": _sum_dicts([r["errors"] for r in repeats_out]),
        "server_log_problems": problems,
        "profile": repeats_out[0]["profile"],
        "per_repeat": repeats_out,
    }
    for key in AGGREGATED:
        row[key] = median([r[key] for r in repeats_out])
    row["targets"] = targets(scenario, row)
    return row


def _sum_dicts(dicts: list[dict[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for d in dicts:
        for k, v in d.items():
            out[k] = out.get(k, 0) + v
    return out


# ------------------------------------------------------------------------------------ targets


#: A phase change within this many times the bare floor (the 200-player and 20 x 30 targets).
FLOOR_RATIO = 1.3


def targets(scenario: Scenario, row: dict[str, Any]) -> dict[str, bool]:
    """The issue's targets that apply to this scenario: name -> passed."""
    out: dict[str, bool] = {}
    games_ok = row["complete"].split("/")[0] == row["complete"].split("/")[1]

    def le(value: Any, limit: float) -> bool:
        return value is not None and value <= limit

    within_floor = le(row["ratio"], FLOOR_RATIO)
    if scenario.rooms == 1 and 100 <= scenario.labs <= 500:
        out["phase <= 1.3x floor"] = within_floor
        out["ack p95 <= 100 ms"] = le(row["ack_p95"], 0.100)
        out["0 lost"] = row["lost_max"] == 0 and games_ok
        out["joins < 10 s, 0 failed"] = le(row["join_s"], 10.0) and row["failed_handshakes"] == 0
    elif scenario.rooms == 1 and scenario.labs <= 100:
        out["phase p95 <= 50 ms"] = le(row["phase_p95"], 0.050)
        out["ack p95 <= 50 ms"] = le(row["ack_p95"], 0.050)
    elif scenario.rooms > 1:
        out["0 lost"] = row["lost_max"] == 0 and games_ok
        out["ack p95 <= 100 ms"] = le(row["ack_p95"], 0.100)
        out["phase <= 1.3x floor"] = within_floor
    else:
        out["plays to the end, 0 lost"] = row["lost_max"] == 0 and games_ok
    out["deadline late <= 0.5 s"] = le(row["lateness_p95"], 0.5) and le(row["lateness_max"], 0.5)
    return out


# ------------------------------------------------------------------------------------ report


def fmt_ms(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.0f} ms" if value < 10 else f"{value:.1f} s"


def fmt_s(value: Any) -> str:
    return "-" if value is None else f"{value:.1f} s"


def fmt_errors(errors: dict[str, int] | None) -> str:
    """The errors the players were answered, by code (a game played as it should has none)."""
    if not errors:
        return "0"
    return ", ".join(f"{n} {code}" for code, n in sorted(errors.items()))


def fmt_ratio(value: Any) -> str:
    return "-" if value is None else f"{value:.1f}x"


def fmt_cpu_per_move(value: Any) -> str:
    return "-" if value is None else f"{value:.2f} ms"


COLUMNS = (
    "scenario",
    "setup",
    "bare floor, last client p95 (from the fire command)",
    "phase change -> last client p95 (from the last move sent)",
    "ratio game/floor (both from the client)",
    "move ack p50 / p95 (moves refused)",
    "lost (max) / seq gaps / resyncs",
    "joins (failed handshakes)",
    "server CPU (in play, a move) / peak RSS",
    "deadline -> clients p95 (max)",
    "games ended",
    "targets",
)


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        ratio = f"{fmt_ratio(row['ratio'])} ({fmt_ratio(row.get('move_ratio'))})"
        marks = ", ".join(
            f"{name}: {'PASS' if ok else 'FAIL'}" for name, ok in row["targets"].items()
        )
        cells = [
            row["label"] + (f" ({row['repeats']} repeat{'s' if row['repeats'] > 1 else ''})"),
            row["setup_label"],
            f"{fmt_ms(row['floor_p95'])} ({fmt_ms(row.get('floor_command_p95'))})",
            f"{fmt_ms(row['phase_p95'])} ({fmt_ms(row.get('phase_move_p95'))})",
            ratio,
            f"{fmt_ms(row['ack_p50'])} / {fmt_ms(row['ack_p95'])} "
            f"({fmt_errors(row.get('errors'))})",
            f"{row['lost']:.0f} ({row['lost_max']}) / {row['gaps']:.0f} / {row['resyncs']:.0f}",
            f"{fmt_s(row['join_s'])} ({row['failed_handshakes']:.0f})"
            + ("" if row["join_s"] is not None else f", {row.get('joined') or 0:.0f} connected"),
            f"{row['cpu_s']:.1f} s ({fmt_cpu_per_move(row.get('cpu_ms_per_move'))}) / "
            f"{row['peak_rss_mib']:.0f} MiB",
            f"{fmt_ms(row['lateness_p95'])} ({fmt_ms(row['lateness_max'])})",
            row["complete"],
            marks,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    import channels
    import daphne
    import django

    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    commit = subprocess.run(
        ["git", "describe", "--always", "--dirty", "--abbrev=7"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "memory": memory,
        "python": platform.python_version(),
        "django": django.get_version(),
        "channels": channels.__version__,
        "daphne": daphne.__version__,
        "commit": commit,
    }


#: How the players' sockets took the events (``--frames``; a report without it: per message).
FRAMES_SAID = {
    "event": "each event one frame to a player's socket (`?frames=event`)",
    "message": "each message one frame to a player's socket",
}


def render(report: dict[str, Any], before: dict[str, Any] | None) -> str:
    m = report["machine"]
    lines = [
        START_MARK,
        "## Load: rooms of players against real servers (`make bench-load`)",
        "",
        f"Command: `{report['command']}`, {report['date']}, commit {m['commit']}; "
        f"{report['repeats']} repeats, {report['rounds']} rounds a game, "
        f"{FRAMES_SAID[report.get('frames', 'message')]}, every figure the median "
        "over the repeats (what is measured: [README.md](README.md#load)).",
        f"Machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory']}; Python {m['python']}, "
        f"Django {m['django']}, Channels {m['channels']}, Daphne {m['daphne']}. Load average "
        f"before {report['load_before']}, after {report['load_after']}; "
        f"{report['elapsed_s']:.0f} s in all. {report.get('stopped', '')}",
        "",
        table(report["rows"]),
        "",
    ]
    if before is not None:
        b = before["machine"]
        lines += [
            f"Before: `{before['command']}`, {before['date']}, commit {b['commit']}; load average "
            f"before {before['load_before']}, after {before['load_after']}. "
            + before.get("note", ""),
            "",
            table(before["rows"]),
            "",
        ]
    lines.append(END_MARK)
    return "\n".join(lines)


def write_results(text: str) -> None:
    current = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    if START_MARK in current and END_MARK in current:
        head, rest = current.split(START_MARK, 1)
        tail = rest.split(END_MARK, 1)[1]
        current = head + text + tail
    else:
        current = current.rstrip("\n") + "\n\n" + text + "\n"
    RESULTS.write_text(current)


# ------------------------------------------------------------------------------------ main


class Timeout(Exception):
    pass


def _on_alarm(signum: int, frame: Any) -> None:
    raise Timeout("the global time limit passed")


def _on_term(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="30 players, both setups, 1 repeat (< 2 min)"
    )
    parser.add_argument("--repeats", type=int, help="repeats of each (default 3; --quick: 1)")
    parser.add_argument("--scenarios", help=f"comma-separated (default {DEFAULT_SCENARIOS})")
    parser.add_argument("--setups", help="comma-separated: one, two, four (default per scenario)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--fires", type=int, help="floor group sends per repeat (default 20)")
    parser.add_argument(
        "--frames",
        choices=("event", "message"),
        default="event",
        help="the players' sockets: each event as one frame (default), or each message",
    )
    parser.add_argument(
        "--pages",
        action="store_true",
        help="the labs play on the pages' sockets (HTML fragments), as phones do",
    )
    parser.add_argument(
        "--console",
        action="store_true",
        help="each game's console open throughout, as a class's projector shows it",
    )
    parser.add_argument("--timeout", type=float, help="global limit in seconds (default 1800)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--no-write", action="store_true", help="do not write bench/RESULTS.md")
    parser.add_argument("--save-before", action="store_true", help="keep this run as 'before'")
    parser.add_argument(
        "--profile", action="store_true", help="sample the first game server with py-spy"
    )
    parser.add_argument(
        "--trace",
        action="store_true",
        help="time each step of a phase change in the game servers (bench/load/trace.py)",
    )
    parser.add_argument(
        "--rewrite", action="store_true", help="write the last run's report to RESULTS.md again"
    )
    args = parser.parse_args(argv)
    if args.rewrite:
        before = json.loads(BEFORE.read_text()) if BEFORE.exists() else None
        write_results(render(json.loads(LAST.read_text()), before))
        return 0
    if args.repeats is None:
        args.repeats = 1 if args.quick else 3
    if args.repeats < 1 or args.rounds < 1:
        parser.error("--repeats and --rounds must be at least 1")
    scenarios = [
        parse_scenario(s)
        for s in (args.scenarios or (QUICK_SCENARIOS if args.quick else DEFAULT_SCENARIOS)).split(
            ","
        )
    ]
    fires = args.fires or (10 if args.quick else 20)
    clients.FRAMES = args.frames
    clients.PAGES = args.pages
    clients.CONSOLE = args.console
    limit = args.timeout or (300 if args.quick else 1800)

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 65536 if hard == resource.RLIM_INFINITY else hard
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.signal(signal.SIGTERM, _on_term)
    signal.alarm(int(limit))
    log = sys.stderr if args.json else sys.stdout
    load_before = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    measured = machine()  # the commit measured is the one the servers started from
    started = time.time()
    rows: list[dict[str, Any]] = []
    stopped = ""
    try:
        for scenario in scenarios:
            setup_names = args.setups.split(",") if args.setups else scenario.default_setups()
            for name in setup_names:
                setup = servers.SETUPS[name.strip()]
                print(f"{scenario.label} on {setup.label}", file=log, flush=True)
                try:
                    rows.append(
                        run_setup(
                            scenario,
                            setup,
                            repeats=args.repeats,
                            rounds=args.rounds,
                            fires=fires,
                            log=log,
                            profiled=args.profile,
                            traced=args.trace,
                        )
                    )
                except Exception as error:  # a setup that fails is reported; the next one runs
                    failed = f"{scenario.label} on {setup.name} failed: {error!r}"[:300]
                    print(failed, file=log, flush=True)
                    stopped += failed + ". "
    except Timeout:
        stopped += f"Stopped by the time limit ({limit:.0f} s) after {len(rows)} rows."
        print(stopped, file=log)
    finally:
        signal.alarm(0)
    report = {
        "command": " ".join(
            ["make bench-load" if not argv else "python -m bench.load", *(argv or [])]
        ),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": measured,
        "repeats": args.repeats,
        "rounds": args.rounds,
        "frames": args.frames,
        "pages": args.pages,
        "console": args.console,
        "load_before": load_before,
        "load_after": ", ".join(f"{x:.2f}" for x in os.getloadavg()),
        "elapsed_s": time.time() - started,
        "rows": rows,
        "stopped": stopped,
    }
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print()
        print(table(rows))
        print(f"\nload average before {report['load_before']}, after {report['load_after']}")
    LAST.parent.mkdir(exist_ok=True)
    LAST.write_text(json.dumps(report, indent=1) + "\n")
    if args.save_before:
        BEFORE.write_text(json.dumps(report, indent=1) + "\n")
    if not args.no_write:
        before = (
            json.loads(BEFORE.read_text()) if BEFORE.exists() and not args.save_before else None
        )
        write_results(render(report, before))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
