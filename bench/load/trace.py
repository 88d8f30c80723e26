"""Where a phase change's time goes, step by step through the servers (``--trace``).

With ``--trace`` the game servers run ``bench.load.trace_asgi:application``: the game's own
application, with the steps of a phase change's way wrapped (``install``) so that each server
process writes one line per step it ran (when it began, when it ended, its thread) to a file of
its own. The server's code is unchanged; untraced runs run none of this. After each repeat,
``timelines`` puts those lines beside what the clients saw, phase change by phase change, from
the phase's last move leaving its client (0 ms) to the change reaching the last client, and the
benchmark writes them to ``artifacts/bench-load-trace/``:

    round 2, bidding -> compliance (2APCXG): last move sent at 0 ms; the server's change
    +13.9 ms; first client +34.5 ms, last +44.3 ms
         +2.5   16.9 ms  game-1  moves_0    record (99 moves)
         +2.6    8.3 ms  game-1  moves_0      lock
        +10.9    2.9 ms  game-1  moves_0      catch-up (101 moves in all)
        +14.8    0.6 ms  game-1  moves_0      resolve
        +19.4   17.3 ms  game-1  moves_0    publish (event 6: waiting, market, phase)
        ...
        +32.7    1.7 ms  game-2  MainThread hand-out (hub.event, 101 sockets)

(when each step began, how long it took, the process and thread, the step, what it says).

The steps (``STEPS``): the batch of moves (``record``) and, inside it, the game's lock, the
catch-up on what another process wrote (``catch-up``), the resolve; the event's publish and,
inside it, the game's screens and the send to the hubs; each hub's hand-out to its sockets.
"""

from __future__ import annotations

import functools
import inspect
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: The variable that tells a traced server where to write (a folder).
FOLDER_VARIABLE = "BENCH_TRACE_DIR"
#: The application a traced game server runs.
APPLICATION = "bench.load.trace_asgi:application"


@dataclass(frozen=True)
class Step:
    """One traced step of one call: when it began and ended, where, and what it says."""

    began: float
    ended: float
    pid: int
    thread: str
    name: str
    detail: str

    @classmethod
    def parse(cls, line: str) -> Step:
        began, ended, pid, thread, name, detail = line.rstrip("\n").split("\t")
        return cls(float(began), float(ended), int(pid), thread, name, detail)


def _describe_moves(result: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    if not isinstance(result, list):
        return ""
    return f"{len(result)} move{'' if len(result) == 1 else 's'}"


def _describe_catch_up(result: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    return "seats changed: read again" if result is None else f"{len(result.moves)} moves in all"


def _describe_publish(result: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    kinds = ", ".join(kind for kind, _ in kwargs.get("events", ()))
    return f"event {kwargs.get('seq')}: {kinds}"


def _describe_send(result: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    return type(args[0]).__name__ if args else ""


def _describe_hand_out(result: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    message = args[1] if len(args) > 1 else {}
    return f"{message.get('type')}, {result} sockets"


#: (module, attribute, step name, what the line says of the call): the steps traced, each a
#: function the game's code calls through its module (so replacing it there traces every call).
STEPS: tuple[tuple[str, str, str, Callable[..., str] | None], ...] = (
    ("permitgame.services", "round_submit_moves", "record", _describe_moves),
    ("permitgame.services", "_lock", "lock", None),
    ("permitgame.bridge", "_caught_up", "catch-up", _describe_catch_up),
    ("permitgame.bridge", "position_of", "resolve", None),
    ("permitgame.broadcast", "publish", "publish", _describe_publish),
    ("permitgame.selectors", "game_screens", "screens", None),
    ("permitgame.realtime", "send", "send", _describe_send),
    ("permitgame.hub", "Hub.deliver", "hand-out", _describe_hand_out),
)


class _Writer:
    """One file per process, a line per step, written as the step ends."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / f"trace-{os.getpid()}.log"
        self.lock = threading.Lock()
        self.file = self.path.open("a", buffering=1)

    def write(self, began: float, name: str, detail: str) -> None:
        ended = time.time()
        thread = threading.current_thread().name.replace("\t", " ")
        with self.lock:
            self.file.write(
                f"{began:.6f}\t{ended:.6f}\t{os.getpid()}\t{thread}\t{name}\t{detail}\n"
            )


def _traced(
    function: Callable[..., Any], name: str, say: Callable[..., str] | None, writer: _Writer
) -> Callable[..., Any]:
    def detail(result: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        try:
            return say(result, args, kwargs) if say is not None else ""
        except Exception as error:  # a description must never break the server
            return f"({type(error).__name__})"

    if inspect.iscoroutinefunction(function):

        @functools.wraps(function)
        async def traced_async(*args: Any, **kwargs: Any) -> Any:
            began = time.time()
            result = None
            try:
                result = await function(*args, **kwargs)
                return result
            finally:
                writer.write(began, name, detail(result, args, kwargs))

        return traced_async

    @functools.wraps(function)
    def traced(*args: Any, **kwargs: Any) -> Any:
        began = time.time()
        result = None
        try:
            result = function(*args, **kwargs)
            return result
        finally:
            writer.write(began, name, detail(result, args, kwargs))

    return traced


def install(folder: Path) -> None:
    """Trace ``STEPS`` in this process (a game server), writing to ``folder``."""
    import importlib

    folder.mkdir(parents=True, exist_ok=True)
    writer = _Writer(folder)
    for module_name, attribute, name, say in STEPS:
        owner: Any = importlib.import_module(module_name)
        *path, last = attribute.split(".")
        for part in path:
            owner = getattr(owner, part)
        setattr(owner, last, _traced(getattr(owner, last), name, say, writer))


def read(folder: Path) -> list[Step]:
    """Every step the servers wrote to ``folder``, by the time it began."""
    steps = [
        Step.parse(line)
        for path in sorted(folder.glob("trace-*.log"))
        for line in path.read_text().splitlines()
        if line.strip()
    ]
    return sorted(steps, key=lambda step: (step.began, -step.ended))


def timelines(runs: Iterable[Any], steps: list[Step], names: dict[int, str]) -> list[str]:
    """Each phase change of ``runs`` (``clients.GameRun``) with the steps of its way, as text.

    ``names``: server process id -> its name. Times in ms from the phase's last move leaving
    its client; a step is listed if it began between 5 ms before that and the last client's
    arrival (but not before the phase reached its first client), indented by how many listed
    steps of the same thread it lies within.
    """
    from bench.load.clients import _NEXT

    lines: list[str] = []
    for run in runs:
        for round_no in range(1, run.rounds + 1):
            for phase, following in _NEXT.items():
                key = (round_no, phase)
                sent = [p.sent[key] for p in run.players if key in p.sent]
                got = [
                    p.received[("phase", round_no, following)]
                    for p in run.players
                    if ("phase", round_no, following) in p.received
                ]
                began = [
                    p.started[(round_no, following)]
                    for p in run.players
                    if (round_no, following) in p.started
                ]
                if not sent or not got:
                    continue
                zero = max(sent)
                # From 5 ms before the last move (a batch may have taken it from its queue),
                # but not before this phase reached its first client (the previous change).
                opened = [
                    p.received[("phase", round_no, phase)]
                    for p in run.players
                    if ("phase", round_no, phase) in p.received
                ]
                start = max(zero - 0.005, min(opened, default=zero - 0.005))

                def ms(moment: float, zero: float = zero) -> str:
                    return f"{1000 * (moment - zero):+.1f}"

                change = f"the server's change {ms(min(began))} ms; " if began else ""
                lines.append(
                    f"round {round_no}, {phase} -> {following} ({run.code}): last move sent at "
                    f"0 ms; {change}first client {ms(min(got))} ms, last {ms(max(got))} ms"
                )
                shown = [s for s in steps if start <= s.began <= max(got)]
                for step in shown:
                    depth = sum(
                        1
                        for other in shown
                        if other is not step
                        and (other.pid, other.thread) == (step.pid, step.thread)
                        and other.began <= step.began
                        and step.ended <= other.ended
                    )
                    where = names.get(step.pid, str(step.pid))
                    lines.append(
                        f"  {ms(step.began):>7} {1000 * (step.ended - step.began):6.1f} ms  "
                        f"{where:7}  {step.thread[:10]:10}  {'  ' * depth}{step.name}"
                        + (f" ({step.detail})" if step.detail else "")
                    )
                lines.append("")
    return lines
