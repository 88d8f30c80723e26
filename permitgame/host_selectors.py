"""Reads for the instructor: which games a user may run, their seats as the console shows them.

Here: ``game_for_host`` (the ownership check every console view and the host socket go
through: the owner or staff, else an error), ``host_games``, ``host_presets``,
``console_seats`` (each seat with its presence: connected, idle, gone, or a
bot seat) and ``same_scenario_games`` (the instructor's other classes of the same scenario, for
the debrief). Not here: writes (``services``), the debrief's computations (``debrief``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from permitgame import clock, selectors
from permitgame.errors import NotYourGame
from permitgame.models import MOVE_ACTIONS, Actor, Game, Move, SavedPreset, Status
from permitgame.templating import Record
from sim_core import Role

NOT_YOUR_GAME = "Game {code} belongs to another instructor."

#: What the console says about a seat's player.
PRESENCE_LABELS = {
    "connected": "connected",
    "idle": "idle (timed out)",
    "gone": "gone (a bot stands in)",
    "bot": "bot seat",
}

#: Scenario keys that do not make two classes play a different game.
_NOT_THE_GAME = ("name", "description", "seed")


def may_host(user: Any, game: Game) -> bool:
    """Return whether ``user`` may see and run ``game``: its owner, or staff."""
    if user is None or not getattr(user, "is_authenticated", False) or not user.is_active:
        return False
    return bool(user.is_staff) or game.owner_id == user.pk


def game_for_host(user: Any, code: str) -> Game:
    """Return the game with join code ``code`` if ``user`` may run it.

    Raises:
        UnknownGame: no such game (404).
        NotYourGame: the game exists but belongs to another instructor (403).
    """
    game = selectors.game_by_code(code)
    if not may_host(user, game):
        raise NotYourGame(NOT_YOUR_GAME.format(code=game.code))
    return game


def host_games(user: Any) -> list[Game]:
    """Return the games ``user`` may run, newest first: their own, or every game for staff."""
    games = Game.objects.select_related("owner").order_by("-created_at")
    if not user.is_staff:
        games = games.filter(owner=user)
    return list(games)


def host_presets(user: Any) -> list[SavedPreset]:
    """Return ``user``'s saved presets by name."""
    return list(SavedPreset.objects.filter(owner=user).order_by("name"))


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsoleSeat(Record):
    """One seat as the instructor's console lists it: who plays it, present, acted, how fast.

    ``presence``: ``connected`` (a live socket), ``idle`` (a live socket, but the player let
    their last move time out to the default), ``gone`` (a player with no live socket: a bot
    stands in at the next deadline) or ``bot`` (nobody has joined this seat).
    """

    seat_id: int
    player_id: int
    label: str
    role: str
    nickname: str
    has_player: bool
    kind: str
    controller: str
    standing_in: bool
    handed_to_bot: bool
    fallback_strategy: str
    connected: bool
    presence: str
    presence_label: str
    last_seen: dt.datetime | None
    acted: bool
    acted_by: str | None
    latency_ms: int | None
    #: "name version" of a declared program; "" for a student or a bot.
    program: str = ""


def console_seats(game: Game) -> tuple[ConsoleSeat, ...]:
    """Return every seat of ``game`` with who plays it, its presence and whether it has acted."""
    connected = selectors.connected_seat_ids(game, clock.now())
    acted = {
        m.seat_id: m
        for m in Move.objects.filter(
            game=game, round_no=game.round_no, phase=game.phase, action__in=list(MOVE_ACTIONS)
        )
    }
    seats = sorted(game.seats.all(), key=lambda s: (s.role != Role.LAB, s.lab_index or 0))
    players = {s.pk for s in seats if s.has_player}
    last_actor: dict[int, str] = {}
    for seat_id, actor in (
        Move.objects.filter(game=game, seat_id__in=list(players), action__in=list(MOVE_ACTIONS))
        .order_by("id")
        .values_list("seat_id", "actor")
    ):
        if seat_id is not None:
            last_actor[seat_id] = actor  # the latest wins
    rows = []
    for s in seats:
        if s.pk not in players:
            presence = "bot"
        elif s.pk not in connected:
            presence = "gone"
        elif last_actor.get(s.pk) == Actor.DEFAULT:
            presence = "idle"
        else:
            presence = "connected"
        move = acted.get(s.pk)
        rows.append(
            ConsoleSeat(
                seat_id=s.pk,
                player_id=s.player_id,
                label=selectors.seat_label(s),
                role=s.role,
                nickname=s.nickname,
                has_player=s.pk in players,
                kind=s.kind,
                controller=s.controller,
                standing_in=s.standing_in,
                handed_to_bot=s.handed_to_bot,
                fallback_strategy=s.fallback_strategy,
                connected=s.pk in connected,
                presence=presence,
                presence_label=PRESENCE_LABELS[presence],
                last_seen=s.last_seen,
                acted=move is not None,
                acted_by=move.actor if move is not None else None,
                latency_ms=move.latency_ms if move is not None else None,
                program=selectors.program_label(s),
            )
        )
    return tuple(rows)


def scenario_fingerprint(scenario: dict[str, Any]) -> dict[str, Any]:
    """Return the scenario without what does not change the game (name, description, seed)."""
    return {key: value for key, value in scenario.items() if key not in _NOT_THE_GAME}


def same_scenario_games(game: Game) -> list[Game]:
    """Return the owner's finished games of the same scenario as ``game`` (itself included).

    Same scenario: every scenario key equal except name, description and seed. Oldest first.
    """
    if game.owner_id is None:
        return [game] if game.status == Status.FINISHED else []
    fingerprint = scenario_fingerprint(game.scenario)
    candidates = Game.objects.filter(owner_id=game.owner_id, status=Status.FINISHED).order_by(
        "created_at"
    )
    return [
        other
        for other in candidates
        if other.pk == game.pk or scenario_fingerprint(other.scenario) == fingerprint
    ]
