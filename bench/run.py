"""Benchmarks of the simulation core: the heatmap sweep and single-game round resolution.

Run by ``make bench`` (``.venv/bin/python bench/run.py``). Prints, for each workload, the wall
time, CPU time, lab-rounds per second and peak memory, then how closely float32 sweeps agree with
float64 ones, then the machine it ran on and its load. Results are recorded in
``bench/RESULTS.md``. Loops are bounded in count; nothing here touches the network.

- Sweeps run as the command a user types (``python -m sim_core sweep ... --no-plot --json``) in a
  fresh interpreter, so the wall time includes interpreter start and imports. CPU time is user +
  system time of the sweep's processes (its forked worker included): other programs on the
  machine lengthen the wall time far more than the CPU time. Peak memory is the largest sum of
  the resident sizes of the sweep's processes (sampled every few milliseconds from /proc) and
  the largest single process (getrusage).
- Single-game rounds go through ``sim_core.resolve_round``, the one resolver, all seats bots.
- Precision: the standard sweep in float32 and in float64, in this process; for every metric the
  largest difference of a cell's mean, absolute and in standard errors of that cell.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sim_core import (  # noqa: E402
    METRICS,
    RoundInputs,
    initial_state,
    load_preset,
    make_setup,
    resolve_round,
    run_sweep,
    sweep_scenario,
)

SWEEPS = {
    # name: (grid side, labs, rounds, replicates, target seconds, memory target MiB)
    "standard": (21, 200, 20, 20, 0.5, None),
    "large": (41, 1000, 50, 10, 10.0, 1024),
}
GAME_SIZES = (10, 200, 5000)


def sweep_command(side: int, labs: int, rounds: int, replicates: int) -> list[str]:
    return [
        sys.executable, "-m", "sim_core", "sweep", "targeted_audit",
        "--grid", f"{side}x{side}", "--labs", str(labs), "--rounds", str(rounds),
        "--replicates", str(replicates), "--no-plot", "--json",
    ]  # fmt: skip


def tree_rss_kib(pid: int) -> int:
    """Resident memory of a process and all its descendants, in KiB (0 once it is gone)."""
    total = 0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            total += next(
                int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS")
            )
            for task in Path(f"/proc/{current}/task").iterdir():
                children = (task / "children").read_text().split()
                pending += [int(child) for child in children]
        except (OSError, StopIteration, ValueError):
            continue
    return total


def run_sweep_once(command: list[str], *, sample_memory: bool) -> tuple[float, float, int]:
    """Return (wall seconds, CPU seconds, peak KiB of the sweep's process tree, 0 if not sampled).

    Sampling reads /proc every 2 ms from a thread of this process, which takes a little CPU from
    the sweep: timed runs do not sample, one more run measures memory.
    """
    peak = 0
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL)
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, tree_rss_kib(process.pid))
            time.sleep(0.002)

    sampler = threading.Thread(target=sample, daemon=True)
    if sample_memory:
        sampler.start()
    code = process.wait()
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    done.set()
    if sample_memory:
        sampler.join()
    if code != 0:
        raise SystemExit(f"sweep failed with status {code}: {' '.join(command)}")
    return wall, cpu, peak


def load_average() -> tuple[float, float, float] | None:
    return os.getloadavg() if hasattr(os, "getloadavg") else None


def bench_sweeps(repeats: int, names: list[str]) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for name in names:
        side, labs, rounds, replicates, target, memory_target = SWEEPS[name]
        command = sweep_command(side, labs, rounds, replicates)
        load_before = load_average()
        timed = [run_sweep_once(command, sample_memory=False) for _ in range(repeats)]
        walls = [wall for wall, _, _ in timed]
        _, _, peak = run_sweep_once(command, sample_memory=True)
        # The largest single process so far (ru_maxrss of waited-for descendants, in KiB).
        largest_process = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        lab_rounds = side * side * labs * rounds * replicates
        median = statistics.median(walls)
        rows.append(
            {
                "workload": name,
                "grid": f"{side}x{side}",
                "labs": labs,
                "rounds": rounds,
                "replicates": replicates,
                "lab_rounds": lab_rounds,
                "wall_median_s": median,
                "wall_best_s": min(walls),
                "wall_worst_s": max(walls),
                "cpu_median_s": statistics.median(cpu for _, cpu, _ in timed),
                "lab_rounds_per_s": lab_rounds / median,
                "peak_tree_mib": peak / 1024,
                "peak_process_mib": largest_process / 1024,
                "target_s": target,
                "memory_target_mib": memory_target,
                "command": " ".join(["python", *command[1:]]),
                "load_before": load_before,
                "load_after": load_average(),
            }
        )
    return rows


def bench_games(rounds: int) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    base = load_preset("targeted_audit")
    for labs in GAME_SIZES:
        scenario = replace(
            base,
            labs=replace(base.labs, count=labs),
            market=replace(base.market, token_cap=labs // 2),
            rounds=rounds,
        )
        setup = make_setup(scenario, seed=1)
        state = initial_state(setup)
        resolve_round(setup, state, RoundInputs())  # warm up
        times = []
        for _ in range(rounds):
            start = time.perf_counter()
            progress = resolve_round(setup, state, RoundInputs())
            times.append(time.perf_counter() - start)
            assert progress.next_state is not None
            state = progress.next_state
        per_round = statistics.median(times)
        rows.append(
            {
                "labs": labs,
                "rounds_timed": rounds,
                "round_median_ms": per_round * 1000,
                "round_p95_ms": float(np.percentile(times, 95)) * 1000,
                "lab_rounds_per_s": labs / per_round,
            }
        )
    return rows


def bench_precision() -> list[dict[str, object]]:
    """Compare the standard sweep in float32 and float64, metric by metric, cell by cell."""
    side, labs, rounds, replicates, _, _ = SWEEPS["standard"]
    scenario = sweep_scenario(load_preset("targeted_audit"), labs=labs, rounds=rounds)
    runs = {
        precision: run_sweep(
            scenario, grid=(side, side), replicates=replicates, precision=precision
        )
        for precision in ("float32", "float64")
    }
    rows: list[dict[str, object]] = []
    for name in METRICS:
        single, double = runs["float32"].mean_of(name), runs["float64"].mean_of(name)
        errors = runs["float64"].stderr_of(name)
        difference = np.abs(single - double)
        in_errors = np.divide(
            difference, errors, out=np.where(difference > 0, np.inf, 0.0), where=errors > 0
        )
        rows.append(
            {
                "metric": name,
                "max_abs_difference": float(difference.max()),
                "max_difference_in_stderr": float(in_errors.max()),
                "cells_differing": int(np.count_nonzero(difference)),
                "cells": int(difference.size),
            }
        )
    return rows


def machine() -> dict[str, object]:
    model = "unknown"
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        model = next(
            line.split(":", 1)[1].strip()
            for line in cpuinfo.splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        pass
    memory = "unknown"
    try:
        total_kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f"{total_kib / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "memory": memory,
        "python": platform.python_version(),
        "numpy": np.__version__,
        # Without a bytecode cache every command compiles sim_core's modules again (~25 ms).
        "bytecode_cache": not sys.dont_write_bytecode,
        "load_average": load_average(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs of each sweep (median)")
    parser.add_argument("--game-rounds", type=int, default=50, help="rounds timed per game size")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument(
        "--sweeps",
        default=",".join(SWEEPS),
        help=f"comma-separated sweep workloads to run (default {','.join(SWEEPS)})",
    )
    parser.add_argument(
        "--no-precision", action="store_true", help="skip the float32/float64 comparison"
    )
    args = parser.parse_args()
    names = [name for name in args.sweeps.split(",") if name]
    unknown = [name for name in names if name not in SWEEPS]
    if unknown:
        parser.error(f"unknown sweep workload(s) {', '.join(unknown)}; choose from {list(SWEEPS)}")
    sweeps = bench_sweeps(args.repeats, names)
    games = bench_games(args.game_rounds)
    precision = [] if args.no_precision else bench_precision()
    host = machine()
    if args.json:
        document = {"sweeps": sweeps, "games": games, "precision": precision, "machine": host}
        print(json.dumps(document, indent=2))
        return 0
    print(f"Sweeps (median of {args.repeats} runs, wall time includes interpreter start):")
    print(
        f"  {'workload':<9} {'lab-rounds':>12} {'wall s':>8} {'(best':>7} {'worst)':>7} "
        f"{'CPU s':>7} {'lab-rounds/s':>13} {'peak MiB':>9} {'1 proc':>7} {'target':>7}"
    )
    for row in sweeps:
        print(
            f"  {row['workload']:<9} {row['lab_rounds']:>12,} {row['wall_median_s']:>8.3f} "
            f"{row['wall_best_s']:>7.3f} {row['wall_worst_s']:>7.3f} "
            f"{row['cpu_median_s']:>7.3f} {row['lab_rounds_per_s']:>13.3g} "
            f"{row['peak_tree_mib']:>9.1f} {row['peak_process_mib']:>7.1f} {row['target_s']:>6g}s"
        )
        print(f"    {row['command']}")
        print(f"    load average before {row['load_before']}, after {row['load_after']}")
    print(f"\nSingle-game round resolution through resolve_round ({args.game_rounds} rounds each):")
    print(f"  {'labs':>5} {'median ms':>10} {'p95 ms':>8} {'lab-rounds/s':>13}")
    for row in games:
        print(
            f"  {row['labs']:>5} {row['round_median_ms']:>10.3f} {row['round_p95_ms']:>8.3f} "
            f"{row['lab_rounds_per_s']:>13.3g}"
        )
    if precision:
        print("\nfloat32 against float64, standard sweep (largest difference of a cell's mean):")
        print(f"  {'metric':<22} {'absolute':>10} {'in stderr':>10} {'cells differing':>16}")
        for row in precision:
            print(
                f"  {row['metric']:<22} {row['max_abs_difference']:>10.2g} "
                f"{row['max_difference_in_stderr']:>10.2g} "
                f"{row['cells_differing']:>10} of {row['cells']}"
            )
    cache = "on" if host["bytecode_cache"] else "off (PYTHONDONTWRITEBYTECODE)"
    print(
        f"\nMachine: {host['nproc']} CPUs, {host['cpu']}, {host['memory']} memory; "
        f"Python {host['python']}, numpy {host['numpy']}; bytecode cache {cache}; "
        f"load average {host['load_average']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
