"""Sample a game server with py-spy while a game is played (``--profile``), and sum the samples.

py-spy (a sampling profiler, installed separately: ``.venv/bin/pip install py-spy``) reads the
Daphne process from outside, so the server runs unchanged; samples are written as collapsed
stacks to ``artifacts/`` and summed per function (inclusive: a function counts in every sample
where it is on the stack) to show where a server's time goes.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import signal
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from tests.harness import artifact_path

#: Frames worth naming: the project's own code and the layers a message passes through.
INTERESTING = re.compile(
    r"permitgame/|sim_core/|channels/|channels_redis/|django/db/|daphne/|json/"
)


def py_spy() -> str | None:
    return shutil.which("py-spy") or (
        str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "py-spy")
        if (Path(__file__).resolve().parents[2] / ".venv" / "bin" / "py-spy").exists()
        else None
    )


@contextlib.contextmanager
def record(pid: int, name: str) -> Iterator[Path | None]:
    """Sample process ``pid`` (GIL-holding, non-blocking) until the block ends."""
    binary = py_spy()
    if binary is None:
        yield None
        return
    out = artifact_path(f"bench-load-{name}.txt")
    process = subprocess.Popen(
        [binary, *f"record -p {pid} -r 50 -f raw -g --nonblocking".split(), "-o", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    try:
        yield out
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def summary(path: Path, top: int = 25) -> list[tuple[str, float]]:
    """Return (function, share of samples) for the most present interesting functions."""
    inclusive: Counter[str] = Counter()
    total = 0
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not count_text.isdigit():
                continue
            count = int(count_text)
            total += count
            seen = set()
            for frame in stack.split(";"):
                if INTERESTING.search(frame):
                    name = re.sub(r":\d+\)$", ")", frame.strip())
                    if name not in seen:
                        seen.add(name)
                        inclusive[name] += count
    if not total:
        return []
    return [(name, count / total) for name, count in inclusive.most_common(top)]
