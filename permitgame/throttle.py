"""Rate limits on what can be guessed: game codes, rejoin codes, joins and the instructor login.

Counters live in Django's cache (``settings.CACHES``): in memory for one process, Redis when
``REDIS_URL`` is set, so every Daphne process counts into the same counters. Each limit counts in
fixed windows of ``seconds`` (a key per window, expiring with it) and refuses once ``count`` is
reached, until the window ends; the refusal says when (``Retry-After``).

What is counted, and why a class never meets a limit (docs/protocol.md, "Rate limits"):

- ``code_miss`` (per client address): game codes that name no game, on the join page and form,
  the join and rejoin calls and ``GET /api/games/<code>``. Only misses count: a room of 200
  students behind one NAT address who type the right code are never counted; a few typos are.
- ``join`` (per client address and game): every join request to a game that exists, so one
  address may still seat a whole class in a minute.
- ``rejoin_miss`` (per client address) and ``rejoin_miss_game`` (per game, any address): rejoin
  codes that name no seat. A correct rejoin code is not counted.
- ``login`` (per client address): POSTs to the instructor login. django-axes also locks a
  username out at one address after ``AXES_FAILURE_LIMIT`` wrong passwords (settings.py).

Limits can be changed with ``settings.RATE_LIMITS`` (name -> (count, seconds)).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, TypeVar

from django.conf import settings
from django.core.cache import cache
from django.http.response import HttpResponseBase

from permitgame.errors import RateLimited


@dataclass(frozen=True, slots=True)
class Limit:
    """At most ``count`` events per ``seconds`` window."""

    count: int
    seconds: int


#: The default limits: generous for a class, hopeless for guessing (see the module's docstring).
LIMITS: dict[str, Limit] = {
    "code_miss": Limit(30, 60),
    "join": Limit(2000, 60),
    "rejoin_miss": Limit(10, 60),
    "rejoin_miss_game": Limit(30, 60),
    "login": Limit(30, 300),
}
TOO_MANY = "Too many attempts from this network; try again in {seconds} s."
TOO_MANY_REJOINS = "Too many wrong rejoin codes for this game; try again in {seconds} s."


def client_address(request: Any) -> str:
    """Return the client's address: Daphne's (behind a proxy, ``--proxy-headers`` sets it)."""
    return str(request.META.get("REMOTE_ADDR") or "unknown")


def limit_of(name: str) -> Limit:
    """Return the limit in force for ``name`` (``settings.RATE_LIMITS`` overrides)."""
    override = getattr(settings, "RATE_LIMITS", {}).get(name)
    if override is not None:
        return Limit(int(override[0]), int(override[1]))
    return LIMITS[name]


def _window(limit: Limit, now: float) -> tuple[int, int]:
    """Return the current window's number and the seconds until it ends (at least 1)."""
    number = int(now // limit.seconds)
    return number, max(1, math.ceil((number + 1) * limit.seconds - now))


def _key(name: str, ident: str, number: int) -> str:
    return f"rate:{name}:{ident}:{number}"


def check(name: str, ident: str, *, message: str = TOO_MANY) -> None:
    """Raise ``RateLimited`` if ``ident`` has used up limit ``name`` in this window."""
    limit = limit_of(name)
    number, left = _window(limit, time.time())
    if int(cache.get(_key(name, ident, number), 0)) >= limit.count:
        raise RateLimited(message.format(seconds=left), retry_after=left)


def hit(name: str, ident: str) -> None:
    """Count one event of ``ident`` against limit ``name``."""
    limit = limit_of(name)
    number, _left = _window(limit, time.time())
    key = _key(name, ident, number)
    if not cache.add(key, 1, timeout=limit.seconds + 1):
        try:
            cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.set(key, 1, timeout=limit.seconds + 1)


def take(name: str, ident: str, *, message: str = TOO_MANY) -> None:
    """Check limit ``name`` for ``ident``, then count this event (every attempt counts)."""
    check(name, ident, message=message)
    hit(name, ident)


Response = TypeVar("Response", bound=HttpResponseBase)


def retry_after(response: Response, error: RateLimited) -> Response:
    """Set ``Retry-After`` on ``response`` and return it."""
    response["Retry-After"] = str(error.retry_after)
    return response
