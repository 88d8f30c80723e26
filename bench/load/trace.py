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
Above them, ``summary`` cuts each change's way into parts (``PARTS``: from the server's change
to the publish, to the send, to the hubs' hand-out, through it, to the last client) and gives
each part's median and slowest over the repeat's phase changes.

The steps (``STEPS``): the batch of moves (``record``) and, inside it, the game's lock, the
catch-up on what another process wrote (``catch-up``), the resolve, the phase machine
(``phases``: a round settled there writes its record), and once committed a settled round added
to the ledger (``ledger``) and the rows carried on to the new version (``carry``); the event's
publish and, inside it, the game's screens and the send to the hubs; each hub's hand-out to its
sockets; and the pages' answers to their moves, rendered together (``answers``).
"""

from __future__ import annotations

import functools
import gc
import inspect
import itertools
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


def _describe_answers(result: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    return f"{len(result)} pages" if isinstance(result, dict) else ""


#: (module, attribute, step name, what the line says of the call): the steps traced, each a
#: function the game's code calls through its module (so replacing it there traces every call).
STEPS: tuple[tuple[str, str, str, Callable[..., str] | None], ...] = (
    ("permitgame.services", "round_submit_moves", "record", _describe_moves),
    ("permitgame.services", "_lock", "lock", None),
    ("permitgame.bridge", "_caught_up", "catch-up", _describe_catch_up),
    ("permitgame.bridge", "position_of", "resolve", None),
    ("permitgame.services", "_save_moves", "save", None),
    ("permitgame.services", "_drive", "phases", None),
    ("permitgame.services", "_commit", "game saved", None),
    ("permitgame.bridge", "advance_rows", "carry", None),
    ("permitgame.selectors", "keep_settled", "ledger", None),
    ("permitgame.broadcast", "publish", "publish", _describe_publish),
    ("permitgame.selectors", "game_by_pk", "game read", None),
    ("permitgame.selectors", "game_screens", "screens", None),
    ("permitgame.selectors", "sockets_seen", "who is online", None),
    ("permitgame.selectors", "_build_room", "room", None),
    ("permitgame.ledger", "read", "ledger read", None),
    ("permitgame.realtime", "send", "send", _describe_send),
    ("permitgame.hub", "Hub.deliver", "hand-out", _describe_hand_out),
    ("permitgame.broadcast", "own_html_many", "answers", _describe_answers),
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
    gc.callbacks.append(_collections(writer))


#: A pause of the cyclic collector traced as a step (``gc``) if it took at least this long.
GC_TRACED_SECONDS = 0.001


def _collections(writer: _Writer) -> Callable[[str, dict[str, int]], None]:
    """A ``gc.callbacks`` hook writing each collection that paused the process noticeably."""
    began: list[float] = []

    def hook(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            began[:] = [time.time()]
        elif began and time.time() - began[0] >= GC_TRACED_SECONDS:
            writer.write(
                began[0], "gc", f"generation {info['generation']}, {info['collected']} freed"
            )

    return hook


def read(folder: Path) -> list[Step]:
    """Every step the servers wrote to ``folder``, by the time it began."""
    steps = [
        Step.parse(line)
        for path in sorted(folder.glob("trace-*.log"))
        for line in path.read_text().splitlines()
        if line.strip()
    ]
    return sorted(steps, key=lambda step: (step.began, -step.ended))


#: The parts of a phase change's way (``Change.segments``), in order; the last is the whole.
PARTS = (
    "change -> publish",
    "publish -> send",
    "send -> hand-out",
    "hand-out",
    "hand-out -> last client",
    "change -> last client",
)


@dataclass(frozen=True)
class Change:
    """One phase change as the clients saw it, with the servers' steps on its way."""

    title: str
    sent: float  # the phase's last move left its client (the timeline's 0)
    changed: float | None  # the server's change (``started``)
    first: float  # the change reached its first client
    last: float  # ... and its last
    steps: tuple[Step, ...]  # the steps that began from ``sent`` - 5 ms to ``last``

    def segments(self) -> dict[str, float] | None:
        """The change's way in parts (seconds), if its publish, send and hand-outs were seen.

        From the server's change to the publish (the batch's saving, commit and answers), to
        the send (the game's screens and each seat's part), to the first hub's hand-out (the
        layer), to the last hub's end of it, to the last client (the sockets' writes and the
        clients' reading).
        """
        if self.changed is None:
            return None
        publish = next(
            (s for s in self.steps if s.name == "publish" and s.began >= self.changed), None
        )
        if publish is None:
            return None
        send = next(
            (
                s
                for s in self.steps
                if s.name == "send"
                and s.detail == "RoomEvent"
                and s.began >= publish.began
                and (s.pid, s.thread) == (publish.pid, publish.thread)
            ),
            None,
        )
        if send is None:
            return None
        hand_outs: dict[int, Step] = {}
        for s in self.steps:
            if s.name == "hand-out" and s.detail.startswith("hub.event") and s.began >= send.began:
                hand_outs.setdefault(s.pid, s)
        if not hand_outs:
            return None
        out_began = min(s.began for s in hand_outs.values())
        out_ended = max(s.ended for s in hand_outs.values())
        moments = (self.changed, publish.began, send.began, out_began, out_ended, self.last)
        parts = [after - before for before, after in itertools.pairwise(moments)]
        return dict(zip(PARTS, [*parts, self.last - self.changed], strict=True))


def changes(runs: Iterable[Any], steps: list[Step]) -> list[Change]:
    """Each phase change of ``runs`` (``clients.GameRun``) that the benchmark times, in order."""
    out: list[Change] = []
    for run in runs:
        for change in run.phase_changes():
            zero, last = max(change.sent), max(change.got)
            # From 5 ms before the last move (a batch may have taken it from its queue), but
            # not before this phase reached its first client (the previous change).
            opened = run.noted("received", ("phase", change.round_no, change.phase))
            start = max(zero - 0.005, min(opened, default=zero - 0.005))
            out.append(
                Change(
                    title=f"round {change.round_no}, {change.phase} -> {change.following} "
                    f"({run.code})",
                    sent=zero,
                    changed=min(change.began) if change.began else None,
                    first=min(change.got),
                    last=last,
                    steps=tuple(s for s in steps if start <= s.began <= last),
                )
            )
    return out


def timelines(found: list[Change], names: dict[int, str]) -> list[str]:
    """The phase changes with the steps of their way, as text (times in ms from ``sent``).

    ``names``: server process id -> its name. Each step is indented by how many listed steps
    of the same thread it lies within.
    """
    lines: list[str] = []
    for change in found:

        def ms(moment: float, zero: float = change.sent) -> str:
            return f"{1000 * (moment - zero):+.1f}"

        said = f"the server's change {ms(change.changed)} ms; " if change.changed else ""
        lines.append(
            f"{change.title}: last move sent at 0 ms; {said}"
            f"first client {ms(change.first)} ms, last {ms(change.last)} ms"
        )
        for step in change.steps:
            depth = sum(
                1
                for other in change.steps
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


def summary(found: list[Change]) -> list[str]:
    """The median and the slowest of each part of the phase changes' way (``segments``)."""
    parts = [s for s in (change.segments() for change in found) if s is not None]
    if not parts:
        return []
    lines = [f"the way of {len(parts)} phase changes (median, slowest):"]
    for name in parts[0]:
        values = sorted(part[name] for part in parts)
        median = (
            values[len(values) // 2]
            if len(values) % 2
            else sum(values[len(values) // 2 - 1 : len(values) // 2 + 1]) / 2
        )
        lines.append(f"  {name:24} {1000 * median:5.1f} ms  {1000 * values[-1]:5.1f} ms")
    return lines
