"""``python -m sim_core study FILE``: run a study from the command line (docs/studies.md).

Here: ``add_parser`` (the sub-command's arguments), ``command_study`` and ``StudyBar`` (a
progress bar on standard error, on a terminal only: points done, rate, time left). Not here:
running the study (``engine.py``).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from sim_core.study.document import load_study
from sim_core.study.engine import lab_rounds, run_study


class StudyBar:
    """A one-line progress bar on standard error, drawn only when it is a terminal."""

    WIDTH = 24

    def __init__(self, label: str) -> None:
        """Prepare a bar headed ``label``; nothing is drawn until the first update."""
        self.label = label
        self.enabled = sys.stderr.isatty()
        self.started = time.monotonic()
        self.first: int | None = None
        self.width = 0

    def __call__(self, done: int, total: int) -> None:
        """Redraw the bar at ``done`` of ``total`` points."""
        if self.first is None:  # points already written (a resume) do not count in the rate
            self.first, self.started = done, time.monotonic()
        if not self.enabled:
            return
        elapsed = time.monotonic() - self.started
        rate = (done - self.first) / elapsed if elapsed > 0 else 0.0
        left = (total - done) / rate if rate > 0 else None
        filled = self.WIDTH * done // max(total, 1)
        bar = "#" * filled + "." * (self.WIDTH - filled)
        eta = "--" if left is None else _duration(left)
        line = f"\r{self.label} [{bar}] {done}/{total} points, {rate:.1f}/s, {eta} left"
        self.width = max(self.width, len(line))
        sys.stderr.write(line.ljust(self.width))
        sys.stderr.flush()

    def close(self) -> None:
        """Erase the bar."""
        if self.enabled and self.width:
            sys.stderr.write("\r" + " " * self.width + "\r")
            sys.stderr.flush()


def _duration(seconds: float) -> str:
    seconds = int(seconds + 0.5)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m"


def command_study(args: argparse.Namespace) -> int:
    """Run a study file; print where its outputs are and, for a sobol design, the indices."""
    study = load_study(args.file)
    bar = StudyBar(f"study {study.name}")
    try:
        result = run_study(
            study,
            workers=args.workers,
            scheduler=args.scheduler,
            resume=args.resume,
            output=args.out,
            progress=bar,
        )
    finally:
        bar.close()
    points = len(study.unit_points())
    print(
        f"{study.name}: {points} points x {study.replicates} replicates "
        f"({lab_rounds(study, points):.3g} lab-rounds) in {result.chunks} chunks, "
        f"{len(result.computed)} computed in {result.seconds:.1f} s"
    )
    written = [result.results_path, result.directory / "study.json"]
    if not args.no_plot:
        from sim_core.study.analysis import write_analysis

        paths, text = write_analysis(result)
        if text:
            print(text)
        written += paths
    for path in written:
        print(f"wrote {path}")
    return 0


def add_parser(commands: Any, positive_int: Any) -> None:
    """Add the ``study`` sub-command to the command line's sub-parsers."""
    study = commands.add_parser(
        "study",
        help="a parameter study of any scenario keys, on this machine or a Dask cluster",
    )
    study.add_argument("file", help="the study document (JSON, docs/studies.md)")
    study.add_argument(
        "--workers", type=positive_int, default=1, help="local processes (default 1)"
    )
    study.add_argument(
        "--scheduler",
        metavar="tcp://HOST:PORT",
        help="run the chunks on this Dask scheduler's workers",
    )
    study.add_argument(
        "--resume",
        action="store_true",
        help="finish a study already started in the output directory (only missing chunks)",
    )
    study.add_argument("--out", metavar="DIR", help="output directory (default: the study's)")
    study.add_argument(
        "--no-plot",
        action="store_true",
        help="skip the analysis and figures (and never load matplotlib)",
    )
    study.set_defaults(handler=command_study)
