"""Alternate runs of the load benchmark on this checkout and on another commit (``--base``).

``python -m bench.load.compare --base e3b7ceb --pairs 7 --scenarios 200 --setups two`` checks
the base out in a temporary git worktree and runs ``python -m bench.load --no-write --json`` with
the same options in the base and in this checkout in turn, ``--pairs`` times, so that both sides
see the same spells of a shared machine (its speed can move by half from one half hour to the
next: a single run of each says little). Each run prints a line as it ends; the summary gives, per
scenario, setup and side, every run's ratio to the floor, their median, how many met the 1.3x
target, and the medians of the phase change's and the ack's p95. The worktree is removed at the
end (also on an error or Ctrl-C). Nothing is written to RESULTS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.load.__main__ import FLOOR_RATIO, fmt_ms, median
from tests.harness import REPO_ROOT, python_module


@dataclass
class Side:
    """One side of the comparison: a checkout and the runs made in it."""

    name: str
    path: Path
    runs: list[dict[tuple[str, str], dict[str, Any]]] = field(default_factory=list)


@contextlib.contextmanager
def worktree(ref: str) -> Iterator[Path]:
    """Check ``ref`` out in a temporary git worktree of this repository; remove it on exit."""
    folder = Path(tempfile.mkdtemp(prefix="permitgame-bench-compare-"))
    path = folder / "base"
    subprocess.run(
        ["git", "worktree", "add", "--detach", str(path), ref],
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    try:
        yield path
    finally:
        subprocess.run(
            ["git", "worktree", "remove", "--force", str(path)],
            cwd=REPO_ROOT,
            check=False,
            capture_output=True,
        )
        shutil.rmtree(folder, ignore_errors=True)


def run_once(path: Path, options: Sequence[str], timeout: float) -> dict[tuple[str, str], Any]:
    """Run the benchmark in checkout ``path``; return its rows by (scenario, setup)."""
    result = python_module(
        "bench.load", *options, "--no-write", "--json", cwd=path, timeout=timeout
    )
    if result.returncode != 0:
        raise RuntimeError(f"the run in {path} failed:\n{result.stderr[-3000:]}")
    report = json.loads(result.stdout)
    return {
        (row["scenario"], row["setup"]): {**row, "load": report["load_before"]}
        for row in report["rows"]
    }


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def summary(sides: Sequence[Side]) -> list[str]:
    """The comparison as a Markdown table: one row per scenario, setup and side."""
    lines = [
        "| scenario | setup | side | ratio of each run | median | within 1.3x "
        "| phase p95 (median) | ack p95 (median) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    keys = sorted({key for side in sides for run in side.runs for key in run})
    for scenario, setup in keys:
        for side in sides:
            rows = [run[(scenario, setup)] for run in side.runs if (scenario, setup) in run]
            ratios = [row.get("ratio") for row in rows]
            within = sum(r is not None and r <= FLOOR_RATIO for r in ratios)
            lines.append(
                f"| {scenario} | {setup} | {side.name} "
                f"| {', '.join(_ratio(r) for r in ratios)} | {_ratio(median(ratios))} "
                f"| {within} of {len(rows)} "
                f"| {fmt_ms(median([row.get('phase_p95') for row in rows]))} "
                f"| {fmt_ms(median([row.get('ack_p95') for row in rows]))} |"
            )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.load.compare",
        description="Alternate load benchmark runs on a base commit and on this checkout.",
    )
    parser.add_argument("--base", required=True, help="the commit (or branch, tag) to compare")
    parser.add_argument("--pairs", type=int, default=5, help="runs of each side (default 5)")
    parser.add_argument("--scenarios", default="200", help="as bench.load's (default 200)")
    parser.add_argument("--setups", default="two", help="as bench.load's (default two)")
    parser.add_argument("--repeats", type=int, default=3, help="as bench.load's (default 3)")
    parser.add_argument("--rounds", type=int, default=None, help="as bench.load's")
    parser.add_argument(
        "--run-timeout", type=float, default=1200, help="seconds one run may take (default 1200)"
    )
    args = parser.parse_args(argv)
    if args.pairs < 1:
        parser.error("--pairs must be at least 1")
    options = [
        "--scenarios",
        args.scenarios,
        "--setups",
        args.setups,
        "--repeats",
        str(args.repeats),
        *(["--rounds", str(args.rounds)] if args.rounds else []),
    ]
    with worktree(args.base) as base_path:
        sides = [Side(f"base {args.base}", base_path), Side("this checkout", REPO_ROOT)]
        for pair in range(1, args.pairs + 1):
            for side in sides:
                rows = run_once(side.path, options, args.run_timeout)
                side.runs.append(rows)
                for (scenario, setup), row in sorted(rows.items()):
                    print(
                        f"pair {pair}, {side.name}: {scenario} / {setup}: "
                        f"ratio {_ratio(row.get('ratio'))}, "
                        f"phase {fmt_ms(row.get('phase_p95'))}, "
                        f"floor {fmt_ms(row.get('floor_p95'))}, "
                        f"ack p95 {fmt_ms(row.get('ack_p95'))}, "
                        f"lost {row.get('lost_max')}, load {row['load'].split(',')[0]}",
                        flush=True,
                    )
    print()
    print("\n".join(summary(sides)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
