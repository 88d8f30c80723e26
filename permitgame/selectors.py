"""Reads for screens, messages and exports: who may see what, as plain frozen values.

One call, ``game_screens``, resolves the current round once and returns every audience's view:
``PublicView`` (what everyone may see: phase, deadline, who is awaited, players, the announced
rules, the market, each round's aggregate results, the final standings), ``GovernorView`` (the
signals and permit status of every lab, never a value or a choice, and the audit results) and
one ``LabView`` per lab (that lab's own value, moves and results). Templates and JSON messages
are built from these and nothing else, so hidden information can only leak through a view that
names it. Numbers come from sim_core (theory and the resolver); nothing is computed here that
sim_core does not define. The settled rounds (a lab's history, scores, places) are read through
``ledger``, as the debrief and the exports read them. Not here: writes (``services``),
rendering (``broadcast``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping, Sequence, Set
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

import numpy as np
from django.db.models import F

from permitgame import bridge, clock, ledger, prepared
from permitgame.errors import UnknownGame, UnknownPlayer

# The screens show a lab's settled rounds and the labs' places as the ledger reads them.
from permitgame.ledger import LabRound as LabRound
from permitgame.ledger import Standing as Standing
from permitgame.models import (
    Action,
    Connection,
    Controller,
    Game,
    Move,
    RoundRecord,
    Seat,
    Status,
    lab_label,
)
from permitgame.realtime import CONNECTION_LEASE_SECONDS
from permitgame.templating import Record
from sim_core import (
    AuditScore,
    Phase,
    Role,
    Scenario,
    expected_penalty,
    optimal_high_prob,
    perceived_p_eff,
    signal_posterior,
    unpermitted_value,
)

# The look-ups every join, socket and coalesced progress makes (``permitgame.prepared``).
_GAME_BY_PK: prepared.Prepared[Game] = prepared.Prepared(lambda pk: Game.objects.filter(pk=pk), int)
_GAME_BY_CODE: prepared.Prepared[Game] = prepared.Prepared(
    lambda code: Game.objects.filter(code=code).order_by("pk")[:1], str
)
_SEAT_BY_CODE_AND_TOKEN: prepared.Prepared[Seat] = prepared.Prepared(
    lambda code, token: Seat.objects.filter(game__code=code, token=token).order_by("pk")[:1],
    str,
    str,
)
_VERSION_AND_SEQ: prepared.Prepared[tuple[int, int]] = prepared.Prepared(
    lambda pk: Game.objects.filter(pk=pk).values_list("version", "seq"), int
)
#: The seats that joined after log entry ``after``, each with its join's entry (``join_pk``).
_JOINED_AFTER: prepared.Prepared[Any] = prepared.Prepared(
    lambda game_id, after: (
        Seat.objects.filter(game_id=game_id, move__action=Action.JOIN, move__pk__gt=after)
        .annotate(join_pk=F("move__pk"))
        .order_by("join_pk")
    ),
    int,
    int,
)
_SOCKETS_SEEN: prepared.Prepared[tuple[int, bool]] = prepared.Prepared(
    lambda game_id, since: Connection.objects.filter(
        seat__game_id=game_id, last_seen__gte=since
    ).values_list("seat_id", "html"),
    int,
    dt.datetime,
)

#: Session key of a browser's seats: {join code: token} (set by the join page).
SESSION_TOKENS = "permitgame_tokens"

UNKNOWN_GAME = "There is no game with the code {code!r}; check the code on the board."
UNKNOWN_TOKEN = "This player token does not belong to game {code}; join the game again."
UNKNOWN_REJOIN = "No player of game {code} has the rejoin code {rejoin_code!r}."


# ------------------------------------------------------------------------------ lookups


def game_by_code(code: str) -> Game:
    """Return the game with join code ``code`` (case-insensitive).

    Raises:
        UnknownGame: no such game.
    """
    game = _GAME_BY_CODE.first(code.strip().upper())
    if game is None:
        raise UnknownGame(UNKNOWN_GAME.format(code=code))
    return game


def game_by_pk(game_id: int) -> Game | None:
    """Return the game with id ``game_id`` as it is now, or None (one compiled query)."""
    return _GAME_BY_PK.first(game_id)


def seat_by_token(game: Game, token: str) -> Seat:
    """Return the seat of ``game`` held with ``token``.

    Raises:
        UnknownPlayer: the token is not one of this game's.
    """
    seat = Seat.objects.filter(game=game, token=token).order_by("pk").first() if token else None
    if seat is None:
        raise UnknownPlayer(UNKNOWN_TOKEN.format(code=game.code))
    return seat


def seat_by_code_and_token(code: str, token: str) -> Seat:
    """Return the seat held with ``token`` in the game with join code ``code`` (one query).

    Raises:
        UnknownGame: no such game.
        UnknownPlayer: the token is not one of this game's.
    """
    seat = _SEAT_BY_CODE_AND_TOKEN.first(code.strip().upper(), token) if token else None
    if seat is None:
        return seat_by_token(game_by_code(code), token)  # says which of the two is unknown
    return seat


def seat_from_session(game: Game, session: Any) -> Seat:
    """Return the seat this browser session holds in ``game``.

    Raises:
        UnknownPlayer: the session holds no seat of this game.
    """
    tokens = session.get(SESSION_TOKENS, {}) if session is not None else {}
    return seat_by_token(game, tokens.get(game.code, ""))


def seat_by_rejoin_code(game: Game, rejoin_code: str) -> Seat:
    """Return the seat of ``game`` with that rejoin code (to move to another device).

    Raises:
        UnknownPlayer: no seat has it.
    """
    code = rejoin_code.strip().upper()
    seat = Seat.objects.filter(game=game, rejoin_code=code).first() if code else None
    if seat is None:
        raise UnknownPlayer(UNKNOWN_REJOIN.format(code=game.code, rejoin_code=rejoin_code))
    return seat


def seat_label(seat: Seat) -> str:
    """Return "Lab 3" or "Governor"."""
    return "Governor" if seat.role == Role.GOVERNOR else lab_label(seat.player_id)


# ------------------------------------------------------------------------------ views


@dataclass(frozen=True, slots=True, kw_only=True)
class PlayerRow(Record):
    """One seat as everyone may see it: who plays it, never what it does.

    ``open_seat``: a seat kept for a human who has not joined yet.
    """

    seat_id: int
    player_id: int
    role: str
    label: str
    nickname: str
    human: bool
    open_seat: bool
    bot_playing: bool
    connected: bool
    #: "name version" of a program that declared itself when it joined; "" for anyone else.
    program: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class RulesView(Record):
    """The rules in force as announced to the labs (MODEL.md §2, §3, §5)."""

    lab_count: int
    rounds: int
    market_type: str
    token_cap: int | None
    fixed_price: float | None
    reserve_price: float
    compute_cost: float
    racing_value: float
    endowment: float
    collateral: float
    fine: float
    reputation_penalty: float
    punishment: float
    alpha: float
    beta: float
    policy: str
    high_prob: float
    base_prob: float
    backcheck_prob: float
    p_eff: float
    max_audits: int | None
    audit_cost: float
    harm_per_violation: float
    allocation: str = "auction"  # MODEL.md §3b: "auction" or "grandfathered"
    grant: str | None = None  # "incumbents" or "lottery" under "grandfathered"


@dataclass(frozen=True, slots=True, kw_only=True)
class MarketView(Record):
    """A round's market result, public (MODEL.md §4 step 2)."""

    round_no: int
    price: float | None  # None: a round of traded permits without a trade (MODEL.md §3b)
    permits: int
    winners: tuple[int, ...]
    announced_high_prob: float
    p_eff: float
    trades: int | None = None  # MODEL.md §3b: permits traded (winners: holders after trading)


@dataclass(frozen=True, slots=True, kw_only=True)
class Headline(Record):
    """A settled round in one sentence, for the projector and the phones (public aggregates).

    ``caught_by_audit`` are the violators the governor's audits caught; ``caught_later`` the
    ones a backcheck caught. No lab is named: the headline says only what the round's public
    results say.
    """

    round_no: int
    price: float | None
    violations: int
    audits: int
    caught_by_audit: int
    caught_later: int

    @property
    def text(self) -> str:
        """Return the sentence: "Price 0.23. 3 labs ran without a permit; ..."."""
        price = "No price" if self.price is None else f"Price {self.price:.2f}"
        runners = (
            "no lab ran without a permit"
            if self.violations == 0
            else f"{self.violations} lab{'s' if self.violations != 1 else ''} ran without a permit"
        )
        audits = f"{self.audits} lab{'s' if self.audits != 1 else ''}" if self.audits else "no lab"
        caught = f"the governor audited {audits} and caught {self.caught_by_audit}"
        later = f"; {self.caught_later} more caught later" if self.caught_later else ""
        return f"{price}. {runners[0].upper()}{runners[1:]}; {caught}{later}."


def headline_of(record: RoundRecord) -> Headline:
    """Return the headline of a settled round, from its stored results."""
    metrics = record.metrics
    by_audit = sum(1 for a, c in zip(record.audited, record.caught, strict=True) if a and c)
    return Headline(
        round_no=record.round_no,
        price=record.price,
        violations=int(metrics["violations"]),
        audits=int(metrics["audits"]),
        caught_by_audit=by_audit,
        caught_later=int(metrics["caught"]) - by_audit,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class RoomCounts(Record):
    """A big room's players as counts (a lab's snapshot there carries these, not the list)."""

    seats: int
    joined: int
    connected: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PublicView(Record):
    """What every socket of a game may see."""

    game_id: int
    code: str
    title: str
    status: str
    round_no: int
    rounds: int
    phase: str
    #: When the phase began, as the server recorded the change (``Game.phase_started_at``).
    started: dt.datetime | None
    deadline: dt.datetime | None
    seconds_left: float | None
    paused_remaining: float | None
    version: int
    seq: int
    waiting_for: tuple[int, ...]
    players: tuple[PlayerRow, ...]
    rules: RulesView
    market: MarketView | None
    results: tuple[dict[str, Any], ...]
    standings: tuple[Standing, ...]
    governor_score: float | None
    headline: Headline | None = None
    #: Whether the players may be shown which seats bots play (``Game.bots_shown``). When not,
    #: what the players are sent leaves out nicknames, presence, who plays a seat and which
    #: labs the game waits for (broadcast.py and the players' templates read this flag); the
    #: instructor's console keeps it all.
    bots_disclosed: bool = True
    #: Set instead of ``players`` (then empty) for a lab's snapshot of a room bigger than the
    #: list limit (``seat_screen``): N sockets connecting are not sent N lists of N.
    counts: RoomCounts | None = None

    def waiting_shown(self) -> tuple[int, ...]:
        """Whom the phase waits for, as the players may see it.

        With the bots hidden the labs are left out: a bot never keeps a phase waiting, so a lab
        waited for is a person's. The governor (0) stays: whether a person governs is part of
        the announced rules (``policy`` "announced", MODEL.md §5).
        """
        if self.bots_disclosed:
            return self.waiting_for
        return tuple(player for player in self.waiting_for if player == 0)

    def waiting_labels(self) -> list[str]:
        """Return "Lab 2 (Ana)" for each seat the game waits for."""
        by_id = {row.player_id: row for row in self.players}
        return [
            f"{by_id[i].label} ({by_id[i].nickname})" if by_id[i].nickname else by_id[i].label
            for i in self.waiting_for
        ]


@dataclass(slots=True, kw_only=True)
class LabView(Record):
    """What one lab may see privately: its value, its moves, its results.

    ``expected_penalty`` is the model's E = r·p_eff·P with the seat's risk profile r (what its
    fallback bot perceives). A human's risk attitude is their own, so the players' pages explain
    the run/idle trade-off at face value (r = 1): ``gain_from_running`` is u + rho (net value
    plus racing value), ``face_expected_penalty`` is p_eff·P, and ``face_unpermitted_value`` is
    d = u + rho − p_eff·P, what running without a permit is worth on average;
    ``running_pays`` says whether d > 0 (MODEL.md §5: a lab runs iff d > 0).
    ``rank`` is the lab's place among the labs by score so far (None before a round has
    settled), sent live only when the instructor turned on the game's ``live_standings`` (a
    place that moves tells a lab that others' payoffs moved), else only once the game is over;
    the others' scores are public only at game over (docs/model-decisions.md). ``final_rank``
    is the same place once the game is over.
    ``wealth`` is the wealth the round started with (the bid cap); ``current_wealth`` is the
    wealth after the round's settlement once it has settled, else the same.

    Not frozen, unlike the other views, and never changed once built: a frozen dataclass's
    ``__init__`` sets each of these 40-odd fields through ``object.__setattr__``, and every lab's
    view is built again at every event of its room, which made the views of a hall of 200 labs
    twice as slow to build (bench/RESULTS.md, "After c105dba").
    """

    seat_id: int
    player_id: int
    nickname: str
    rejoin_code: str
    round_no: int
    phase: str
    value: float | None
    net_value: float | None
    risk_profile: float
    wealth: float
    current_wealth: float
    score: float
    p_eff: float
    punishment: float
    expected_penalty: float
    gain_from_running: float | None
    face_expected_penalty: float
    face_unpermitted_value: float | None
    running_pays: bool | None
    rank: int | None
    final_rank: int | None
    bid: float | None
    bid_by: str | None
    won: bool | None
    price: float | None
    run: bool | None
    run_by: str | None
    # MODEL.md §3b (None under an auction, or until known): granted a permit this round; its
    # ask (None: none yet, or kept) and who made it; bought or sold one once the market cleared.
    granted: bool | None = None
    ask: float | None = None
    kept: bool | None = None
    ask_by: str | None = None
    bought: bool | None = None
    sold: bool | None = None
    trades: int | None = None
    owes_move: bool
    bot_playing: bool
    handed_to_bot: bool
    history: tuple[LabRound, ...]
    coaching: str = "full"
    ask_belief: bool = False
    belief: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SignalRow(Record):
    """One lab as the governor sees it: permit status and signal (MODEL.md §6)."""

    player_id: int
    label: str
    nickname: str
    permit: bool
    signal: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditResult(Record):
    """A round's audits as the governor learns them."""

    round_no: int
    audited: tuple[int, ...]
    caught: tuple[int, ...]
    audits: int
    welfare: float


@dataclass(frozen=True, slots=True, kw_only=True)
class GovernorView(Record):
    """What the governor may see: signals and permits of every lab, and the audit results."""

    seat_id: int
    nickname: str
    rejoin_code: str
    round_no: int
    phase: str
    signals: tuple[SignalRow, ...] | None
    max_audits: int | None
    audit_cost: float
    suggested_high_prob: float | None
    audits: tuple[int, ...] | None
    audits_by: str | None
    owes_move: bool
    bot_playing: bool
    handed_to_bot: bool
    history: tuple[AuditResult, ...]
    score: float
    cockpit: Cockpit | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Cockpit(Record):
    """The governor's cockpit: what a signal says, and how its last audits compare.

    ``violation_rate`` is the share of labs without a permit that violated in the settled
    rounds (the public results), Laplace-smoothed ((violations + 1) / (labs + 2), one half
    before any round); ``posterior_signal``/``posterior_quiet`` are the chances that a lab
    without a permit is violating given a warning / no warning (sim_core's
    ``signal_posterior`` with α and β). ``last_scores``: once the game is over, the governor's
    audits of the whole game against ``optimal`` and ``none`` on the same draws (sim_core's
    ``score_audits``, summed over the rounds); empty before.
    """

    violation_rate: float
    posterior_signal: float
    posterior_quiet: float
    max_audits: int | None
    candidates: int | None
    last_round: int | None
    last_scores: tuple[AuditScore, ...]


def _cockpit(
    game: Game, scenario: Scenario, records: Sequence[RoundRecord], market: Any
) -> Cockpit:
    violations = sum(int(r.metrics["violations"]) for r in records)
    without = sum(sum(1 for won in r.won if not won) for r in records)
    rate = (violations + 1) / (without + 2)
    loud, quiet = signal_posterior(scenario.audit.alpha, scenario.audit.beta, rate)
    scores: tuple[AuditScore, ...] = ()
    if records and game.status == Status.FINISHED:
        # Only once the game is over: what another policy would have caught tells which labs
        # it audited were violating, a private choice the governor may not learn mid-game.
        scores = ledger.audit_scores(game, records)
    return Cockpit(
        violation_rate=rate,
        posterior_signal=loud,
        posterior_quiet=quiet,
        max_audits=scenario.audit.max_audits,
        candidates=None if market is None else int(sum(1 for won in market.won if not won)),
        last_round=records[-1].round_no if records else None,
        last_scores=scores,
    )


class GameScreens:
    """Every audience's view of a game at one moment (``game_screens``).

    ``public`` is built at once; each lab's view (``labs``: seat id -> view, for every lab
    seat) and the governor's are built when first read, so a reader of the public view alone
    (the progress of a room) builds no lab's screen. ``browsers``: the seats with a browser's
    socket open (read with the public view's sockets: only they are sent HTML fragments).
    """

    __slots__ = ("_game", "_governor", "_room", "browsers", "labs", "public", "records")

    def __init__(
        self, game: Game, room: _Room, public: PublicView, browsers: Set[int] = frozenset()
    ) -> None:
        """Keep the room the views are built from."""
        self._game, self._room = game, room
        self.public = public
        self.browsers = browsers
        self.records = room.records
        self.labs: Mapping[int, LabView] = _LabViews(game, room)
        self._governor: GovernorView | None = None

    @property
    def governor(self) -> GovernorView:
        """The governor's view."""
        if self._governor is None:
            self._governor = _governor_view(self._game, self._room)
        return self._governor


class _LabViews(Mapping[int, LabView]):
    """Seat id -> lab view of every lab seat, each built on first read (kept with the room)."""

    def __init__(self, game: Game, room: _Room) -> None:
        self._game, self._room = game, room
        self._seats = {seat.pk: seat for seat in room.lab_seats.values()}

    def __getitem__(self, seat_id: int) -> LabView:
        return _lab_view(self._game, self._room, self._seats[seat_id])

    def __contains__(self, seat_id: object) -> bool:  # without building the view
        return seat_id in self._seats

    def __iter__(self) -> Iterator[int]:
        return iter(self._seats)

    def __len__(self) -> int:
        return len(self._seats)


# ------------------------------------------------------------------------------ building them


def seats_and_moved(game: Game) -> tuple[list[Seat], set[int]]:
    """Return the game's seats and the ids of those that moved in the current phase.

    From the rows this process keeps for the game's version (``bridge.rows_of``: read once per
    version, carried on by the batches of moves), so a room's coalesced progress reads neither.
    """
    rows = bridge.rows_of(game, keep=False)
    moved = {
        m.seat_id
        for m in bridge.round_entries(rows.moves, game.round_no)
        if m.seat_id is not None and m.phase == game.phase
    }
    return rows.seats, moved


def sockets_open(game: Game, now: dt.datetime) -> tuple[set[int], bool]:
    """Return the seats of ``game`` with a socket open (seen within the lease); whether a page.

    The second value says whether any of those sockets is a browser's. One read: a room's
    coalesced progress renders the pages' fragments only for a browser.
    """
    connected, browsers = sockets_seen(game, now)
    return connected, bool(browsers)


def sockets_seen(game: Game, now: dt.datetime) -> tuple[set[int], set[int]]:
    """Return the seats of ``game`` with a socket open (seen within the lease); the pages'.

    The second set holds the seats with a browser's socket among them (only those are sent
    HTML fragments). One read for both.
    """
    since = now - dt.timedelta(seconds=CONNECTION_LEASE_SECONDS)
    seen = _SOCKETS_SEEN.all(game.pk, since)
    return {seat_id for seat_id, _ in seen}, {seat_id for seat_id, html in seen if html}


def connected_seat_ids(game: Game, now: dt.datetime) -> set[int]:
    """Return the ids of the seats of ``game`` with a socket seen within the lease."""
    return sockets_open(game, now)[0]


def _announced_policy(scenario: Scenario, human_governor: bool) -> str:
    return "announced" if human_governor else scenario.governor.policy


def _rules(scenario: Scenario, human_governor: bool, high_prob: float) -> RulesView:
    labs, market, audit = scenario.labs, scenario.market, scenario.audit
    policy = _announced_policy(scenario, human_governor)
    shown_high = audit.high_prob if policy in ("policy", "announced") else high_prob
    shown_base = {"optimal": 0.0, "none": 0.0}.get(policy, audit.base_prob)
    if policy == "none":
        shown_high = 0.0
    return RulesView(
        lab_count=labs.count,
        rounds=scenario.rounds,
        market_type=market.type,
        token_cap=market.token_cap,
        fixed_price=market.fixed_price if market.type == "fixed_price" else None,
        reserve_price=market.reserve_price,
        compute_cost=labs.compute_cost,
        racing_value=labs.racing_value,
        endowment=labs.endowment,
        collateral=audit.collateral,
        fine=audit.fine,
        reputation_penalty=audit.reputation_penalty,
        punishment=audit.punishment,
        alpha=audit.alpha,
        beta=audit.beta,
        policy=policy,
        high_prob=shown_high,
        base_prob=shown_base,
        backcheck_prob=audit.backcheck_prob,
        p_eff=perceived_p_eff(
            scenario, announced_high_prob=high_prob, human_governor=human_governor
        ),
        max_audits=audit.max_audits,
        audit_cost=audit.audit_cost,
        harm_per_violation=scenario.welfare.harm_per_violation,
        allocation=market.allocation,
        grant=market.grant if market.grandfathered else None,
    )


def _ask_amount(move: Move | None) -> float | None:
    """Return a logged ask's amount (None: no ask logged, or the holder kept its permit)."""
    if move is None or move.payload["amount"] is None:
        return None
    return float(move.payload["amount"])


def _ids(mask: Sequence[bool]) -> tuple[int, ...]:
    return tuple(i + 1 for i, flag in enumerate(mask) if flag)


@dataclass(slots=True, kw_only=True)
class _Room:
    """What every screen of a game is built from at one version of the game (``_room``).

    Nothing here depends on the time or on who is online: those are added per read. The views
    that depend on nothing else (each lab's, the governor's, the player rows for one set of
    connected seats) are built on first use and kept with the room.
    """

    key: tuple[Any, ...]
    seats: list[Seat]
    lab_seats: dict[int, Seat]
    governor_seat: Seat
    scenario: Scenario
    records: tuple[RoundRecord, ...]
    position: bridge.Position | None
    waiting: tuple[int, ...]
    owing: frozenset[int]  # ``waiting`` as a set: each lab's view asks whether it owes a move
    high_prob: float
    rules: RulesView
    market_view: MarketView | None
    book: ledger.Ledger
    finished: bool
    playing: bool
    governor_score: float
    scoreboard: tuple[Standing, ...]
    live_ranks: dict[int, int]
    final_ranks: dict[int, int]
    face_penalty: float
    settled_now: RoundRecord | None
    moves: dict[tuple[int, str], Move]
    beliefs: dict[int, int]
    #: Every seat by id; and the id of the last join in the log that ``seats`` hold (a lobby's
    #: room is carried on across joins from there: ``_after_joins``).
    by_id: dict[int, Seat] = field(default_factory=dict)
    last_join: int = 0
    #: The seat ids in the players' order: the labs by number, then the governor.
    order: tuple[int, ...] = ()
    joined: int = 0
    labs: dict[int, LabView] = field(default_factory=dict)
    columns: _LabColumns | None = None  # what the labs' views read (``_lab_columns``)
    governor: GovernorView | None = None
    #: The player rows for one set of online seats: (online, row of each seat id, rows in order).
    players: tuple[frozenset[int], dict[int, PlayerRow], tuple[PlayerRow, ...]] | None = None


#: The room of each game last read in this process (game id -> room), at most this many.
ROOM_CACHE_SIZE = 256
_rooms: bridge.GameCache[_Room] = bridge.GameCache(ROOM_CACHE_SIZE)


def _room_key(game: Game) -> tuple[Any, ...]:
    # Every change of a game's moves, seats or rounds is made under its lock and bumps its
    # version (services._commit); the other fields guard against a row changed without one.
    return (game.pk, game.code, game.version, game.seq, game.status, game.round_no, game.phase)


def _room(game: Game) -> _Room:
    """Return the room of ``game`` at its version: read once per version and process.

    A room is kept only if the game's version is the same after reading it as before (no
    change committed in between), so a kept room is one consistent state of the game. A room
    built without reading anything (the version's rows held in this process, carried on by
    the batch that made the version, and its settled rounds' ledger too) is that version's
    by construction: it is kept without asking the database again (an event's publish, on
    the way of every phase change).
    """
    key = _room_key(game)
    room = _rooms.latest(game.pk)
    if room is not None and room.key == key:
        return room
    rows: bridge.Rows | None = None
    carried = None
    if room is not None and _joins_only(room.key, key):
        # A lobby filling up: each join is a new version. Read the seats that joined since
        # (O(joins)), not the whole room again: a hall of N joining costs O(N), not O(N^2).
        carried = _after_joins(game, room, key)
    if carried is not None:
        room = carried
    else:
        with prepared.counting_queries() as reads:
            rows = bridge.rows_of(game, keep=False)
            kept = room
            room = _build_room(game, key, rows)
        # The same seats (rows carried on by a batch in which no seat changed): their rows as
        # everyone sees them are the same too, and a hall's are not built again.
        if (
            kept is not None
            and kept.key[:2] == key[:2]
            and kept.seats is room.seats
            and kept.playing == room.playing
        ):
            room.players = kept.players
        if not reads.count:  # nothing read: the version of ``game`` and nothing else
            _rooms.keep(game.pk, room)
            return room
    current = _VERSION_AND_SEQ.first(game.pk)
    # A room carried on across joins holds every join up to its ``last_join`` and none after
    # (each join's seat is read with it), so it is kept even if more joins came meanwhile: the
    # next reader reads those. An event (``seq``) in between, and it is not.
    joins_since = carried is not None and current is not None and current[1] == game.seq
    if current == (game.version, game.seq) or joins_since:
        if rows is not None:
            bridge.keep_rows(rows)
        _rooms.keep(game.pk, room)
    return room


def build_room(game_id: int) -> None:
    """Build this process's room of the game as it stands now, unless it is kept already.

    A room is built with the ledger of the game's settled rounds: after another process settled
    one, this reads it (``broadcast.room_later``) before a phase change has to.
    """
    game = game_by_pk(game_id)
    if game is not None:
        _room(game)


def _joins_only(kept: tuple[Any, ...], key: tuple[Any, ...]) -> bool:
    """Whether the only changes from room ``kept`` to ``key`` can be joins (and rejoins).

    In the lobby every other change of the seats or the settings is an event (``seq``); a join
    or a rejoin only bumps the version (``services._commit``).
    """
    return (
        kept[:2] == key[:2] and kept[3:] == key[3:] and kept[2] < key[2] and key[4] == Status.LOBBY
    )


def _after_joins(game: Game, room: _Room, key: tuple[Any, ...]) -> _Room | None:
    """Return ``room`` carried on to ``key``: the seats that joined since read again.

    The joins are found in the log (each join writes one entry, under the game's lock, so the
    entries after ``room.last_join`` are the joins the room does not hold). Views built from a
    seat that changed are dropped; the others are kept, and so are the player rows of the seats
    that did not change. None if a seat is not the room's (then the room is read again).
    """
    joined = _JOINED_AFTER.all(game.pk, room.last_join)  # a seat that joined twice: its latest
    fresh = {s.pk: s for s in joined}
    if any(pk not in room.by_id for pk in fresh):  # a seat the room does not know
        return None
    by_id = {**room.by_id, **fresh}
    seats = [by_id[s.pk] for s in room.seats] if fresh else room.seats
    lab_seats = {s.lab_index: s for s in fresh.values() if s.lab_index is not None}
    governor_seat = fresh.get(room.governor_seat.pk, room.governor_seat)
    labs = {pk: view for pk, view in room.labs.items() if pk not in fresh}
    players = room.players
    if players is not None and fresh:
        online, by_seat, _ = players
        by_seat = {**by_seat}
        for seat in fresh.values():
            by_seat[seat.pk] = player_row(seat, connected=seat.pk in online, playing=room.playing)
        players = (online, by_seat, _ordered_rows(room.order, by_seat))
    return replace(
        room,
        key=key,
        seats=seats,
        by_id=by_id,
        lab_seats={**room.lab_seats, **lab_seats},
        governor_seat=governor_seat,
        last_join=joined[-1].join_pk if joined else room.last_join,
        joined=room.joined
        + sum(s.has_player and not room.by_id[pk].has_player for pk, s in fresh.items()),
        labs=labs,
        governor=None if room.governor_seat.pk in fresh else room.governor,
        players=players,
    )


class _LedgerKey(NamedTuple):
    """What a game's ledger depends on: its settled rounds, its status and who plays the labs."""

    game: int
    code: str  # a deleted game's id may be taken again, never its code
    status: str
    settled: int  # how many rounds are settled
    players: tuple[tuple[Any, ...], ...]


@dataclass(frozen=True, slots=True)
class _KeptLedger:
    """A game's ledger as one process last read it (``_ledger_of``)."""

    key: _LedgerKey
    book: ledger.Ledger


#: Each game's ledger last read in this process (game id -> ledger), at most this many.
_ledgers: bridge.GameCache[_KeptLedger] = bridge.GameCache(ROOM_CACHE_SIZE)


def _ledger_key(game: Game, seats: Sequence[Seat]) -> _LedgerKey:
    players = tuple((s.pk, s.nickname, s.token is not None, s.client_kind) for s in seats)
    settled = game.round_no if game.phase == Phase.RESULTS else game.round_no - 1
    return _LedgerKey(game.pk, game.code, game.status, settled, players)


def _ledger_of(
    game: Game, seats: Sequence[Seat], *, settled: RoundRecord | None = None
) -> ledger.Ledger:
    """Return the ledger of ``game``'s settled rounds, read once per process while it holds.

    A round is settled (its record written) only as its audit phase ends, in the transaction
    that begins its results phase: the records stay the same from a round's results to the end
    of the next round's audit, and with the game's status (an instructor may end a game in any
    phase). The standings also name each lab's player. A room is built at every version of the
    game (every batch of moves), the ledger of a big room's settled rounds once per round.

    ``settled``: the record of the round just settled, as the batch that wrote it holds it
    (``keep_settled``); added to the rounds kept before without reading it back.
    """
    key = _ledger_key(game, seats)
    kept = _ledgers.latest(game.pk)
    if kept is not None and kept.key == key:
        return kept.book
    # The rounds settled before are kept: only the newly settled rounds are read and added.
    # (Of this game: a deleted game's id may be taken again, never its code.)
    same_game = kept is not None and (kept.key.game, kept.key.code) == (key.game, key.code)
    before = kept.book if kept is not None and same_game else None
    if before is not None and len(before.records) > key.settled:
        before = None
    records = None
    if (
        settled is not None
        and before is not None
        and len(before.records) + 1 == key.settled == settled.round_no
    ):
        records = (*before.records, settled)
    book = ledger.read(game, seats=seats, before=before, records=records)
    _ledgers.keep(game.pk, _KeptLedger(key, book))
    return book


def keep_settled(game: Game, seats: Sequence[Seat], record: RoundRecord) -> None:
    """Add the round a batch just settled (and committed) to this process's ledger of the game.

    ``game`` and ``seats`` as the batch committed them; ``record`` the round's record it wrote.
    The event of the settlement (the round's results, every lab's own) then builds its room
    without reading the record back, nor asking whether the game moved on meanwhile (``_room``:
    a room built from what the process holds is its version's).
    """
    _ledger_of(game, seats, settled=record)


def _build_room(game: Game, key: tuple[Any, ...], rows: bridge.Rows) -> _Room:
    # A lobby's last join the seats hold: the room is kept only if no change came while it was
    # read (``_room``), so the joins after it are the ones a later reader reads (``_after_joins``).
    last_join = None
    if game.status == Status.LOBBY:
        last_join = (
            Move.objects.filter(game=game, action=Action.JOIN)
            .order_by("-pk")
            .values_list("pk", flat=True)
            .first()
        )
    seats = rows.seats
    lab_seats = {s.lab_index: s for s in seats if s.lab_index is not None}
    governor_seat = next(s for s in seats if s.role == Role.GOVERNOR)
    scenario = bridge.scenario_of(game)
    book = _ledger_of(game, seats)
    records = book.records

    position = None
    if game.status != Status.LOBBY:
        setup = bridge.setup_of(game)
        start = bridge.state_of(game, setup, rows)
        position = rows.position or bridge.position_of(
            game, seats=seats, moves=rows.moves, state=start
        )
    progress = position.progress if position else None
    state = position.state if position else None
    market = progress.market if progress else None

    # Who owes a move now: the humans the resolver stops for, in a phase that takes moves.
    waiting: tuple[int, ...] = ()
    if progress is not None and game.status in (Status.RUNNING, Status.PAUSED):
        if progress.awaiting == game.phase == Phase.AUDIT:
            waiting = (0,)
        elif progress.awaiting == game.phase:
            waiting = tuple(sorted(lab + 1 for lab in progress.waiting_for))

    high_prob = state.announced_high_prob if state else scenario.audit.high_prob
    if progress is not None and progress.announced_high_prob is not None:
        high_prob = progress.announced_high_prob
    rules = _rules(scenario, game.human_governor, high_prob)
    market_view = None
    if market is not None and progress is not None:
        market_view = MarketView(
            round_no=progress.round_no,
            price=market.price,
            permits=market.permits,
            winners=_ids(list(market.won)),
            announced_high_prob=high_prob,
            p_eff=rules.p_eff,
            trades=progress.trade.trades if progress.trade is not None else None,
        )

    finished = game.status == Status.FINISHED
    # Each lab learns its own payoff after each round (MODEL.md §4 step 6) and its own place;
    # the others' scores are published only at game over: a round's payoff would tell every
    # player, the governor included, whether a lab without a permit ran. Before any round has
    # settled there is nothing to rank.
    scoreboard = book.standings if records else ()
    ranks = book.places() if records else {}
    moves = {(m.seat_id, m.action): m for m in (position.moves if position else ()) if m.seat_id}
    beliefs: dict[int, int] = {}
    if game.ask_belief and game.round_no:
        beliefs = {
            m.seat_id: int(m.payload["percent"])
            for m in Move.objects.filter(game=game, round_no=game.round_no, action=Action.BELIEF)
            if m.seat_id is not None
        }
    return _Room(
        key=key,
        seats=seats,
        lab_seats=lab_seats,
        governor_seat=governor_seat,
        scenario=scenario,
        records=records,
        position=position,
        waiting=waiting,
        owing=frozenset(waiting),
        high_prob=high_prob,
        rules=rules,
        market_view=market_view,
        book=book,
        finished=finished,
        # Who plays a seat matters only while the game is on (in the lobby nobody plays yet).
        playing=game.status in (Status.RUNNING, Status.PAUSED),
        governor_score=book.governor_score,
        scoreboard=scoreboard,
        live_ranks=ranks if finished or game.live_standings else {},
        final_ranks=ranks if finished else {},
        face_penalty=float(expected_penalty(np.ones(1), rules.p_eff, rules.punishment)[0]),
        settled_now=records[-1] if records and records[-1].round_no == game.round_no else None,
        moves=moves,
        beliefs=beliefs,
        by_id={s.pk: s for s in seats},
        last_join=last_join or 0,
        joined=sum(s.has_player for s in seats),
        order=tuple(
            s.pk for s in sorted(seats, key=lambda s: (s.role != Role.LAB, s.lab_index or 0))
        ),
    )


def _ordered_rows(order: Sequence[int], rows: Mapping[int, PlayerRow]) -> tuple[PlayerRow, ...]:
    """Return the rows of the seats ``order`` names, in that order."""
    return tuple(map(rows.__getitem__, order))


def _player_rows(room: _Room, connected: set[int]) -> tuple[PlayerRow, ...]:
    """Return the seats as everyone may see them (kept with the room per set of online seats)."""
    online = frozenset(connected)
    kept = room.players
    if kept is not None and kept[0] == online:
        return kept[2]
    if kept is None:
        by_seat = {
            s.pk: player_row(s, connected=s.pk in online, playing=room.playing) for s in room.seats
        }
    else:  # a socket came or went: only the rows of the seats whose presence changed
        by_seat = {**kept[1]}
        for pk in kept[0] ^ online:
            if pk in room.by_id:
                seat = room.by_id[pk]
                by_seat[pk] = player_row(seat, connected=pk in online, playing=room.playing)
    rows = _ordered_rows(room.order, by_seat)
    room.players = (online, by_seat, rows)  # one assignment: readers see one set or the other
    return rows


def _room_counts(game: Game, room: _Room, now: dt.datetime) -> RoomCounts:
    """Count the room's seats, players and seats online (one query: the sockets online)."""
    since = now - dt.timedelta(seconds=CONNECTION_LEASE_SECONDS)
    online = Connection.objects.filter(seat__game=game, last_seen__gte=since)
    return RoomCounts(
        seats=len(room.seats),
        joined=room.joined,
        connected=online.values("seat_id").distinct().count(),
    )


def _public_view(
    game: Game,
    room: _Room,
    now: dt.datetime,
    *,
    listed: bool = True,
    connected: set[int] | None = None,
) -> PublicView:
    """Return the public view: the room's, with the time and who is online now.

    ``listed``: with the player list; else with the room's counts instead (``RoomCounts``).
    ``connected``: the seats with a socket open, if the caller has read them just now.
    """
    if listed and connected is None:
        connected = connected_seat_ids(game, now)
    records = room.records
    seconds_left = None
    if game.phase_deadline is not None:
        seconds_left = max(0.0, (game.phase_deadline - now).total_seconds())
    return PublicView(
        game_id=game.pk,
        code=game.code,
        title=game.title,
        status=game.status,
        round_no=game.round_no,
        rounds=game.rounds,
        phase=game.phase,
        started=game.phase_started_at,
        deadline=game.phase_deadline,
        seconds_left=seconds_left,
        paused_remaining=game.paused_remaining,
        version=game.version,
        seq=game.seq,
        waiting_for=room.waiting,
        players=_player_rows(room, connected) if listed and connected is not None else (),
        counts=None if listed else _room_counts(game, room, now),
        rules=room.rules,
        market=room.market_view,
        results=tuple({"round": r.round_no, **r.metrics} for r in records),
        standings=room.scoreboard if room.finished else (),
        governor_score=room.governor_score if room.finished else None,
        headline=headline_of(records[-1]) if records else None,
        bots_disclosed=game.bots_shown,
    )


@dataclass(frozen=True, slots=True)
class _LabColumns:
    """What every lab's view reads of the round, one list per quantity, lab by lab.

    Built once per room (``_lab_columns``): each view then reads list items, not numpy
    scalars one by one (every lab's view is built again with each event of the room). A
    quantity the round does not have yet is None; ``price`` and ``trades`` are the round's
    (the same for every lab).
    """

    values: list[float] | None
    net_values: list[float] | None
    #: u + rho and d = u + rho − p_eff·P at face value (r = 1: MODEL.md §5), once the values are
    #: (sim_core's ``unpermitted_value``, without and with the penalty).
    gains: list[float] | None
    face_values: list[float] | None
    wealth: list[float]
    current_wealth: list[float]
    risk: list[float]
    penalties: list[float]
    won: list[bool] | None
    granted: list[bool] | None
    bought: list[bool] | None
    sold: list[bool] | None
    price: float | None
    trades: int | None


def _lab_columns(game: Game, room: _Room) -> _LabColumns:
    """Return the room's ``_LabColumns``, built on first use and kept with the room."""
    if room.columns is not None:
        return room.columns
    position = room.position
    progress = position.progress if position else None
    state = position.state if position else None
    market = progress.market if progress else None
    setup = position.setup if position else bridge.setup_of(game)
    trade = progress.trade if progress is not None else None
    rules = room.rules
    racing = room.scenario.labs.racing_value
    wealth = (
        state.wealth.tolist()
        if state is not None
        else [room.scenario.labs.endowment] * game.lab_count
    )
    settled_now = room.settled_now
    net = progress.net_values if progress is not None else None
    columns = _LabColumns(
        values=progress.values.tolist() if progress is not None else None,
        net_values=net.tolist() if net is not None else None,
        gains=unpermitted_value(net, racing, 0.0).tolist() if net is not None else None,
        face_values=(
            unpermitted_value(net, racing, room.face_penalty).tolist() if net is not None else None
        ),
        wealth=wealth,
        current_wealth=[float(w) for w in settled_now.wealth] if settled_now else wealth,
        risk=setup.risk_profile.tolist(),
        # Each lab's expected penalty at its own risk profile (sim_core's, once per room).
        penalties=expected_penalty(setup.risk_profile, rules.p_eff, rules.punishment).tolist(),
        won=market.won.tolist() if market is not None else None,
        granted=progress.granted.tolist()
        if progress is not None and progress.granted is not None
        else None,
        bought=trade.bought.tolist() if trade is not None else None,
        sold=trade.sold.tolist() if trade is not None else None,
        price=market.price if market is not None else None,
        trades=trade.trades if trade is not None else None,
    )
    room.columns = columns
    return columns


def _lab_view(game: Game, room: _Room, seat: Seat) -> LabView:
    """Return one lab's own view (kept with the room).

    Built for every lab at every event of a room: what is the same for all labs is read once
    per room (``_lab_columns``), and each view reads its lab's items of those lists.
    """
    seat_id = seat.pk
    view = room.labs.get(seat_id)
    if view is not None:
        return view
    assert seat.lab_index is not None
    lab = seat.lab_index
    player_id = seat.player_id
    columns = _lab_columns(game, room)
    rules, moves = room.rules, room.moves
    bid_move = moves.get((seat_id, Action.BID))
    ask_move = moves.get((seat_id, Action.ASK))
    run_move = moves.get((seat_id, Action.DECIDE))
    won = columns.won[lab] if columns.won is not None else None
    face_value = columns.face_values[lab] if columns.face_values is not None else None
    view = LabView(
        seat_id=seat_id,
        player_id=player_id,
        nickname=seat.nickname,
        rejoin_code=seat.rejoin_code or "",
        round_no=game.round_no,
        phase=game.phase,
        value=columns.values[lab] if columns.values is not None else None,
        net_value=columns.net_values[lab] if columns.net_values is not None else None,
        risk_profile=columns.risk[lab],
        wealth=columns.wealth[lab],
        current_wealth=columns.current_wealth[lab],
        score=room.book.scores[lab],
        p_eff=rules.p_eff,
        punishment=rules.punishment,
        expected_penalty=columns.penalties[lab],
        gain_from_running=columns.gains[lab] if columns.gains is not None else None,
        face_expected_penalty=room.face_penalty,
        face_unpermitted_value=face_value,
        running_pays=None if face_value is None else face_value > 0,
        rank=room.live_ranks.get(player_id),
        final_rank=room.final_ranks.get(player_id),
        bid=float(bid_move.payload["amount"]) if bid_move else None,
        bid_by=bid_move.actor if bid_move else None,
        won=won,
        price=columns.price,
        run=True if won else (bool(run_move.payload["run"]) if run_move else None),
        run_by=run_move.actor if run_move else None,
        granted=columns.granted[lab] if columns.granted is not None else None,
        ask=_ask_amount(ask_move),
        kept=(ask_move.payload["amount"] is None) if ask_move else None,
        ask_by=ask_move.actor if ask_move else None,
        bought=columns.bought[lab] if columns.bought is not None else None,
        sold=columns.sold[lab] if columns.sold is not None else None,
        trades=columns.trades,
        owes_move=player_id in room.owing,
        bot_playing=room.playing and seat.controller == Controller.BOT,
        handed_to_bot=seat.handed_to_bot,
        history=room.book.lab(lab),
        coaching=game.coaching,
        ask_belief=game.ask_belief,
        belief=room.beliefs.get(seat_id),
    )
    room.labs[seat_id] = view
    return view


def _governor_view(game: Game, room: _Room) -> GovernorView:
    """Return the governor's view (kept with the room)."""
    if room.governor is not None:
        return room.governor
    scenario, records, lab_seats = room.scenario, room.records, room.lab_seats
    governor_seat = room.governor_seat
    progress = room.position.progress if room.position else None
    market = progress.market if progress else None
    audit_move = room.moves.get((governor_seat.pk, Action.AUDIT))
    signals = None
    suggested = None
    if progress is not None and progress.signals is not None and market is not None:
        signals = tuple(
            SignalRow(
                player_id=lab + 1,
                label=lab_label(lab + 1),
                nickname=lab_seats[lab].nickname,
                permit=bool(market.won[lab]),
                signal=bool(progress.signals[lab]),
            )
            for lab in range(game.lab_count)
        )
    if market is not None and market.price is None:  # §3b: no trade, the last π1 stays
        suggested = room.high_prob
    elif market is not None and market.price is not None:
        audit = scenario.audit
        suggested = optimal_high_prob(
            price=market.price,
            racing_value=scenario.labs.racing_value,
            punishment=audit.punishment,
            beta=audit.beta,
            base_prob=audit.base_prob,
            backcheck_prob=audit.backcheck_prob,
        )
    governor = GovernorView(
        seat_id=governor_seat.pk,
        nickname=governor_seat.nickname,
        rejoin_code=governor_seat.rejoin_code or "",
        round_no=game.round_no,
        phase=game.phase,
        signals=signals,
        max_audits=scenario.audit.max_audits,
        audit_cost=scenario.audit.audit_cost,
        suggested_high_prob=suggested,
        audits=tuple(lab + 1 for lab in audit_move.payload["labs"]) if audit_move else None,
        audits_by=audit_move.actor if audit_move else None,
        owes_move=0 in room.owing,
        bot_playing=room.playing and governor_seat.controller == Controller.BOT,
        handed_to_bot=governor_seat.handed_to_bot,
        history=tuple(
            AuditResult(
                round_no=r.round_no,
                audited=_ids(r.audited),
                caught=_ids(r.caught),
                audits=int(r.metrics["audits"]),
                welfare=float(r.metrics["welfare"]),
            )
            for r in records
        ),
        score=room.governor_score,
        cockpit=_cockpit(game, scenario, records, market) if game.human_governor else None,
    )
    room.governor = governor
    return governor


def game_screens(game: Game) -> GameScreens:
    """Return every audience's view of ``game`` now, resolving the current round once.

    The game's rows are read and its round resolved once per version of the game in a process
    (``_room``); the time and who is online are read each call; a lab's view and the
    governor's are built when first read (and kept with the room).
    """
    room = _room(game)
    now = clock.now()
    connected, browsers = sockets_seen(game, now)
    return GameScreens(game, room, _public_view(game, room, now, connected=connected), browsers)


@dataclass(frozen=True, slots=True, kw_only=True)
class SeatScreen:
    """One seat's whole screen (``seat_screen``): the public view and its own part only."""

    public: PublicView
    seat: Seat
    lab: LabView | None
    governor: GovernorView | None
    records: tuple[RoundRecord, ...]


def seat_screen(game: Game, seat_id: int, *, list_limit: int | None = None) -> SeatScreen:
    """Return one seat's screen now without building the other seats' (a socket connects).

    The seat is the room's (as of the game's version): its role and lab as the screen has them.
    ``list_limit``: a lab's screen of a room of more seats than this carries the room's counts
    instead of the player list (``PublicView.counts``); the governor's keeps the list.

    Raises:
        UnknownPlayer: no such seat in the game.
    """
    room = _room(game)
    seat = room.by_id.get(seat_id)
    if seat is None:
        raise UnknownPlayer(UNKNOWN_TOKEN.format(code=game.code))
    listed = seat.lab_index is None or list_limit is None or len(room.seats) <= list_limit
    public = _public_view(game, room, clock.now(), listed=listed)
    if seat.lab_index is not None:
        return SeatScreen(
            public=public,
            seat=seat,
            lab=_lab_view(game, room, seat),
            governor=None,
            records=room.records,
        )
    return SeatScreen(
        public=public,
        seat=seat,
        lab=None,
        governor=_governor_view(game, room),
        records=room.records,
    )


# ------------------------------------------------------------------------ the instructor, exports


def player_row(seat: Seat, *, connected: bool, playing: bool) -> PlayerRow:
    """Return one seat as everyone may see it; ``playing``: the game is running or paused."""
    return PlayerRow(
        seat_id=seat.pk,
        player_id=seat.player_id,
        role=seat.role,
        label=seat_label(seat),
        nickname=seat.nickname,
        human=seat.has_player,
        open_seat=seat.kind == Seat.Kind.HUMAN and not seat.has_player,
        bot_playing=not seat.has_player or (playing and seat.controller == Controller.BOT),
        connected=connected,
        program=program_label(seat),
    )


def program_label(seat: Seat) -> str:
    """Return "name version" of a seat's declared program, or "" when no program declared."""
    if not seat.is_program:
        return ""
    return " ".join(part for part in (seat.client_name, seat.client_version) if part) or "program"


def game_export_rows(game: Game) -> list[dict[str, Any]]:
    """Return one dict per settled round: ``round`` then sim_core's METRICS, in order."""
    return ledger.metric_rows(RoundRecord.objects.filter(game=game).order_by("round_no"))


def record_market(game: Game, record: RoundRecord) -> MarketView:
    """Return the market result of a settled round, as it was announced."""
    scenario = bridge.scenario_of(game)
    p_eff = perceived_p_eff(
        scenario, announced_high_prob=record.announced_high_prob, human_governor=game.human_governor
    )
    return MarketView(
        round_no=record.round_no,
        price=record.price,
        permits=sum(bool(w) for w in record.won),
        winners=_ids(record.won),
        announced_high_prob=record.announced_high_prob,
        p_eff=p_eff,
    )


def record_signals(game: Game, record: RoundRecord) -> tuple[SignalRow, ...]:
    """Return a settled round's signals and permits, as the governor saw them."""
    names = {s.lab_index: s.nickname for s in game.seats.all() if s.lab_index is not None}
    return tuple(
        SignalRow(
            player_id=lab + 1,
            label=lab_label(lab + 1),
            nickname=names.get(lab, ""),
            permit=bool(record.won[lab]),
            signal=bool(record.signals[lab]),
        )
        for lab in range(len(record.won))
    )
