"""One socket's stream in seq order: events and progress as the client must see them.

An event reaches a seat's socket as one channel message stamped with the game's ``seq``
(``broadcast.publish``); the room's coalesced ``progress`` reaches it the same way (the hub),
stamped with the seq of the last event committed when it was built. Both are sent by whichever
process or thread committed the change, so they can arrive out of order: the progress built
just after event 7 committed may overtake event 7 itself (another process's clock loop read the
game while the committing one was still rendering), and event 8 from one process may overtake
event 7 from another. Forwarded as they come, each such race would look like a lost event to
the client, which then asks for a whole snapshot (a false gap: nothing was lost, but the room
pays a snapshot per socket, and under load more snapshots mean more races).

``SeqStream`` puts them back in order. An event that is the next number is forwarded, with any
held events that follow it; one further ahead is held; a progress ahead of the last event
forwarded is held until that event arrives (then forwarded right after it). What is held for
longer than ``grace`` seconds was really lost on the way (a full channel, an expired message):
it is forwarded then, and the gap it shows makes the client ask for a snapshot (``sync``), as
docs/protocol.md, "Delivery", says. So nothing is lost silently, and a gap is reported only when
an event did not arrive within the grace period.

Pure bookkeeping, no I/O: the consumer calls it and forwards what it returns, and arms a timer
for ``deadline()``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

#: Seconds an event or progress ahead of the stream waits for the events before it. Races
#: between processes take milliseconds, but under a room's load the process that committed an
#: event may take seconds to render and send it while the next event, committed by another
#: thread or process, is already sent (the benchmark's 20 rooms of 30 on one loaded process
#: showed 3 s too short). A real loss is rare (a full or expired channel, a Redis subscription
#: that dropped) and costs this delay.
GRACE_SECONDS = 10.0

Message = dict[str, Any]


@dataclass
class SeqStream:
    """The seq bookkeeping of one socket (see the module's docstring).

    Attributes:
        seq: the last event forwarded, or held by the snapshot sent (the client's seq).
        progress_version: the game version of the last progress forwarded (older ones are
            dropped: the latest state wins).
    """

    grace: float = field(default_factory=lambda: GRACE_SECONDS)
    clock: Callable[[], float] = time.monotonic
    seq: int = 0
    progress_version: int = 0
    snapshots: int = 0  # how many snapshots were sent (forwarding stops at one)
    _events: dict[int, Message] = field(default_factory=dict)
    _progress: Message | None = None
    _since: float | None = None  # when the oldest thing held was first held

    @property
    def holding(self) -> bool:
        """Whether something waits for an event that has not arrived."""
        return bool(self._events) or self._progress is not None

    def deadline(self) -> float | None:
        """The ``clock()`` time at which what is held is forwarded anyway (None: nothing held)."""
        return None if self._since is None else self._since + self.grace

    def snapshot(self, seq: int) -> None:
        """The socket sent a snapshot holding every event up to ``seq``."""
        self.snapshots += 1
        self.seq = max(self.seq, seq)
        self._events = {s: m for s, m in self._events.items() if s > self.seq}
        if self._progress is not None and int(self._progress["seq"]) <= self.seq:
            self._progress = None
        self._settle()

    def event(self, message: Message) -> list[tuple[Message, bool]]:
        """Take an event; return what to forward now, each with whether it shows a gap."""
        seq = int(message["seq"])
        if seq <= self.seq:
            return []  # the snapshot sent held it, or a repeat
        self._events.setdefault(seq, message)
        out = self._drain()
        if self.holding and self._since is None:
            self._since = self.clock()
        return out

    def progress(self, message: Message) -> list[tuple[Message, bool]]:
        """Take a progress message; return what to forward now."""
        seq, version = int(message["seq"]), int(message["version"])
        if seq < self.seq or version < self.progress_version:
            return []  # old news
        if seq == self.seq:
            held = self._progress
            if held is not None and int(held["version"]) > version:
                return []
            self._progress = None
            self.progress_version = version
            self._settle()
            return [(message, False)]
        if self._progress is None or int(self._progress["version"]) <= version:
            self._progress = message  # the latest wins
        if self._since is None:
            self._since = self.clock()
        return []

    def expire(self, now: float | None = None) -> list[tuple[Message, bool]]:
        """Forward what was held past its grace period (the events it waited for were lost)."""
        deadline = self.deadline()
        moment = self.clock() if now is None else now
        if deadline is None or moment < deadline:
            return []
        out: list[tuple[Message, bool]] = []
        for seq in sorted(self._events):
            gap = seq > self.seq + 1
            self.seq = seq
            out.append((self._events.pop(seq), gap))
        progress, self._progress = self._progress, None
        if (
            progress is not None
            and int(progress["seq"]) >= self.seq
            and int(progress["version"]) >= self.progress_version
        ):
            self.progress_version = int(progress["version"])
            out.append((progress, int(progress["seq"]) > self.seq))
        self._since = None
        return out

    def _drain(self) -> list[tuple[Message, bool]]:
        out: list[tuple[Message, bool]] = []
        while self.seq + 1 in self._events:
            self.seq += 1
            out.append((self._events.pop(self.seq), False))
        self._events = {s: m for s, m in self._events.items() if s > self.seq}
        progress = self._progress
        if progress is not None and int(progress["seq"]) <= self.seq:
            self._progress = None
            if int(progress["seq"]) == self.seq and int(progress["version"]) >= (
                self.progress_version
            ):
                self.progress_version = int(progress["version"])
                out.append((progress, False))
        self._settle()
        return out

    def _settle(self) -> None:
        if not self.holding:
            self._since = None
