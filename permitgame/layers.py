"""The in-memory channel layer of one process (``make run``), without its silent losses.

Channels' ``InMemoryChannelLayer`` (4.3) has two habits that a room of hundreds of sockets in
one process meets (bench/load/FINDINGS.md):

- Every ``send``'s receive and every ``group_send`` walks every channel's queue and every
  group's members to drop expired messages (``_clean_expired``): with a room's sockets each in
  three groups, an event's group send per seat costs O(N) each, O(N^2) per event (15 % of a
  200-player Daphne's samples in the profile). Here the sweep runs at most once per
  ``CLEAN_SECONDS``: messages still expire (a little later), memory stays bounded.
- A channel with an expired message is removed from **every group**: a socket that did not
  read its queue for ``expiry`` seconds (busy with a slow command under load) then silently
  hears nothing more for the rest of the game, while it stays open. Here the expired messages
  are dropped but the channel keeps its groups (as channels-redis does): the next event or
  progress beacon shows the socket the gap, and it asks for a snapshot. Group membership is
  ended by the consumers themselves (``group_discard`` on disconnect) and by ``group_expiry``.

A message refused because a channel is full is dropped, as before; every send that drops one
is counted (``dropped``) and logged once a second at most, so a loss under load shows up in the
server's log as well as in the client's seq numbers.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from channels.exceptions import ChannelFull
from channels.layers import InMemoryChannelLayer

logger = logging.getLogger(__name__)

#: Seconds between two sweeps of expired messages and group memberships.
CLEAN_SECONDS = 1.0


class InMemoryLayer(InMemoryChannelLayer):  # type: ignore[misc]
    """``InMemoryChannelLayer`` with a periodic expiry sweep that never drops group members."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._cleaned = -float("inf")
        self.dropped = 0
        self._logged = -float("inf")

    def _clean_expired(self) -> None:
        now = time.monotonic()
        if now - self._cleaned < CLEAN_SECONDS:
            return
        self._cleaned = now
        wall = time.time()
        for channel, queue in list(self.channels.items()):
            expired = 0
            while not queue.empty() and queue._queue[0][0] < wall:
                queue.get_nowait()
                expired += 1
            if expired:
                self._note_dropped(expired, f"{expired} expired on {channel}")
                if queue.empty():  # nobody waits on a queue that held messages
                    self.channels.pop(channel, None)
        timeout = int(wall) - self.group_expiry
        for channels in self.groups.values():
            for name, joined in list(channels.items()):
                if joined and joined < timeout:
                    channels.pop(name, None)

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        assert isinstance(message, dict), "Message is not a dict"
        self.require_valid_group_name(group)
        self._clean_expired()
        # Each channel's send puts the message at once (no await inside), so the members are
        # served in order without a task each.
        for channel in list(self.groups.get(group, {})):
            try:
                await self.send(channel, message)
            except ChannelFull:
                self._note_dropped(1, f"channel {channel} full")

    def _note_dropped(self, count: int, what: str) -> None:
        self.dropped += count
        now = time.monotonic()
        if now - self._logged >= 1.0:
            self._logged = now
            logger.warning("channel layer dropped messages (%s; %s in all)", what, self.dropped)
