"""The only translation between database rows and sim_core values.

Here: the scenario and ``GameSetup`` of a game, ``GameState`` to and from JSON, the logged moves
of a round as ``RoundInputs``, ``Position`` (a round resolved as far as its moves allow, via the
one resolver) and the JSON cache of a settled round. Not here: deciding anything, writing rows
(``services``) or shaping what a screen shows (``selectors``).
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Generic, NamedTuple, Protocol, TypeVar

import numpy as np
from django.db.models import QuerySet

from permitgame import prepared
from permitgame.models import MOVE_ACTIONS, Action, Controller, Game, Move, RoundRecord, Seat
from sim_core import (
    GameSetup,
    GameState,
    Role,
    RoundInputs,
    RoundProgress,
    Scenario,
    initial_state,
    make_setup,
    parse_scenario,
    resolve_round,
)

#: Setups kept per process (a few games at once in a classroom; a lecture hall's many rooms).
SETUP_CACHE_SIZE = 256

_setups: OrderedDict[tuple[Any, ...], GameSetup] = OrderedDict()
_setups_lock = threading.Lock()


def _setup_key(game: Game) -> tuple[Any, ...]:
    # The scenario may change in the lobby (N, the governor), so it is part of the key: the
    # document as stored, in a canonical form (cheap next to parsing and drawing a setup).
    document = json.dumps(game.scenario, sort_keys=True, separators=(",", ":"))
    return (game.pk, game.seed, game.human_governor, document)


def setup_of(game: Game) -> GameSetup:
    """Return the per-game draws of ``game`` (pure: same seed and scenario, same setup).

    Parsed and drawn once per process and kept (``SETUP_CACHE_SIZE`` games, least recently used
    dropped): a setup is an immutable value of the game's seed, scenario and governor, which
    are the key, so an edit of the scenario in the lobby gets a new one.
    """
    key = _setup_key(game)
    with _setups_lock:
        setup = _setups.get(key)
        if setup is not None:
            _setups.move_to_end(key)
            return setup
    scenario = parse_scenario(game.scenario)
    setup = make_setup(scenario, seed=game.seed, human_governor=game.human_governor)
    with _setups_lock:
        _setups[key] = setup
        while len(_setups) > SETUP_CACHE_SIZE:
            _setups.popitem(last=False)
    return setup


def scenario_of(game: Game) -> Scenario:
    """Return the game's frozen scenario (parsed once per process, with its setup)."""
    return setup_of(game).scenario


def state_to_json(state: GameState) -> dict[str, Any]:
    """Return a GameState as a JSON-able dict."""
    return {
        "round_no": state.round_no,
        "wealth": [float(w) for w in state.wealth],
        "announced_high_prob": float(state.announced_high_prob),
        "caught_total": state.caught_total,
        "violations_total": state.violations_total,
    }


def state_from_json(data: Mapping[str, Any]) -> GameState:
    """Return the GameState stored by ``state_to_json``."""
    wealth = np.array(data["wealth"], dtype=np.float64)
    wealth.setflags(write=False)
    return GameState(
        round_no=int(data["round_no"]),
        wealth=wealth,
        announced_high_prob=float(data["announced_high_prob"]),
        caught_total=int(data["caught_total"]),
        violations_total=int(data["violations_total"]),
    )


def state_at(game: Game, setup: GameSetup, round_no: int) -> GameState:
    """Return the state at the start of ``round_no``: the previous record's, or the initial one."""
    if round_no <= 1:
        return initial_state(setup)
    return state_from_json(_NEXT_STATE.get(game.pk, round_no - 1))


#: The state a settled round leaves for the next (read at every new round, by the clock too).
_NEXT_STATE: prepared.Prepared[dict[str, Any]] = prepared.Prepared(
    lambda game_id, round_no: RoundRecord.objects.filter(
        game_id=game_id, round_no=round_no
    ).values_list("next_state", flat=True),
    int,
    int,
)


# The reads of a game's rows (every batch of moves after another process's, every progress of a
# room whose version moved): compiled once (``permitgame.prepared``).
def _seats_of(game_id: int) -> QuerySet[Seat]:
    """A game's seats, in id order (the order ``Rows.seats`` keeps)."""
    return Seat.objects.filter(game_id=game_id).order_by("id")


_SEATS: prepared.Prepared[Seat] = prepared.Prepared(_seats_of, int)


def _round_log(game_id: int, round_no: int) -> QuerySet[Move]:
    """A round's moves (bids, asks, choices, audits), in the log's order: its inputs."""
    return Move.objects.filter(
        game_id=game_id, round_no=round_no, action__in=MOVE_ACTIONS
    ).order_by("id")


#: The round's moves logged after entry ``after`` (0: all of them), without their seats.
_MOVES_AFTER: prepared.Prepared[Move] = prepared.Prepared(
    lambda game_id, round_no, after: (
        _round_log(game_id, round_no).filter(pk__gt=after).defer("created_at", "latency_ms")
    ),
    int,
    int,
    int,
)


def _moves_after(game: Game, round_no: int, after: int, by_id: Mapping[int, Seat]) -> list[Move]:
    """The round's moves logged after entry ``after``, each with its seat taken from ``by_id``."""
    moves = _MOVES_AFTER.all(game.pk, round_no, after)
    for move in moves:
        seat = by_id.get(move.seat_id) if move.seat_id is not None else None
        if seat is not None:
            move.seat = seat
    return moves


def round_moves(game: Game, round_no: int, *, seats: Sequence[Seat] | None = None) -> list[Move]:
    """Return the moves logged for ``round_no`` (bids, choices, audits), oldest first.

    With the game's ``seats`` given, each move's seat is taken from them (no join).
    """
    if seats is None:
        return list(_round_log(game.pk, round_no).select_related("seat"))
    return _moves_after(game, round_no, 0, {seat.pk: seat for seat in seats})


class RowsKey(NamedTuple):
    """Which state of a game ``Rows`` are of (the code tells apart two games that had the same
    id: a database restored, or tests rolled back)."""

    game: int
    code: str
    version: int
    round_no: int

    def same_game(self, other: tuple[Any, ...]) -> bool:
        """Whether ``other`` is a key of the same game (its id and code)."""
        return self[:2] == other[:2]


@dataclass(slots=True)
class Rows:
    """A game's seats and its current round's logged moves, as of one version of the game.

    Every change of a game's seats or moves is made under the game's lock and bumps its version
    (``services._commit``), so the rows of a version never change: each process reads them once
    per version (``rows_of``) and a batch of moves that changes nothing else carries them on to
    its new version (``advance_rows``) instead of every reader building them again. The objects
    are shared by the readers of that version: read them, never change them outside a service's
    transaction (``forget_rows`` after one that failed).

    Attributes:
        key: the game's state the rows are of (``RowsKey``).
        seats: every seat of the game, by id.
        moves: the round's bids, asks, choices and audits, oldest first, each with its seat.
        state: the state at the start of the round, once read.
        position: the round resolved with these seats and moves, if the batch that carried
            the rows on resolved it (the screens of the version then resolve nothing).
    """

    key: RowsKey
    seats: list[Seat]
    moves: list[Move]
    state: GameState | None = None
    position: Position | None = None


class Keyed(Protocol):
    """A value kept for one state of a game: ``key`` says which."""

    @property
    def key(self) -> tuple[Any, ...]: ...


K = TypeVar("K", bound=Keyed)


class GameCache(Generic[K]):
    """What this process keeps of each game for one state of it (``Rows``, ``selectors``' rooms).

    Game id -> the value last kept, with its ``key`` (the game's version and whatever else tells
    its states apart); at most ``size`` games, the least recently used dropped. Thread-safe: the
    sockets' database thread, HTTP requests and the clock read and keep at once.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[int, K] = OrderedDict()
        self._lock = threading.Lock()

    def latest(self, game_id: int) -> K | None:
        """Return the value last kept for the game, of whatever state."""
        with self._lock:
            value = self._items.get(game_id)
            if value is not None:
                self._items.move_to_end(game_id)
            return value

    def keep(self, game_id: int, value: K) -> None:
        with self._lock:
            self._items[game_id] = value
            self._items.move_to_end(game_id)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def drop(self, game_id: int) -> None:
        with self._lock:
            self._items.pop(game_id, None)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __contains__(self, game_id: object) -> bool:
        return game_id in self._items


#: Games whose rows are kept per process, at most this many (least recently used dropped).
ROWS_CACHE_SIZE = 256
_rows: GameCache[Rows] = GameCache(ROWS_CACHE_SIZE)


def _rows_key(game: Game) -> RowsKey:
    return RowsKey(game.pk, game.code, game.version, game.round_no)


def rows_of(game: Game, *, keep: bool = True) -> Rows:
    """Return the seats and round moves of ``game`` at its version, read once per process.

    ``keep``: store what was read for the version's other readers. Only a caller whose reads
    are of that version may keep them: one holding the game's lock, or one that checks the
    version did not move while it read (``selectors``, which then calls ``keep_rows``).
    """
    key = _rows_key(game)
    kept = _rows.latest(game.pk)
    if kept is not None and kept.key == key:
        return kept
    rows = None
    if (
        kept is not None
        and kept.key.same_game(key)
        and 0 < key.round_no in (kept.key.round_no, kept.key.round_no + 1)
    ):
        rows = _caught_up(game, kept, key)
    if rows is None:
        seats = _SEATS.all(game.pk)
        moves = round_moves(game, max(game.round_no, 1), seats=seats) if game.round_no else []
        rows = Rows(key=key, seats=seats, moves=moves)
    if keep:
        keep_rows(rows)
    return rows


#: A seat's columns that the rows compare to tell whether it changed (``last_seen`` moves with
#: every heartbeat, outside the game's version, and nothing read from the rows uses it).
_SEAT_COLUMNS = tuple(f.attname for f in Seat._meta.concrete_fields if f.attname != "last_seen")
_SEAT_ROWS: prepared.Prepared[tuple[Any, ...]] = prepared.Prepared(
    lambda game_id: _seats_of(game_id).values_list(*_SEAT_COLUMNS),
    int,
)


def _caught_up(game: Game, kept: Rows, key: RowsKey) -> Rows | None:
    """Return ``kept`` (an older version of the same round, or of the round before) brought up
    to ``game``'s version.

    Another process changed the game since (its batch of moves, with several Daphnes, or the
    deadline that began the next round): the round's moves logged since are read (a log only
    grows, and a game's moves are written under its lock, so in id order); of a round begun
    since, all of them (as a rule none yet). The seats are kept if no commit since ``kept``'s
    version changed one (``Game.seats_version``); else they are compared column by column,
    which costs a fraction of building them. None if a seat changed: then everything is read
    again.
    """
    if game.seats_version > kept.key.version and not _same_seats(game, kept.seats):
        return None
    by_id = {seat.pk: seat for seat in kept.seats}
    if key.round_no != kept.key.round_no:  # the next round: its start state is read when asked
        return Rows(key=key, seats=kept.seats, moves=_moves_after(game, key.round_no, 0, by_id))
    last = max((move.pk for move in kept.moves), default=0)
    added = _moves_after(game, key.round_no, last, by_id)
    return Rows(key=key, seats=kept.seats, moves=[*kept.moves, *added], state=kept.state)


def _same_seats(game: Game, seats: Sequence[Seat]) -> bool:
    """Return whether the game's seats in the database have the columns of ``seats``."""
    columns = _SEAT_ROWS.all(game.pk)
    return len(columns) == len(seats) and all(
        row == tuple(getattr(seat, name) for name in _SEAT_COLUMNS)
        for row, seat in zip(columns, seats, strict=True)
    )


def holds_rows(game: Game) -> bool:
    """Return whether this process holds the rows of ``game``'s version (nothing to read)."""
    kept = _rows.latest(game.pk)
    return kept is not None and kept.key == _rows_key(game)


def keep_rows(rows: Rows) -> None:
    """Store ``rows`` as its game's rows in this process (see ``rows_of``)."""
    _rows.keep(rows.key.game, rows)


def advance_rows(
    rows: Rows, game: Game, moves: Sequence[Move], position: Position | None = None
) -> None:
    """Carry ``rows`` on to ``game``'s new version: the same seats, ``moves`` logged after them.

    For a committed transaction (a batch of moves, a deadline) whose seats did not change
    hands: the next reader of the game in this process reads nothing again. ``position``: the
    round as the transaction left it resolved (its moves, the bots' moves logged from that
    resolve). Into the next round only with it: the new round's rows are the same seats, the
    moves logged in it (none yet, as a rule) and its start state, the one that resolve began
    from.
    """
    key = _rows_key(game)
    if not key.same_game(rows.key):
        return
    resolved_now = position is not None and position.progress.round_no == key.round_no
    if key.round_no == rows.key.round_no:
        earlier, state = rows.moves, rows.state
    elif key.round_no == rows.key.round_no + 1 and position is not None and resolved_now:
        earlier, state = [], position.state
    else:
        return
    logged = [*earlier, *round_entries(moves, key.round_no)]
    resolved = replace(position, moves=logged) if position is not None and resolved_now else None
    keep_rows(Rows(key=key, seats=rows.seats, moves=logged, state=state, position=resolved))


def round_entries(entries: Sequence[Move], round_no: int) -> list[Move]:
    """Return the moves among log ``entries`` that a resolve of ``round_no`` takes (in order)."""
    return [m for m in entries if m.action in MOVE_ACTIONS and m.round_no == round_no]


def forget_rows(game_id: int) -> None:
    """Drop the rows kept for a game (a transaction that may have touched them failed)."""
    _rows.drop(game_id)


def state_of(game: Game, setup: GameSetup, rows: Rows) -> GameState:
    """Return the state at the start of the current round, read once per round and process."""
    if rows.state is None:
        rows.state = state_at(game, setup, max(game.round_no, 1))
    return rows.state


def round_inputs(
    moves: Iterable[Move], *, human_labs: frozenset[int], human_governor: bool
) -> RoundInputs:
    """Return the logged moves as sim_core inputs (0-based lab indexes throughout)."""
    plays = (
        (move.action, _lab_of(move) if move.action in _LABS_MOVES else None, move.payload)
        for move in moves
    )
    return _inputs(plays, human_labs=human_labs, human_governor=human_governor)


def logged_inputs(game: Game, round_no: int, labs: Mapping[int, int]) -> RoundInputs:
    """Return a settled round's logged moves as sim_core inputs, read as plain rows.

    ``round_inputs(round_moves(...))`` with no human seat (every logged move is given, the
    governor's audit included; none is left to a bot), without a model and its seat made per
    move: a settled round of a hall's 1,000 labs is some 1,500 moves, 13 ms read so and 5 ms
    as rows. ``labs``: seat id -> lab index, of every lab of the game.
    """
    rows = _round_log(game.pk, round_no).values_list("action", "seat_id", "payload")
    plays = (
        (action, labs[seat_id] if action in _LABS_MOVES else None, payload)
        for action, seat_id, payload in rows
    )
    return _inputs(plays, human_labs=frozenset(), human_governor=False)


#: The moves a lab makes (the others are the governor's audits).
_LABS_MOVES = frozenset({Action.BID, Action.ASK, Action.DECIDE})


def _inputs(
    plays: Iterable[tuple[str, int | None, Mapping[str, Any]]],
    *,
    human_labs: frozenset[int],
    human_governor: bool,
) -> RoundInputs:
    """Return sim_core inputs from logged moves as (action, the lab's index or None, payload)."""
    bids: dict[int, float] = {}
    asks: dict[int, float | None] = {}
    runs: dict[int, bool] = {}
    audits: frozenset[int] | None = None
    for action, lab, payload in plays:
        if action == Action.BID:
            assert lab is not None
            bids[lab] = float(payload["amount"])
        elif action == Action.ASK:  # MODEL.md §3b: an ask, or None to keep
            assert lab is not None
            amount = payload["amount"]
            asks[lab] = None if amount is None else float(amount)
        elif action == Action.DECIDE:
            assert lab is not None
            runs[lab] = bool(payload["run"])
        elif action == Action.AUDIT:
            audits = frozenset(int(lab) for lab in payload["labs"])
    return RoundInputs(
        bids=bids,
        asks=asks,
        runs=runs,
        audits=audits,
        human_labs=human_labs,
        human_governor=human_governor and audits is None,
    )


def _lab_of(move: Move) -> int:
    assert move.seat is not None and move.seat.lab_index is not None
    return move.seat.lab_index


def human_labs_of(seats: Iterable[Seat]) -> frozenset[int]:
    """Return the labs a human plays in the current phase (their moves must be given)."""
    return frozenset(
        seat.lab_index
        for seat in seats
        if seat.role == Role.LAB
        and seat.controller == Controller.HUMAN
        and seat.lab_index is not None
    )


def governor_is_human(seats: Iterable[Seat]) -> bool:
    """Return whether a human plays the governor in the current phase."""
    return any(seat.role == Role.GOVERNOR and seat.controller == Controller.HUMAN for seat in seats)


@dataclass(frozen=True, slots=True, kw_only=True)
class Position:
    """The current round of a game resolved as far as its logged moves allow.

    Attributes:
        setup: the per-game draws.
        state: the state at the start of the round.
        moves: the round's logged moves.
        seats: every seat of the game, labs by index then the governor.
        progress: sim_core's progress for the round with the current controllers.
    """

    setup: GameSetup
    state: GameState
    moves: Sequence[Move]
    seats: Sequence[Seat]
    progress: RoundProgress

    def lab_seats(self) -> dict[int, Seat]:
        """Return lab index -> seat."""
        return {s.lab_index: s for s in self.seats if s.lab_index is not None}

    def governor_seat(self) -> Seat | None:
        """Return the governor's seat."""
        return next((s for s in self.seats if s.role == Role.GOVERNOR), None)


def position_of(
    game: Game,
    *,
    seats: Sequence[Seat] | None = None,
    moves: Sequence[Move] | None = None,
    state: GameState | None = None,
) -> Position:
    """Resolve ``game``'s current round from its setup, stored state and logged moves.

    ``seats``, ``moves`` and ``state`` are read from the database unless given (a caller that
    holds them already saves the queries).

    Raises:
        ActionError: a logged (or given) move the rules do not allow.
    """
    setup = setup_of(game)
    round_no = max(game.round_no, 1)
    if state is None:
        state = state_at(game, setup, round_no)
    all_seats = list(seats) if seats is not None else _SEATS.all(game.pk)
    if moves is None:
        moves = round_moves(game, round_no, seats=all_seats)
    inputs = round_inputs(
        moves, human_labs=human_labs_of(all_seats), human_governor=governor_is_human(all_seats)
    )
    progress = resolve_round(setup, state, inputs)
    return Position(setup=setup, state=state, moves=moves, seats=all_seats, progress=progress)


def _floats(array: Any) -> list[float]:
    return [float(x) for x in array]


def _bools(array: Any) -> list[bool]:
    return [bool(x) for x in array]


def record_fields(progress: RoundProgress, state: GameState) -> dict[str, Any]:
    """Return the RoundRecord fields of a settled round (JSON-able)."""
    market, settlement, metrics = progress.market, progress.settlement, progress.metrics
    assert market is not None and settlement is not None and metrics is not None
    assert progress.next_state is not None and progress.bids is not None
    assert progress.runs is not None and progress.signals is not None
    assert progress.audited is not None and progress.announced_high_prob is not None
    return {
        "round_no": progress.round_no,
        "state": state_to_json(state),
        "next_state": state_to_json(progress.next_state),
        "values": _floats(progress.values),
        "bids": _floats(progress.bids),
        "won": _bools(market.won),
        "price": None if market.price is None else float(market.price),  # §3b: no trade
        "announced_high_prob": float(progress.announced_high_prob),
        "runs": _bools(progress.runs),
        "signals": _bools(progress.signals),
        "audited": _bools(progress.audited),
        "caught": _bools(settlement.caught),
        "payoffs": _floats(settlement.payoffs),
        "wealth": _floats(settlement.wealth),
        "metrics": metrics.as_dict(),
        "trade": trade_to_json(progress),
    }


def trade_to_json(progress: RoundProgress) -> dict[str, Any] | None:
    """Return the call market of a round with granted permits (MODEL.md §3b), or None.

    ``asks`` has null for a holder that kept its permit and for every lab without one.
    """
    trade = progress.trade
    if trade is None or progress.asks is None:
        return None
    return {
        "granted": _bools(trade.granted),
        "asks": [float(a) if np.isfinite(a) else None for a in progress.asks],
        "bought": _bools(trade.bought),
        "sold": _bools(trade.sold),
    }
