"""Benchmark of parameter studies (docs/studies.md) against the heatmap sweep, in one run.

Run by ``make bench-study`` (``.venv/bin/python bench/study.py``). Bounded in count and time;
only loopback (the LocalCluster listens on 127.0.0.1). Prints, for the same workload size:

1. the heatmap sweep (``run_sweep``, ``workers`` forked processes) over a grid of as many cells
   as the study has points: its time per lab-round is the floor;
2. the study (a Latin hypercube over P and p_eff, engine cell) with ``--workers`` local processes;
3. the same study on a Dask ``LocalCluster`` of ``workers`` worker processes of one thread each
   (the cluster's start-up is timed apart);
4. a study whose every point has its own racing value (a third continuous factor: no two points
   share a batch), to show what that costs;
5. the scheduler's own cost per task (chunks of almost no work);
6. peak memory of the study at two sizes, each in a fresh process (flat in the points);
7. the tidy table's size per row on disk.

Wall times on a shared machine vary with its load: each line is printed with the load average,
and the ratios (study / sweep, Dask / processes) are what the targets are about.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# As ``python -m sim_core`` does (and Dask's nanny for its workers): one BLAS thread.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sim_core import load_preset, run_sweep, sweep_scenario  # noqa: E402
from sim_core.study import parse_study, run_study  # noqa: E402
from sim_core.study.engine import _keep_freed_memory, chunk_size  # noqa: E402

# The command's allocator setting, for the sweep, the local processes and the memory runs alike
# (a Dask worker takes it with its first chunk).
_keep_freed_memory()


def load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def study_document(points: int, labs: int, rounds: int, replicates: int, *, third: bool) -> dict:
    factors = [{"key": "P", "range": [0.2, 0.8]}, {"key": "p_eff", "range": [0.25, 0.75]}]
    if third:
        factors.append({"key": "labs.racing_value", "range": [0.0, 0.2]})
    return {
        "name": "bench",
        "scenario": "targeted_audit",
        "overrides": {"labs.count": labs, "rounds": rounds, "market.token_cap": labs // 2},
        "factors": factors,
        "design": {"type": "lhs", "samples": points, "seed": 1},
        "replicates": replicates,
        "seed": 7,
        "metrics": ["compliance_rate", "deterrence_rate", "price", "welfare"],
    }


def grid_for(points: int) -> tuple[int, int]:
    side = round(points**0.5)
    while points % side:
        side -= 1
    return points // side, side


def tree_cpu() -> float:
    """Return the CPU time (user + system) of this process and every process it started.

    Children that ended and were waited for (forked sweep workers, the local process pool)
    count through getrusage; live ones (the LocalCluster's workers) through psutil.
    """
    import psutil

    me = psutil.Process()
    ended = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = sum(me.cpu_times()[:2]) + ended.ru_utime + ended.ru_stime
    for child in me.children(recursive=True):
        with contextlib.suppress(psutil.Error):  # it ended meanwhile: counted by getrusage
            total += sum(child.cpu_times()[:2])
    return total


def timed(function, *args, **kwargs) -> tuple[tuple[float, float], object]:
    """Return ((wall seconds, CPU seconds of the process tree), the function's value)."""
    cpu = tree_cpu()
    started = time.perf_counter()
    value = function(*args, **kwargs)
    return (time.perf_counter() - started, tree_cpu() - cpu), value


def line(name: str, measure: tuple[float, float], lab_rounds: float, extra: str = "") -> None:
    wall, cpu = measure
    print(
        f"  {name:<34} wall {wall:7.2f} s  CPU {cpu:7.2f} s  "
        f"{cpu / lab_rounds * 1e9:6.2f} CPU-ns/lab-round  load {load()}  {extra}"
    )


def memory_child(points: int, labs: int, rounds: int, replicates: int, workers: int) -> None:
    """Run one study in this fresh process; print its peak memory (self, largest child)."""
    with tempfile.TemporaryDirectory() as directory:
        study = parse_study(
            study_document(points, labs, rounds, replicates, third=False), base_dir=directory
        )
        run_study(study, workers=workers)
    self_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    child_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps({"self": self_peak, "children": child_peak}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1000)
    parser.add_argument("--labs", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--replicates", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--memory-points", default="250,2000")
    parser.add_argument("--skip-dask", action="store_true")
    parser.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.memory_child, args.labs, args.rounds, args.replicates, args.workers)
        return

    size = args.points * args.replicates * args.labs * args.rounds
    print(
        f"machine: {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()}, numpy {np.__version__}; load {load()}"
    )
    print(
        f"workload: {args.points} points x {args.replicates} replicates x {args.labs} labs x "
        f"{args.rounds} rounds = {size:.3g} lab-rounds, {args.workers} workers"
    )
    scenario = sweep_scenario(load_preset("targeted_audit"), labs=args.labs, rounds=args.rounds)
    grid = grid_for(args.points)
    temporary = tempfile.TemporaryDirectory()
    base = Path(temporary.name)
    study = parse_study(
        study_document(args.points, args.labs, args.rounds, args.replicates, third=False),
        base_dir=base,
    )
    # A tenth of the points: every one is its own batch, which is slow.
    third_points = max(1, args.points // 10)
    third = parse_study(
        study_document(third_points, args.labs, args.rounds, args.replicates, third=True),
        base_dir=base,
    )
    third_size = third_points * args.replicates * args.labs * args.rounds
    # Imports (scipy.stats alone takes seconds on a loaded machine) and the first draws happen
    # once per process: a small study first, untimed, so that the timed ones compare the work.
    warm = parse_study(
        study_document(
            max(1, args.points // 20), args.labs, args.rounds, args.replicates, third=False
        ),
        base_dir=base,
    )
    (seconds, _), _ = timed(run_study, warm, output=base / "warm-up", workers=1)
    print(f"  warm-up (imports and a small study, untimed below): {seconds:.2f} s")
    chunks = -(-args.points // chunk_size(study, args.points))
    print(
        f"chunks: {chunks} of {chunk_size(study, args.points)} points "
        f"({chunk_size(study, args.points) * args.replicates * args.labs * args.rounds:.3g} "
        "lab-rounds each)"
    )

    cluster = None
    if not args.skip_dask:
        import dask
        from distributed import LocalCluster

        # The workers' statistical profiler wakes every 10 ms and takes the GIL to walk the
        # stacks: docs/studies.md asks study workers to turn it off, as here.
        dask.config.set({"distributed.worker.profile.enabled": False})

        (seconds, _), cluster = timed(
            LocalCluster,
            n_workers=args.workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            host="127.0.0.1",
            silence_logs=50,
        )
        print(f"  LocalCluster start-up: {seconds:.2f} s")

    results: dict[str, list[tuple[float, float]]] = {"sweep": [], "study": [], "dask": []}
    results["third"] = []

    def ratio(name: str, other: str) -> str:
        (wall, cpu), (wall0, cpu0) = results[name][-1], results[other][-1]
        return f"x{wall / wall0:.2f} wall, x{cpu / cpu0:.2f} CPU of the {other}"

    for repeat in range(args.repeats):
        run = repeat + 1
        print(f"repeat {repeat + 1}:")
        measure, _ = timed(
            run_sweep, scenario, grid=grid, replicates=args.replicates, workers=args.workers, seed=7
        )
        results["sweep"].append(measure)
        line(f"sweep grid {grid[0]}x{grid[1]}", measure, size)
        measure, _ = timed(run_study, study, workers=args.workers, output=base / f"s{run}")
        results["study"].append(measure)
        line("study, local processes", measure, size, ratio("study", "sweep"))
        if cluster is not None:
            measure, _ = timed(
                run_study, study, scheduler=cluster.scheduler_address, output=base / f"d{run}"
            )
            results["dask"].append(measure)
            line("study, Dask LocalCluster", measure, size, ratio("dask", "study"))
        if repeat == 0:
            measure, _ = timed(run_study, third, workers=args.workers, output=base / f"t{run}")
            results["third"].append(measure)
            per = measure[1] / third_size / (results["sweep"][-1][1] / size)
            line(
                f"study, + racing value, {third_points} pts",
                measure,
                third_size,
                f"x{per:.2f} CPU per lab-round of the sweep",
            )

    best = {
        name: (min(m[0] for m in runs), min(m[1] for m in runs))
        for name, runs in results.items()
        if runs
    }
    print("best of repeats (wall and CPU each the least):")
    for name, measure in best.items():
        line(name, measure, third_size if name == "third" else size)
    for name, other in (("study", "sweep"), ("dask", "study")):
        if name in best:
            print(
                f"  {name} / {other}: wall x{best[name][0] / best[other][0]:.2f}, "
                f"CPU x{best[name][1] / best[other][1]:.2f}"
            )
    if "dask" in best:
        per_chunk = best["study"][1] / chunks
        extra = (best["dask"][1] - best["study"][1]) / chunks
        print(
            f"  one chunk: {per_chunk:.3f} CPU-s; Dask's extra CPU per chunk (scheduler, nanny, "
            f"comms): {extra * 1000:.1f} ms = {extra / per_chunk:.1%}"
        )

    if cluster is not None:
        tiny = parse_study(
            {
                "scenario": "targeted_audit",
                "overrides": {"labs.count": 2, "rounds": 1},
                "factors": [{"key": "P", "range": [0.2, 0.8]}],
                "design": {"type": "lhs", "samples": 400, "seed": 1},
                "replicates": 1,
                "chunk_points": 1,
            },
            base_dir=base,
        )
        (seconds, cpu), _ = timed(
            run_study, tiny, scheduler=cluster.scheduler_address, output=base / "tiny"
        )
        print(
            f"  scheduler cost: 400 chunks of almost no work in {seconds:.2f} s wall, "
            f"{cpu:.2f} s CPU = {seconds / 400 * 1000:.1f} ms wall, {cpu / 400 * 1000:.1f} ms "
            f"CPU per chunk, client, scheduler and workers together (load {load()})"
        )
        cluster.close()

    table = base / "s1" / "results.parquet"
    rows = args.points * args.replicates
    print(
        f"tidy table: {table.stat().st_size / rows:.1f} bytes per row "
        f"({len(study.metrics)} metrics, 2 factors)"
    )

    for points in (int(text) for text in args.memory_points.split(",") if text):
        done = subprocess.run(
            [
                sys.executable,
                __file__,
                "--memory-child",
                str(points),
                "--labs",
                str(args.labs),
                "--rounds",
                str(args.rounds),
                "--replicates",
                str(args.replicates),
                "--workers",
                str(args.workers),
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=3600,
        )
        peaks = json.loads(done.stdout.strip().splitlines()[-1])
        print(
            f"  peak memory, {points} points: client {peaks['self']:.0f} MiB, largest worker "
            f"{peaks['children']:.0f} MiB (load {load()})"
        )
    temporary.cleanup()


if __name__ == "__main__":
    main()
