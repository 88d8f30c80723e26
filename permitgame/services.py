"""Every state change of a game: one transaction each, the game row locked first.

Each service locks the game (``select_for_update``; on SQLite every transaction begins
IMMEDIATE, which takes the database's write lock at once, see settings), checks that the request
fits the current round and phase, appends to the move log, lets the game advance as far as the
moves allow (through ``sim_core.resolve_round``, via ``bridge``) and publishes what changed
with ``transaction.on_commit``. A repeated identical move is acknowledged and recorded once.

The phase machine (MODEL.md §4): bidding, allocation (automatic), compliance, signals
(automatic), audit, settlement (automatic), results, then the next round; game over after the
last round. A resting phase (bidding, compliance, audit, results) ends when no human owes a move
or its deadline passes. At the deadline a human who owes a move gets the default (bid 0, idle,
no audits) when connected, and the seat's fallback bot otherwise (the bot keeps the seat until
the player reconnects). Bots never hold a phase up; their moves are logged, with actor "bot",
when the phase ends. Who plays a seat is fixed when a phase begins, so a late joiner takes over
from the next phase; a reconnecting player takes the seat back at once.

Not here: rules (sim_core), reads for screens (``selectors``), rendering (``broadcast``).
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import logging
import math
import secrets
import threading
import unicodedata
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from django.db import transaction
from django.db.models import Case, F, Q, Value, When

from permitgame import bridge, broadcast, chain, clock, prepared, realtime, selectors
from permitgame.errors import (
    AlreadySubmitted,
    BadNickname,
    BadRequest,
    BotPlaying,
    GameError,
    GameFull,
    GameOver,
    NicknameTaken,
    NotAllowed,
    NotRunning,
    Paused,
    SeatChange,
    StaleMove,
    WrongRole,
)
from permitgame.models import (
    DEFAULT_DURATIONS,
    Action,
    Actor,
    BotDisclosure,
    Coaching,
    Connection,
    Controller,
    Game,
    Move,
    RoundRecord,
    SavedPreset,
    Seat,
    Status,
    lab_label,
)
from sim_core import (
    ActionError,
    GameState,
    Phase,
    Role,
    RoundProgress,
    Scenario,
    make_setup,
    parse_scenario,
    scenario_to_dict,
)

#: Letters and digits that cannot be mistaken for one another when read aloud or projected.
CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
#: The largest seed a game stores (a signed 64-bit column in every database).
MAX_SEED = 2**63 - 1
JOIN_CODE_LENGTH = 6
REJOIN_CODE_LENGTH = 6
#: Fresh rejoin codes a join checks at once; the first no seat of the game holds is taken.
REJOIN_CODE_CANDIDATES = 3
NICKNAME_MAX = 24

STALE_MOVE = (
    "This {what} is for round {round_no}'s {phase} phase, but the game is in round "
    "{game_round}'s {game_phase} phase."
)
NOT_STARTED = "The game has not started yet."
GAME_IS_OVER = "The game is over."
GAME_IS_PAUSED = "The game is paused; moves are taken again when it resumes."
TIME_IS_UP = "Time is up for round {round_no}'s {phase} phase; your {what} came too late."
NOT_A_LAB = "Only a lab can {what}."
NOT_THE_GOVERNOR = "Only the governor can choose audits."
ALREADY_SUBMITTED = "You already submitted your {what} for round {round_no}."
BOT_PLAYS_LATE_JOINER = "A bot plays your seat in this phase; you take over from the next phase."
BOT_PLAYS_HANDED = "The instructor handed your seat to a bot."
BELIEF_NOT_ASKED = "This game does not ask what you believe."
BELIEF_WITH_PERMIT = "You hold a permit this round: there is no chance of being caught to guess."
NICKNAME_EMPTY = "Choose a nickname."
NICKNAME_TOO_LONG = "A nickname has at most {limit} characters."
NICKNAME_UNPRINTABLE = "A nickname may only contain printable characters."
NICKNAME_IS_TAKEN = "The nickname {nickname!r} is taken in this game; choose another."
GAME_IS_FULL = "Every seat of this game is taken."
HAND_WHILE_PLAYING = "A seat can be handed to a bot only while the game is running or paused."
HAND_NO_PLAYER = "{label} has no student: it is already played by a bot."
GOVERNOR_IS_BOT = "This game's governor is played by a bot."
GOVERNOR_IS_TAKEN = "The governor's seat is taken."

# What each move is called in messages, and the phase it belongs to.
_MOVE_PHASE: dict[str, Phase] = {
    Action.BID: Phase.BIDDING,
    Action.ASK: Phase.BIDDING,  # MODEL.md §3b: the trading phase is the bidding phase
    Action.DECIDE: Phase.COMPLIANCE,
    Action.AUDIT: Phase.AUDIT,
}
_MOVE_WHAT: dict[str, str] = {
    Action.BID: "bid",
    Action.ASK: "ask",
    Action.DECIDE: "run/idle choice",
    Action.AUDIT: "audit choice",
}
_LAB_MOVE_WHAT: dict[str, str] = {
    Action.BID: "bid",
    Action.ASK: "ask or keep",
    Action.DECIDE: "run or idle",
}
_NEXT_PHASE = {
    Phase.BIDDING: Phase.COMPLIANCE,
    Phase.COMPLIANCE: Phase.AUDIT,
    Phase.AUDIT: Phase.RESULTS,
}


@dataclass(frozen=True, slots=True)
class MoveResult:
    """What a submitted move did: recorded now, or acknowledged as a repeat of the logged one."""

    duplicate: bool
    payload: dict[str, Any]


#: Kinds of change sent at once to every seat as one numbered event (``Game.seq``); the others
#: ("waiting": someone moved, "players": someone joined, connected or left) are progress, sent
#: coalesced per game (``broadcast.progress_changed``), so a phase of N moves costs O(N).
EVENT_KINDS = frozenset({"phase", "market", "signals", "settled", "game_over", "seats"})


@dataclass(slots=True)
class _Changes:
    """What a transaction changed, for the broadcast after commit."""

    events: list[tuple[str, int]] = field(default_factory=list)
    seat_ids: set[int] = field(default_factory=set)

    def add(self, kind: str, round_no: int) -> None:
        self.events.append((kind, round_no))

    @property
    def is_event(self) -> bool:
        return any(kind in EVENT_KINDS for kind, _ in self.events)


# ------------------------------------------------------------------------------ helpers


#: The statements every join, socket and batch of moves runs (``permitgame.prepared``).
_LOCKED: prepared.Prepared[Game] = prepared.Prepared(
    lambda pk: Game.objects.select_for_update().filter(pk=pk), int
)
#: The clock's lock of a game whose deadline passed: skipped if another transaction holds it.
_TRY_LOCKED: prepared.Prepared[Game] = prepared.Prepared(
    lambda pk: Game.objects.select_for_update(skip_locked=True).filter(pk=pk), int
)
_SEAT_AND_STATUS: prepared.Prepared[Any] = prepared.Prepared(
    lambda pk: Seat.objects.annotate(game_status=F("game__status")).filter(pk=pk), int
)
#: A join's look-up: the seat with that nickname and any holding one of the candidate codes.
_NAMED_OR_HOLDING: prepared.Prepared[Seat] = prepared.Prepared(
    lambda game_id, key, *codes: Seat.objects.filter(game_id=game_id).filter(
        Q(nickname_key=key) | Q(rejoin_code__in=codes)
    ),
    int,
    str,
    *[str] * REJOIN_CODE_CANDIDATES,
)
#: The first two free human seats of a game, the role asked for (``first``) first.
_FREE_HUMANS: prepared.Prepared[Seat] = prepared.Prepared(
    lambda game_id, first: (
        Seat.objects.filter(game_id=game_id, token__isnull=True, kind=Seat.Kind.HUMAN)
        .annotate(later=Case(When(role=first, then=Value(0)), default=Value(1)))
        .order_by("later", "pk")[:2]
    ),
    int,
    str,
)


def _lock(game_id: int) -> Game:
    """Return the game row, locked until the transaction ends (call inside ``atomic``).

    Raises:
        Game.DoesNotExist: no such game.
    """
    return _LOCKED.get(game_id)


def _try_lock(game_id: int) -> Game | None:
    """Return the game row locked as ``_lock`` does; None if another transaction holds it."""
    return _TRY_LOCKED.first(game_id)


def _code(length: int) -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(length))


def _move(
    game: Game,
    action: str,
    actor: str,
    *,
    now: dt.datetime,
    seat: Seat | None = None,
    payload: Mapping[str, Any] | None = None,
    latency_ms: int | None = None,
) -> Move:
    """Return a log entry of the game's current round and phase, not yet saved."""
    return Move(
        game=game,
        seat=seat,
        action=action,
        actor=actor,
        round_no=game.round_no,
        phase=game.phase,
        payload=dict(payload or {}),
        latency_ms=latency_ms,
        created_at=now,
    )


def _log(
    game: Game,
    action: str,
    actor: str,
    *,
    now: dt.datetime,
    seat: Seat | None = None,
    payload: Mapping[str, Any] | None = None,
    latency_ms: int | None = None,
) -> Move:
    move = _move(game, action, actor, now=now, seat=seat, payload=payload, latency_ms=latency_ms)
    _save_moves(game, [move])
    return move


@dataclass
class _Journal:
    """What a batch of moves wrote besides its moves (``round_submit_moves``).

    ``moves``: every log entry saved, in order; ``stale``: a seat changed hands or was read
    again, so the seats the batch holds may no longer be the database's.
    """

    moves: list[Move] = field(default_factory=list)
    stale: bool = False


_journals = threading.local()


def _journal() -> _Journal | None:
    return getattr(_journals, "current", None)


@contextlib.contextmanager
def _journaled(game_id: int) -> Iterator[None]:
    """Keep a journal of what a batch of moves of ``game_id`` writes (``_submit_batch``).

    If it fails, the seats this process keeps for the game may have been changed in memory (who
    plays them) by what was rolled back: they are dropped, to be read again.
    """
    _journals.current = _Journal()
    try:
        yield
    except BaseException:
        bridge.forget_rows(game_id)
        raise
    finally:
        _journals.current = None


def _save_moves(game: Game, moves: Sequence[Move]) -> None:
    """Append ``moves`` to the game's log, in order, each extending the log's hash chain.

    Every entry stores the hash of the entry before it and its own (``permitgame.chain``); the
    game (locked) keeps the last hash in ``log_head``, saved with the game by the service.
    """
    if not moves:
        return
    journal = _journal()
    if journal is not None:
        journal.moves.extend(moves)
    prev_hash = game.log_head
    for move in moves:
        document = chain.entry_document(
            game=game.code,
            seat=move.seat_id,
            action=str(move.action),
            actor=str(move.actor),
            round_no=move.round_no,
            phase=str(move.phase),
            payload=move.payload,
            latency_ms=move.latency_ms,
            time=chain.canonical_time(move.created_at),
            prev_hash=prev_hash,
        )
        move.prev_hash = prev_hash
        move.hash = prev_hash = chain.entry_hash(document)
    game.log_head = prev_hash  # saved with the game (``_commit``, or ``game_create``)
    Move.objects.append(moves)


logger = logging.getLogger(__name__)


def publish_deferred(later: Sequence[Callable[[], None]]) -> None:
    """Send the events a caller kept back with ``publish_later``, in order.

    Each is committed already: one that fails is logged (the seq gap shows it to the sockets)
    and the rest are still sent.
    """
    for publish in later:
        try:
            publish()
        except Exception:
            logger.exception("publishing a committed event failed")


def _commit(
    game: Game, changes: _Changes, *, later: list[Callable[[], None]] | None = None
) -> None:
    """Bump the game's version, save it and publish ``changes`` once the transaction commits.

    An event (a phase change, a market, results, a change of seats) gets the game's next
    ``seq`` and is sent to every seat at once; progress alone (a move, a join) marks the game
    for the next coalesced progress message. ``later``: the event's publishing is appended
    there once the transaction has committed, for the caller to run (after answering).
    """
    game.version += 1
    journal = _journal()
    if journal is None or journal.stale:  # only a journal knows its seats unchanged
        game.seats_version = game.version
    event = changes.is_event
    if event:
        game.seq += 1
    prepared.save_fields(game)
    if event:
        publish = partial(
            broadcast.publish,
            game_id=game.pk,
            seq=game.seq,
            events=list(changes.events),
            seat_ids=set(changes.seat_ids),
            committed=copy.copy(game),  # the row as committed: the event is that version
        )
        if later is None:
            transaction.on_commit(publish, robust=True)
        else:
            transaction.on_commit(partial(later.append, publish))
    else:
        transaction.on_commit(partial(broadcast.progress_changed, game.pk), robust=True)


def connected_seat_ids(game: Game, now: dt.datetime) -> set[int]:
    """Return the ids of the game's seats with a live websocket (seen within the lease)."""
    since = now - dt.timedelta(seconds=realtime.CONNECTION_LEASE_SECONDS)
    return set(
        Connection.objects.filter(seat__game=game, last_seen__gte=since).values_list(
            "seat_id", flat=True
        )
    )


def is_connected(seat: Seat, now: dt.datetime) -> bool:
    """Return whether the seat has a live websocket (seen within the lease)."""
    since = now - dt.timedelta(seconds=realtime.CONNECTION_LEASE_SECONDS)
    return Connection.objects.filter(seat=seat, last_seen__gte=since).exists()


def _durations(overrides: Mapping[str, int | None] | None) -> dict[str, int | None]:
    durations = {str(phase): seconds for phase, seconds in DEFAULT_DURATIONS.items()}
    for phase, seconds in (overrides or {}).items():
        if phase not in durations:
            raise ValueError(f"unknown phase {phase!r} in durations")
        if seconds is not None and seconds < 0:
            raise ValueError(f"durations.{phase} must be at least 0 or None")
        durations[phase] = seconds
    return durations


# ------------------------------------------------------------------------------ creating, joining


@transaction.atomic
def game_create(
    *,
    scenario: Scenario,
    human_labs: int = 0,
    human_governor: bool = False,
    seed: int | None = None,
    durations: Mapping[str, int | None] | None = None,
    owner: Any = None,
    title: str = "",
    autostart: bool = False,
    lobby_seconds: int | None = None,
    coaching: str = Coaching.FULL,
    ask_belief: bool = False,
    live_standings: bool = False,
    bot_disclosure: str = BotDisclosure.REVEALED,
    human_seats: Collection[int] | None = None,
) -> Game:
    """Create a game in the lobby with one seat per lab and a governor seat.

    Labs ``0 .. human_labs-1`` (or ``human_seats``) are created as human seats, the rest as
    bots; every lab's
    fallback strategy is the one sim_core's setup gives it. The governor seat is a human seat
    iff ``human_governor`` (which also changes what labs perceive, MODEL.md §5).

    Args:
        scenario: the complete scenario; frozen into the game as JSON.
        human_labs: how many lab seats wait for humans.
        human_governor: whether a human plays the governor.
        seed: the game's seed (default: the scenario's).
        durations: seconds per resting phase (bidding, compliance, audit, results); None means
            no deadline. Missing phases take ``DEFAULT_DURATIONS``.
        owner: the instructor (a user) or None.
        title: a label for lists.
        autostart: start by itself once every human seat is taken.
        lobby_seconds: with ``autostart``, also start this long after the first join.
        coaching: how much the run-or-idle screen works out for a lab (``Coaching``).
        ask_belief: ask labs without a permit how likely a violator is caught, each round.
        live_standings: each lab sees its place among the labs after every round, not only
            at game over.
        bot_disclosure: whether the players are shown which seats bots play
            (``BotDisclosure``).
        human_seats: the 0-based labs kept for humans (``human_labs`` of them), when not the
            first ones: a study that hides its bots scatters them, since "the humans are
            labs 1 to 3" would tell every player which labs are bots.

    Raises:
        ValueError: more human labs than labs, a seed out of range, bad durations, an
            unknown coaching level or disclosure, or ``human_seats`` not ``human_labs``
            distinct labs.
    """
    count = scenario.labs.count
    if not 0 <= human_labs <= count:
        raise ValueError(f"human_labs must be between 0 and {count}, got {human_labs}")
    if coaching not in Coaching.values:
        raise ValueError(f"coaching must be one of {', '.join(Coaching.values)}, got {coaching!r}")
    if bot_disclosure not in BotDisclosure.values:
        raise ValueError(f"bot_disclosure must be one of {', '.join(BotDisclosure.values)}")
    humans = frozenset(range(human_labs) if human_seats is None else human_seats)
    if len(humans) != human_labs or not humans <= set(range(count)):
        raise ValueError(f"human_seats must be {human_labs} distinct labs of 0..{count - 1}")
    game_seed = scenario.seed if seed is None else seed
    if not 0 <= game_seed <= MAX_SEED:
        raise ValueError(f"the seed must be between 0 and {MAX_SEED}, got {game_seed}")
    now = clock.now()
    code = _code(JOIN_CODE_LENGTH)
    while Game.objects.filter(code=code).exists():
        code = _code(JOIN_CODE_LENGTH)
    game = Game.objects.create(
        code=code,
        title=title,
        scenario=scenario_to_dict(scenario),
        seed=game_seed,
        human_governor=human_governor,
        owner=owner,
        durations=_durations(durations),
        autostart=autostart,
        lobby_seconds=lobby_seconds,
        coaching=coaching,
        ask_belief=ask_belief,
        live_standings=live_standings,
        bot_disclosure=bot_disclosure,
        created_at=now,
    )
    setup = make_setup(scenario, seed=game_seed, human_governor=human_governor)
    Seat.objects.bulk_create(
        [
            Seat(
                game=game,
                role=Role.LAB,
                lab_index=lab,
                kind=Seat.Kind.HUMAN if lab in humans else Seat.Kind.BOT,
                fallback_strategy=setup.strategy_name(lab),
            )
            for lab in range(count)
        ]
        + [
            Seat(
                game=game,
                role=Role.GOVERNOR,
                kind=Seat.Kind.HUMAN if human_governor else Seat.Kind.BOT,
                fallback_strategy=scenario.governor.policy,
            )
        ]
    )
    _log(
        game,
        Action.CREATE,
        Actor.HOST if owner is not None else Actor.SYSTEM,
        now=now,
        payload={
            "human_labs": human_labs,
            "human_governor": human_governor,
            "seed": game_seed,
            "coaching": coaching,
            "ask_belief": ask_belief,
            **_study_settings(bot_disclosure, human_seats),
        },
    )
    game.save(update_fields=["log_head"])
    return game


def _study_settings(bot_disclosure: str, human_seats: Collection[int] | None) -> dict[str, Any]:
    """A study's seat settings for the log, only where they differ from a class game's."""
    settings: dict[str, Any] = {}
    if bot_disclosure != BotDisclosure.REVEALED:
        settings["bot_disclosure"] = bot_disclosure
    if human_seats is not None:
        settings["human_seats"] = sorted(human_seats)
    return settings


def clean_nickname(nickname: object) -> str:
    """Return the nickname stripped, or raise ``BadNickname`` saying what is wrong."""
    if not isinstance(nickname, str) or not nickname.strip():
        raise BadNickname(NICKNAME_EMPTY)
    # Control characters (tabs, newlines, escapes) are refused, not folded into spaces; runs of
    # spaces (any width) become one space.
    if any(not ch.isprintable() and unicodedata.category(ch) != "Zs" for ch in nickname):
        raise BadNickname(NICKNAME_UNPRINTABLE)
    cleaned = " ".join(nickname.split())
    if len(cleaned) > NICKNAME_MAX:
        raise BadNickname(NICKNAME_TOO_LONG.format(limit=NICKNAME_MAX))
    return cleaned


def _free_seat(game: Game, role: str | None, human_governor: bool) -> tuple[Seat, bool]:
    """Pick the seat a joiner gets; say whether another human seat is still free after it.

    Human labs first, then the governor, then bot labs; the lobby's autostart waits for the
    human seats still free. One query in a lobby filling up (its first two free human seats,
    the kind asked for first), one more for a bot's lab (a late joiner); never a read of the
    room: a lecture hall's joins cost the same at the 200th as at the first.
    """
    if role == Role.GOVERNOR and not human_governor:
        raise WrongRole(GOVERNOR_IS_BOT)
    first = Role.GOVERNOR if role == Role.GOVERNOR else Role.LAB
    humans = _FREE_HUMANS.all(game.pk, str(first))  # human labs and a human governor
    wanted = [seat for seat in humans if role is None or seat.role == role]
    if wanted:
        return wanted[0], len(humans) > 1
    if role == Role.GOVERNOR:
        raise GameFull(GOVERNOR_IS_TAKEN)
    # A running game's bot hands its lab over.
    free = Seat.objects.filter(game=game, token__isnull=True)
    bot = free.filter(role=Role.LAB, kind=Seat.Kind.BOT).order_by("pk").first()
    if bot is None:
        raise GameFull(GAME_IS_FULL)
    return bot, bool(humans)


@transaction.atomic
def seat_join(
    *,
    game: Game,
    nickname: object,
    role: str | None = None,
    join_key: str | None = None,
    client: Mapping[str, str] | None = None,
) -> Seat:
    """Give a human a seat of ``game``: in the lobby, or a bot's seat in a running game.

    A late joiner takes over from the next phase (the bot finishes the current one). With
    ``autostart`` the game starts once every human seat is taken (or ``lobby_seconds`` after
    the first join).

    Args:
        game: the game.
        nickname: the player's name, unique in the game (case-insensitive).
        role: ``"lab"`` or ``"governor"`` to ask for one; None takes the next free seat.
        join_key: the client's own random key for this join request. A request resent with
            the same key and the same nickname (its answer was lost on a bad network) gets the
            seat the first one took, unchanged, instead of "nickname taken"; a key sent with
            another nickname finds nothing (a key is not a way into someone else's seat).
        client: a program's declaration (``{"kind": "program", "name": ..., "version": ...}``,
            checked by the view): the seat is marked as played by a program everywhere.

    Returns:
        The seat, its ``game`` the game as this join left it (started by it, or not).

    Raises:
        GameOver: the game has finished.
        BadNickname, NicknameTaken: the nickname is empty, too long, odd or taken.
        GameFull, WrongRole: no seat of that kind is free.
    """
    game = _lock(game.pk)
    if game.status == Status.FINISHED:
        raise GameOver(GAME_IS_OVER)
    name = clean_nickname(nickname)
    key = name.casefold()
    # Indexed look-ups only (no read of the room), in one query: the nickname's casefolded key
    # is unique per game (a resent join, or a nickname taken), and so is a rejoin code (the
    # first of a few fresh ones that no seat holds is this seat's).
    codes = [_code(REJOIN_CODE_LENGTH) for _ in range(REJOIN_CODE_CANDIDATES)]
    found = _NAMED_OR_HOLDING.all(game.pk, key, *codes)
    holder = next((other for other in found if other.nickname_key == key), None)
    if holder is not None:
        if join_key and holder.join_key == join_key and holder.nickname == name:
            holder.game = game
            return holder
        raise NicknameTaken(NICKNAME_IS_TAKEN.format(nickname=name))
    seat, humans_missing = _free_seat(game, role, game.human_governor)
    seat.game = game  # the caller reads the game as the join left it (started, or not)
    now = clock.now()
    held = {other.rejoin_code for other in found}
    rejoin_code = next((code for code in codes if code not in held), None)
    while rejoin_code is None:  # every candidate held: one more at a time
        code = _code(REJOIN_CODE_LENGTH)
        if code not in held and not Seat.objects.filter(game=game, rejoin_code=code).exists():
            rejoin_code = code
    seat.kind = Seat.Kind.HUMAN
    seat.nickname = name
    seat.nickname_key = key
    seat.token = secrets.token_urlsafe(24)
    seat.rejoin_code = rejoin_code
    seat.join_key = join_key or None
    seat.joined_at = now
    seat.handed_to_bot = False
    seat.standing_in = False
    seat.client_kind = (client or {}).get("kind", "")
    seat.client_name = (client or {}).get("name", "")
    seat.client_version = (client or {}).get("version", "")
    prepared.save_fields(seat)
    changes = _Changes()
    joined: dict[str, Any] = {"nickname": name}
    if client:
        joined["client"] = dict(client)
    _log(game, Action.JOIN, _seat_actor(seat), now=now, seat=seat, payload=joined)
    changes.add("players", game.round_no)
    if game.status == Status.LOBBY and game.autostart:
        if not humans_missing:
            _start(game, now, changes, actor=Actor.SYSTEM)
        elif game.lobby_seconds is not None and game.phase_deadline is None:
            game.phase_deadline = now + dt.timedelta(seconds=game.lobby_seconds)
            changes.add("phase", game.round_no)
    _commit(game, changes)
    return seat


@transaction.atomic
def seat_rejoin(*, seat: Seat, via: str) -> Seat:
    """Record that ``seat``'s player moved it to another device with its rejoin code.

    Args:
        seat: the seat found by its rejoin code.
        via: ``"page"`` (the rejoin form) or ``"api"`` (the JSON protocol).
    """
    game = _lock(seat.game_id)
    seat = Seat.objects.get(pk=seat.pk)
    _log(game, Action.REJOIN, _seat_actor(seat), now=clock.now(), seat=seat, payload={"via": via})
    _commit(game, _Changes())
    return seat


def _seat_actor(seat: Seat) -> str:
    """The actor of a player's own entries: ``program`` for a declared program, else human."""
    return Actor.PROGRAM if seat.is_program else Actor.HUMAN


def _live_connections(seat_id: int, now: dt.datetime) -> int:
    since = now - dt.timedelta(seconds=realtime.CONNECTION_LEASE_SECONDS)
    return Connection.objects.filter(seat_id=seat_id, last_seen__gte=since).count()


def _logs_presence(status: str | None) -> bool:
    """Whether a game in ``status`` logs connects and drops: while it runs or is paused.

    In the lobby a whole class connects at once and nothing is at stake yet; during play a
    drop or a return changes who plays a seat, so it is recorded (under the game's lock).
    """
    return status in (Status.RUNNING, Status.PAUSED)


# ------------------------------------------------------------------------------ presence


def seat_connect(*, seat: Seat, channel_name: str, html: bool = False) -> None:
    """Record an open websocket of ``seat``; a player a bot stood in for takes the seat back.

    The reclaim is immediate: the bot's move for the current phase is only logged when the phase
    ends, so the returning player owes (and may make) the current phase's move. Presence alone
    takes no game lock and no transaction (a whole class connecting at once does not queue
    behind the moves): two statements, each whole by itself, and progress, sent coalesced.
    ``html``: a browser's socket (it is sent HTML fragments).
    """
    now = clock.now()
    # The seat and its game's status in one query (is presence logged? ``_logs_presence``).
    with_status = _SEAT_AND_STATUS.get(seat.pk)
    seat, logged = with_status, _logs_presence(with_status.game_status)
    returning = seat.has_player and logged and _live_connections(seat.pk, now) == 0
    reclaiming = seat.standing_in and not seat.handed_to_bot and seat.has_player
    if not returning and not reclaiming:
        _open_connection(seat, channel_name, html, now)
        seat.last_seen = now
        prepared.save_fields(seat, ["last_seen"], missing_ok=True)
        transaction.on_commit(partial(broadcast.progress_changed, seat.game_id), robust=True)
        return
    with transaction.atomic():  # a change of the game's log: under its lock
        _open_connection(seat, channel_name, html, now)
        game = _lock(seat.game_id)
        seat = Seat.objects.get(pk=seat.pk)
        seat.last_seen = now
        changes = _Changes()
        if returning:
            _log(game, Action.CONNECT, _seat_actor(seat), now=now, seat=seat)
        if seat.standing_in and not seat.handed_to_bot and seat.has_player:
            seat.standing_in = False
            if game.status in (Status.RUNNING, Status.PAUSED):
                seat.controller = Controller.HUMAN
                _log(game, Action.RECLAIM, _seat_actor(seat), now=now, seat=seat)
            changes.seat_ids.add(seat.pk)
            changes.add("waiting", game.round_no)
        seat.save()
        changes.add("players", game.round_no)
        _commit(game, changes)


def _open_connection(seat: Seat, channel_name: str, html: bool, now: dt.datetime) -> None:
    # One statement (INSERT ... ON CONFLICT DO UPDATE): a channel name is new for each socket.
    prepared.insert(
        Connection(seat=seat, channel_name=channel_name, opened_at=now, last_seen=now, html=html),
        unique=["channel_name"],
        update=["seat", "opened_at", "last_seen", "html"],
    )


def seat_disconnect(*, channel_name: str) -> None:
    """Forget a closed websocket (its seat counts as away once no live socket is left).

    Presence: no game lock, progress sent coalesced. Outside play (a lobby, a game over: a
    whole class closes its tabs at once) two statements and no transaction; during play, a
    player's last socket closing is logged as a drop, under the game's lock.
    """
    connection = (
        Connection.objects.filter(channel_name=channel_name)
        .select_related("seat")
        .annotate(game_status=F("seat__game__status"))
        .first()
    )
    if connection is None:
        return
    now = clock.now()
    seat = connection.seat
    logged = seat.has_player and _logs_presence(connection.game_status)
    with transaction.atomic() if logged else contextlib.nullcontext():
        Connection.objects.filter(pk=connection.pk).delete()
        Seat.objects.filter(pk=seat.pk).update(last_seen=now)
        if logged and _live_connections(seat.pk, now) == 0:
            game = _lock(seat.game_id)  # a drop during play is a change of the game's log
            _log(game, Action.DROP, _seat_actor(seat), now=now, seat=seat)
            changes = _Changes()
            changes.add("players", game.round_no)
            _commit(game, changes)
            return
        transaction.on_commit(partial(broadcast.progress_changed, seat.game_id), robust=True)


def presence_heartbeat(channel_names: Iterable[str]) -> int:
    """Mark this process's open websockets as alive now; return how many rows were refreshed.

    Not a game change (no lock, no version): a lease that ``is_connected`` reads.
    """
    names = list(channel_names)
    if not names:
        return 0
    return Connection.objects.filter(channel_name__in=names).update(last_seen=clock.now())


def presence_purge() -> int:
    """Delete websocket rows whose lease ran out long ago (their process died); return how many."""
    cutoff = clock.now() - dt.timedelta(seconds=4 * realtime.CONNECTION_LEASE_SECONDS)
    deleted, _ = Connection.objects.filter(last_seen__lt=cutoff).delete()
    return deleted


# ------------------------------------------------------------------------------ the phase machine


def _assign_controllers(game: Game, seats: Sequence[Seat] | None = None) -> bool:
    """Fix who plays each seat for the phase that begins (human iff a present-able player).

    ``seats``: the game's seats as held by the caller (updated in place); read if not given.
    Returns whether any seat changed hands.
    """
    rows = list(seats) if seats is not None else list(game.seats.all())
    wanted = {
        s.pk: (
            Controller.HUMAN
            if s.has_player and not s.handed_to_bot and not s.standing_in
            else Controller.BOT
        )
        for s in rows
    }
    changed = [s for s in rows if s.controller != wanted[s.pk]]
    journal = _journal()
    if journal is not None and (seats is None or changed):
        journal.stale = True
    for controller in (Controller.HUMAN, Controller.BOT):
        ids = [s.pk for s in changed if wanted[s.pk] == controller]
        if ids:
            Seat.objects.filter(pk__in=ids).update(controller=controller)
    for s in changed:
        s.controller = wanted[s.pk]
    return bool(changed)


def _begin_phase(
    game: Game,
    phase: Phase,
    now: dt.datetime,
    changes: _Changes,
    seats: Sequence[Seat] | None = None,
) -> bool:
    """Begin ``phase``; return whether a seat changed hands (the resolve must be redone)."""
    game.phase = phase
    game.phase_started_at = now
    seconds = game.durations.get(phase)
    game.phase_deadline = None if seconds is None else now + dt.timedelta(seconds=seconds)
    changed = _assign_controllers(game, seats)
    deadline = game.phase_deadline.isoformat() if game.phase_deadline else None
    _log(game, Action.PHASE, Actor.SYSTEM, now=now, payload={"deadline": deadline})
    changes.add("phase", game.round_no)
    return changed


def _start(game: Game, now: dt.datetime, changes: _Changes, *, actor: str) -> None:
    game.status = Status.RUNNING
    game.started_at = now
    game.round_no = 1
    game.phase_deadline = None
    _log(game, Action.START, actor, now=now)
    # Lobby fills: each seat planned for a human that nobody took is played by its bot.
    fills = []
    for seat in game.seats.order_by("id"):
        if seat.kind == Seat.Kind.HUMAN and not seat.has_player:
            strategy = {"strategy": seat.fallback_strategy}
            fills.append(
                _move(game, Action.FILL, Actor.SYSTEM, now=now, seat=seat, payload=strategy)
            )
    _save_moves(game, fills)
    _begin_phase(game, Phase.BIDDING, now, changes)
    _drive(game, now, changes, expired=False)


def _finish(game: Game, now: dt.datetime, changes: _Changes, *, actor: str) -> None:
    game.status = Status.FINISHED
    game.finished_at = now
    game.phase_deadline = None
    game.paused_remaining = None
    _log(game, Action.END, actor, now=now)
    changes.add("game_over", game.round_no)


def _default_payload(action: str) -> dict[str, Any]:
    """The documented default of a human who did not act: bid 0, keep, idle, no audits."""
    if action == Action.BID:
        return {"amount": 0.0}
    if action == Action.ASK:  # a default never sells a student's permit (model-decisions.md)
        return {"amount": None}
    if action == Action.DECIDE:
        return {"run": False}
    return {"labs": []}


def _fill_owed(game: Game, position: bridge.Position, now: dt.datetime) -> None:
    """At a deadline: defaults for present humans who owe a move, bots for absent ones."""
    progress = position.progress
    if game.phase == Phase.AUDIT:
        governor = position.governor_seat()
        owed = [governor] if governor is not None else []
        action = Action.AUDIT
    else:
        lab_seats = position.lab_seats()
        owed = [lab_seats[lab] for lab in sorted(progress.waiting_for)]
        action = Action.BID if game.phase == Phase.BIDDING else Action.DECIDE
    connected = connected_seat_ids(game, now) if owed else set()
    entries: list[Move] = []
    away: list[Seat] = []
    for seat in owed:
        if action == Action.BID and _holds_granted(progress, seat):
            action = Action.ASK  # MODEL.md §3b: a holder's default keeps its permit
        elif action == Action.ASK and not _holds_granted(progress, seat):
            action = Action.BID
        if seat.pk in connected:
            payload = _default_payload(action)
            entries.append(_move(game, action, Actor.DEFAULT, now=now, seat=seat, payload=payload))
        else:
            seat.standing_in = True
            seat.controller = Controller.BOT
            away.append(seat)
            entries.append(_move(game, Action.STAND_IN, Actor.SYSTEM, now=now, seat=seat))
    if away:
        Seat.objects.filter(pk__in=[s.pk for s in away]).update(
            standing_in=True, controller=Controller.BOT
        )
        journal = _journal()
        if journal is not None:
            journal.stale = True  # seats changed hands: the rows are read again
    _save_moves(game, entries)


def _holds_granted(progress: RoundProgress, seat: Seat) -> bool:
    """Whether ``seat``'s lab was granted a permit this round (MODEL.md §3b: it asks or keeps)."""
    granted = progress.granted
    return granted is not None and seat.lab_index is not None and bool(granted[seat.lab_index])


def _log_bot_moves(game: Game, position: bridge.Position, now: dt.datetime) -> None:
    """Log, with actor "bot", the moves sim_core's strategies made in the phase that ended."""
    progress = position.progress
    moved = {move.seat_id for move in position.moves if move.phase == game.phase}
    if game.phase == Phase.AUDIT:
        governor = position.governor_seat()
        if governor is not None and governor.pk not in moved and progress.audited is not None:
            labs = [int(lab) for lab in progress.audited.nonzero()[0]]
            _log(game, Action.AUDIT, Actor.BOT, now=now, seat=governor, payload={"labs": labs})
        return
    entries: list[Move] = []
    for lab, seat in sorted(position.lab_seats().items()):
        if seat.pk in moved:
            continue
        if (
            game.phase == Phase.BIDDING
            and progress.asks is not None
            and _holds_granted(progress, seat)
        ):
            ask = float(progress.asks[lab])
            payload: dict[str, Any] = {"amount": ask if math.isfinite(ask) else None}
            entries.append(_move(game, Action.ASK, Actor.BOT, now=now, seat=seat, payload=payload))
        elif game.phase == Phase.BIDDING and progress.bids is not None:
            payload = {"amount": float(progress.bids[lab])}
            entries.append(_move(game, Action.BID, Actor.BOT, now=now, seat=seat, payload=payload))
        elif game.phase == Phase.COMPLIANCE and progress.runs is not None:
            assert progress.market is not None
            if not progress.market.won[lab]:
                payload = {"run": bool(progress.runs[lab])}
                entries.append(
                    _move(game, Action.DECIDE, Actor.BOT, now=now, seat=seat, payload=payload)
                )
    _save_moves(game, entries)


def _drive(
    game: Game,
    now: dt.datetime,
    changes: _Changes,
    *,
    expired: bool,
    position: bridge.Position | None = None,
    rows: bridge.Rows | None = None,
) -> bridge.Position | None:
    """Advance the locked ``game`` as far as its moves (and an expired deadline) allow.

    Call while holding the game's lock. ``expired`` means the current phase's deadline has
    passed or the instructor advanced it. ``position``: the round as the caller has just
    resolved it (with every logged move); it is used until a seat changes hands, so a move
    that ends a phase resolves the round once. ``rows``: the game's rows as the caller began
    (``bridge.rows_of``, under the lock; the caller keeps a journal): a round is then
    resolved from them and what was logged since, and a new round's seats are not read again.

    Returns the position the game rests at (the round resolved with every move, the bots'
    included), if it was resolved here or given; None if not (or the game ended).
    """
    while game.status == Status.RUNNING:
        expired = expired or (game.phase_deadline is not None and game.phase_deadline <= now)
        if game.phase == Phase.RESULTS:
            if not expired:
                return position
            expired = False
            if game.round_no >= game.rounds:
                _finish(game, now, changes, actor=Actor.SYSTEM)
                return None
            game.round_no += 1
            position = None  # a new round
            _begin_phase(game, Phase.BIDDING, now, changes, _held_seats(rows))
            continue
        if position is None:
            position = _position_now(game, rows)
        progress = position.progress
        if progress.awaiting == game.phase:
            if not expired:
                return position
            _fill_owed(game, position, now)
            expired = False
            game.phase_deadline = None  # filled; the re-resolve below ends the phase
            position = None
            continue
        _log_bot_moves(game, position, now)
        finished = Phase(game.phase)
        if finished == Phase.BIDDING:
            changes.add("market", game.round_no)
        elif finished == Phase.COMPLIANCE:
            changes.add("signals", game.round_no)
        elif finished == Phase.AUDIT:
            # The bots' moves just logged are the ones this resolve drew, so it is the
            # settled round (replay_game recomputes it from the log and compares).
            record = RoundRecord.objects.create(
                game=game, created_at=now, **bridge.record_fields(progress, position.state)
            )
            seats = _held_seats(rows)
            if seats is not None:  # the event's screens add it without reading it back
                keep = partial(selectors.keep_settled, game, seats, record)
                transaction.on_commit(keep, robust=True)
            changes.add("settled", game.round_no)
        if _begin_phase(game, _NEXT_PHASE[finished], now, changes, position.seats):
            position = None  # who must move changed: resolve again
        expired = False
    return None


def _held_seats(rows: bridge.Rows | None) -> list[Seat] | None:
    """Return the seats of ``rows`` while they are the database's (no seat changed hands)."""
    journal = _journal()
    if rows is None or journal is None or journal.stale:
        return None
    return rows.seats


def _position_now(game: Game, rows: bridge.Rows | None) -> bridge.Position:
    """Resolve the locked game's current round: from ``rows`` and what was logged since.

    The round's moves are the rows' (if they are of this round) and the log entries this
    transaction saved in it (the journal's); read again if there are no rows or a seat
    changed hands.
    """
    seats = _held_seats(rows)
    journal = _journal()
    if seats is None or rows is None or journal is None:
        return bridge.position_of(game)
    same_round = rows.key.round_no == game.round_no
    logged = bridge.round_entries(journal.moves, game.round_no)
    moves = [*(rows.moves if same_round else ()), *logged]
    state = bridge.state_of(game, bridge.setup_of(game), rows) if same_round else None
    return bridge.position_of(game, seats=seats, moves=moves, state=state)


def _carry_rows(rows: bridge.Rows, game: Game, resting: bridge.Position | None) -> None:
    """Once the transaction commits, carry ``rows`` on to the game's new version.

    The rows of the new version are the ones the transaction began with and what it logged
    (its moves; the bots' moves of a phase it ended), and the round as it left it resolved:
    the next batch and the next screens of this process read none of them again, and the
    screens resolve nothing. Not if a seat changed hands (the next reader reads them).
    """
    journal = _journal()
    if journal is not None and not journal.stale:
        saved = list(journal.moves)
        transaction.on_commit(partial(bridge.advance_rows, rows, game, saved, resting))


# ------------------------------------------------------------------------------ moves


def _check_move(game: Game, seat: Seat, action: str, round_no: int) -> None:
    phase = _MOVE_PHASE[action]
    what = _MOVE_WHAT[action]
    if game.status == Status.LOBBY:
        raise NotRunning(NOT_STARTED)
    if game.status == Status.FINISHED:
        raise GameOver(GAME_IS_OVER)
    if action == Action.AUDIT and seat.role != Role.GOVERNOR:
        raise WrongRole(NOT_THE_GOVERNOR)
    if action != Action.AUDIT and seat.role != Role.LAB:
        raise WrongRole(NOT_A_LAB.format(what=_LAB_MOVE_WHAT[action]))
    if (game.round_no, game.phase) != (round_no, phase):
        raise StaleMove(
            STALE_MOVE.format(
                what=what,
                round_no=round_no,
                phase=phase,
                game_round=game.round_no,
                game_phase=game.phase,
            )
        )
    if game.status == Status.PAUSED:
        raise Paused(GAME_IS_PAUSED)


@dataclass(frozen=True, slots=True)
class MoveCommand:
    """One player's move as it arrived, its shape already checked (``forms``).

    ``action``: bid, ask, decide, audit or belief; ``payload`` as it is logged (an ask of None
    keeps the permit; an audit's labs are 0-based and sorted).
    """

    seat_id: int
    action: str
    round_no: int
    payload: dict[str, Any]


#: What ``round_submit_moves`` answers per command: the move's result, or why it was refused.
Outcome = MoveResult | GameError


def round_submit_moves(
    *,
    game_id: int,
    commands: Sequence[MoveCommand] | Callable[[], Sequence[MoveCommand]],
    publish_later: list[Callable[[], None]] | None = None,
) -> list[Outcome]:
    """Record the moves of one game that arrived together: one transaction, one resolve.

    Group commit: the game is locked once, its seats and the round's moves are read once, each
    command is checked as ``round_submit_bid`` and its siblings check one move (its own error:
    stale, wrong role, already submitted, ...), and the round is resolved ONCE with every new
    move added, which is both the rule check and the position the phase machine goes on from.
    If sim_core refuses that resolve (``ActionError``), or two commands of the batch are the
    same seat's same move (a resend), the batch is checked again one command at a time, in
    arrival order, so each refused command gets its own error and the others still go in. The
    new moves are saved in one write (the hash chain in arrival order), the phase machine runs
    once and the change is published once, after commit.

    Every command is judged against the game as it stood when the batch began: a batch of
    moves of one phase that ends the phase is the same as those moves made one after another.

    ``commands``: the moves, or a function that gives them, called once the game is locked and
    its rows read: a queue's moves that arrive while the batch waits for the lock (another
    process's batch holds it) then go in this batch instead of waiting for the next one.

    ``publish_later``: an event the batch causes (a phase change) is not sent at commit but
    appended there once committed, so the caller can answer the players first and then run it.

    Returns:
        One outcome per command, in order: a ``MoveResult`` (recorded, or a repeat of the
        logged move) or the ``GameError`` it was refused with. Nothing refused is stored.
    """
    with _journaled(game_id), transaction.atomic():
        return _submit_batch(game_id, commands, later=publish_later)


def _submit_batch(
    game_id: int,
    commands: Sequence[MoveCommand] | Callable[[], Sequence[MoveCommand]],
    *,
    later: list[Callable[[], None]] | None = None,
) -> list[Outcome]:
    """``round_submit_moves`` inside its transaction (see there; ``commands`` called here).

    Queries: the lock, the seats, the round's moves, the round's start state (after round 1),
    the new moves (one write), the game's save; the round's beliefs only if a belief came; a
    batch that ends a phase adds that phase's log entries and the next phase's.
    """
    game = _lock(game_id)
    # The seats and the round's moves as this process last knew them, if that is still the
    # game's version (the lock holds it); read once otherwise (``bridge.Rows``).
    rows = bridge.rows_of(game)
    if callable(commands):  # as late as can be: what queued meanwhile goes in too
        commands = commands()
    seats = rows.seats
    by_id = {s.pk: s for s in seats}
    now = clock.now()
    outcomes: list[Outcome | None] = [None] * len(commands)
    started = game.phase_started_at or now
    latency = max(0, int((now - started).total_seconds() * 1000))
    logged: dict[tuple[int | None, str, str], Move] | None = None  # built for the first move
    beliefs: dict[int, Move] | None = None
    new: dict[int, Move] = {}  # command index -> the move it would log
    asked: list[int] = []  # beliefs that passed their checks: the permit is checked last
    for index, command in enumerate(commands):
        seat = by_id.get(command.seat_id)
        try:
            if seat is None:
                raise WrongRole(NOT_A_LAB.format(what="move"))
            if command.action == Action.BELIEF:
                if beliefs is None:
                    beliefs = _round_beliefs(game)
                outcomes[index] = _check_belief(game, seat, command, beliefs)
            else:
                _check_move(game, seat, command.action, command.round_no)
                if logged is None:
                    logged = _logged_index(rows.moves)
                outcomes[index] = _check_logged(game, seat, command, logged, now)
        except GameError as error:
            outcomes[index] = error
            continue
        if outcomes[index] is None:
            if command.action == Action.BELIEF:
                asked.append(index)
            actor = Actor.HUMAN if command.action == Action.BELIEF else _seat_actor(seat)
            new[index] = _move(
                game,
                command.action,
                actor,
                now=now,
                seat=seat,
                payload=command.payload,
                latency_ms=latency,
            )
    if not new:
        return _all(outcomes)
    moves = rows.moves  # every logged move of the round: the resolve is the whole round's
    played = {i: m for i, m in new.items() if m.action != Action.BELIEF}
    keys = [(m.seat_id, m.action) for m in new.values()]
    position: bridge.Position | None = None
    state = bridge.state_of(game, bridge.setup_of(game), rows)
    if len(set(keys)) == len(keys):
        try:
            position = bridge.position_of(
                game, seats=seats, moves=[*moves, *played.values()], state=state
            )
        except ActionError as error:
            if len(played) == 1:  # that resolve was the one move's own check
                (only,) = played
                outcomes[only] = NotAllowed(str(error))
                del new[only]
                if not new:
                    return _all(outcomes)
                position = bridge.position_of(game, seats=seats, moves=moves, state=state)
    if position is None:  # a move of the batch is refused, or a seat sent one twice
        position = _one_by_one(game, seats, moves, commands, new, outcomes, state)
    for index in asked:  # a repeat in the batch shares the first one's fate
        refused = _belief_refused(position, by_id[commands[index].seat_id])
        if refused is not None:
            outcomes[index] = refused
            new.pop(index, None)
    for index, move in new.items():
        outcomes[index] = MoveResult(duplicate=False, payload=move.payload)
    if not new:
        return _all(outcomes)
    _save_moves(game, list(new.values()))  # in arrival order: the hash chain's order
    changes = _Changes()
    changes.seat_ids.update(move.seat_id for move in new.values() if move.seat_id is not None)
    if any(move.action != Action.BELIEF for move in new.values()):
        changes.add("waiting", game.round_no)
        resting = _drive(game, now, changes, expired=False, position=position, rows=rows)
    else:
        resting = position  # beliefs alone: the round as it stood, resolved with its moves
    _commit(game, changes, later=later)
    _carry_rows(rows, game, resting)
    return _all(outcomes)


def _all(outcomes: Sequence[Outcome | None]) -> list[Outcome]:
    """Return the outcomes of a batch, every command having one."""
    assert all(outcome is not None for outcome in outcomes)
    return [outcome for outcome in outcomes if outcome is not None]


def _logged_index(moves: Sequence[Move]) -> dict[tuple[int | None, str, str], Move]:
    """Return the round's moves by (seat, action, phase), the first of each (a batch's look-up)."""
    index: dict[tuple[int | None, str, str], Move] = {}
    for move in moves:
        index.setdefault((move.seat_id, str(move.action), str(move.phase)), move)
    return index


def _check_logged(
    game: Game,
    seat: Seat,
    command: MoveCommand,
    moves: Mapping[tuple[int | None, str, str], Move],
    now: dt.datetime,
) -> Outcome | None:
    """Check a move against the round's log; None if it is new and may be made now.

    ``moves``: the round's log by (seat, action, phase) (``_logged_index``). Returns the logged
    move's result for an identical repeat of a player's own move.

    Raises:
        AlreadySubmitted, StaleMove (the deadline passed), BotPlaying.
    """
    action = command.action
    logged = moves.get((seat.pk, str(action), str(game.phase)))
    if logged is not None:
        if logged.actor in (Actor.HUMAN, Actor.PROGRAM) and logged.payload == command.payload:
            return MoveResult(duplicate=True, payload=logged.payload)
        raise AlreadySubmitted(
            ALREADY_SUBMITTED.format(what=_MOVE_WHAT[action], round_no=command.round_no)
        )
    if game.phase_deadline is not None and game.phase_deadline <= now:
        # The deadline has passed but the clock loop has not fired it yet: the phase is over,
        # and the move would be a human's where the log must say default or bot.
        raise StaleMove(
            TIME_IS_UP.format(round_no=command.round_no, phase=game.phase, what=_MOVE_WHAT[action])
        )
    if seat.controller != Controller.HUMAN:
        raise BotPlaying(BOT_PLAYS_HANDED if seat.handed_to_bot else BOT_PLAYS_LATE_JOINER)
    return None


def _round_beliefs(game: Game) -> dict[int, Move]:
    """Return the current round's logged beliefs by seat id."""
    rows = Move.objects.filter(game=game, round_no=game.round_no, action=Action.BELIEF)
    return {move.seat_id: move for move in rows if move.seat_id is not None}


def _check_belief(
    game: Game, seat: Seat, command: MoveCommand, beliefs: Mapping[int, Move]
) -> Outcome | None:
    """Check a belief against the game and the round's log; None if it is new.

    Raises:
        NotAllowed (the game does not ask), StaleMove, WrongRole, NotRunning, Paused, GameOver,
        AlreadySubmitted, BotPlaying.
    """
    if not game.ask_belief:
        raise NotAllowed(BELIEF_NOT_ASKED)
    _check_move(game, seat, Action.DECIDE, command.round_no)  # asked in the compliance phase
    logged = beliefs.get(seat.pk)
    if logged is not None:
        if logged.payload == command.payload:
            return MoveResult(duplicate=True, payload=logged.payload)
        raise AlreadySubmitted(ALREADY_SUBMITTED.format(what="answer", round_no=command.round_no))
    if seat.controller != Controller.HUMAN:
        raise BotPlaying(BOT_PLAYS_HANDED if seat.handed_to_bot else BOT_PLAYS_LATE_JOINER)
    return None


def _belief_refused(position: bridge.Position, seat: Seat) -> NotAllowed | None:
    """A lab that won a permit this round is not asked what it believes (MODEL.md §4)."""
    market = position.progress.market
    if market is not None and seat.lab_index is not None and market.won[seat.lab_index]:
        return NotAllowed(BELIEF_WITH_PERMIT)
    return None


def _one_by_one(
    game: Game,
    seats: Sequence[Seat],
    moves: Sequence[Move],
    commands: Sequence[MoveCommand],
    new: dict[int, Move],
    outcomes: list[Outcome | None],
    state: GameState,
) -> bridge.Position:
    """Check the batch's new moves one at a time, in arrival order (the rare path).

    A move sim_core refuses gets ``NotAllowed``; a repeat of a move accepted earlier in the
    batch is a duplicate (same payload) or ``AlreadySubmitted``. Drops refused and repeated
    commands from ``new`` and sets their outcomes; returns the position with the accepted moves.
    """
    accepted: list[Move] = []
    seen: dict[tuple[int | None, str], Move] = {}
    position: bridge.Position | None = None
    for index in sorted(new):
        move = new[index]
        key = (move.seat_id, str(move.action))
        earlier = seen.get(key)
        if earlier is not None:
            command = commands[index]
            what = "answer" if move.action == Action.BELIEF else _MOVE_WHAT[move.action]
            outcomes[index] = (
                MoveResult(duplicate=True, payload=earlier.payload)
                if earlier.payload == move.payload
                else AlreadySubmitted(
                    ALREADY_SUBMITTED.format(what=what, round_no=command.round_no)
                )
            )
            del new[index]
            continue
        if move.action == Action.BELIEF:
            seen[key] = move
            continue
        try:
            position = bridge.position_of(
                game, seats=seats, moves=[*moves, *accepted, move], state=state
            )
        except ActionError as error:
            outcomes[index] = NotAllowed(str(error))
            del new[index]
            continue
        accepted.append(move)
        seen[key] = move
    if position is None:  # no move of the batch went in (only beliefs, or all refused)
        position = bridge.position_of(game, seats=seats, moves=[*moves, *accepted], state=state)
    return position


def _submit(*, seat: Seat, round_no: int, action: str, payload: dict[str, Any]) -> MoveResult:
    """Check, record and resolve one move under the game's lock (a batch of one).

    Raises:
        GameError: whatever ``round_submit_moves`` refuses the move with.
    """
    command = MoveCommand(seat_id=seat.pk, action=action, round_no=round_no, payload=payload)
    with _journaled(seat.game_id):
        (outcome,) = _submit_batch(seat.game_id, [command])
    if isinstance(outcome, GameError):
        raise outcome
    return outcome


@transaction.atomic
def round_submit_bid(*, seat: Seat, round_no: int, amount: float) -> MoveResult:
    """Record a lab's sealed bid for ``round_no``; advance the game if it was the last one owed.

    Raises:
        StaleMove: the game is not in round ``round_no``'s bidding phase.
        NotAllowed: sim_core refuses the bid (not within [0, wealth], MODEL.md §4 step 1).
        WrongRole, NotRunning, Paused, GameOver, BotPlaying, AlreadySubmitted.
    """
    return _submit(seat=seat, round_no=round_no, action=Action.BID, payload={"amount": amount})


@transaction.atomic
def round_submit_belief(*, seat: Seat, round_no: int, percent: int) -> MoveResult:
    """Record a lab's answer to "how likely is a violator caught this round?" (0-100 %).

    Asked, when the game's ``ask_belief`` is on, of a lab without a permit before it chooses to
    run or idle; answering is optional and changes nothing in the game. It is logged as a move
    (action ``belief``, outside the resolver's moves) so exports and the debrief read it.

    Raises:
        NotAllowed: the game does not ask, or the lab holds a permit this round.
        StaleMove, WrongRole, NotRunning, Paused, GameOver, BotPlaying, AlreadySubmitted.
    """
    payload = {"percent": int(percent)}
    return _submit(seat=seat, round_no=round_no, action=Action.BELIEF, payload=payload)


@transaction.atomic
def round_submit_choice(*, seat: Seat, round_no: int, run: bool) -> MoveResult:
    """Record whether a lab without a permit runs anyway (MODEL.md §4 step 3).

    Raises:
        StaleMove: the game is not in round ``round_no``'s compliance phase.
        NotAllowed: the lab holds a permit (permit holders always run).
        WrongRole, NotRunning, Paused, GameOver, BotPlaying, AlreadySubmitted.
    """
    return _submit(seat=seat, round_no=round_no, action=Action.DECIDE, payload={"run": run})


@transaction.atomic
def round_submit_audits(*, seat: Seat, round_no: int, labs: Iterable[int]) -> MoveResult:
    """Record the governor's audit set, as 0-based lab indexes (MODEL.md §4 step 5, §6).

    Raises:
        StaleMove: the game is not in round ``round_no``'s audit phase.
        NotAllowed: a lab that does not exist, or more labs than ``max_audits``.
        WrongRole, NotRunning, Paused, GameOver, BotPlaying, AlreadySubmitted.
    """
    picks = sorted({int(lab) for lab in labs})
    return _submit(seat=seat, round_no=round_no, action=Action.AUDIT, payload={"labs": picks})


# ----------------------------------------------------------------------- the instructor, the clock


@transaction.atomic
def game_start(*, game: Game, actor: str = Actor.HOST) -> Game:
    """Start a game from the lobby: round 1's bidding begins; bots play the empty seats.

    Raises:
        NotRunning: the game is not in the lobby.
    """
    game = _lock(game.pk)
    if game.status != Status.LOBBY:
        raise NotRunning("The game has already started.")
    changes = _Changes()
    _start(game, clock.now(), changes, actor=actor)
    _commit(game, changes)
    return game


@transaction.atomic
def game_expire_phase(
    *, game_id: int, publish_later: list[Callable[[], None]] | None = None
) -> bool:
    """Fire the game's deadline if it has passed; return whether it fired (the clock's call).

    ``publish_later``: the event is appended there once committed, for the caller to send
    (the clock fires every due game first, then sends them: ``ticker.tick``); without it the
    event is sent as the transaction commits.

    Safe to call from any number of processes at once: under the lock the deadline is read
    again, and the first caller moves it on, so it fires exactly once. A game whose row another
    transaction holds (another process's clock firing it, a batch of moves) is skipped, not
    waited for: every process's clock goes through the same due games, and waiting would make
    them fire one after another in step; the next beat finds it again if it is still due.
    """
    game = _try_lock(game_id)
    now = clock.now()
    if game is None or game.phase_deadline is None or game.phase_deadline > now:
        return False
    changes = _Changes()
    if game.status == Status.LOBBY:
        _start(game, now, changes, actor=Actor.SYSTEM)
        _commit(game, changes, later=publish_later)
        return True
    if game.status != Status.RUNNING:
        return False
    with _journaled(game_id):
        # The rows the last batch carried on (or read once): a deadline in a room of hundreds
        # reads no seat again, and a new round begins from them.
        rows = bridge.rows_of(game)
        resting = _drive(game, now, changes, expired=True, rows=rows)
        _commit(game, changes, later=publish_later)
        _carry_rows(rows, game, resting)
    return True


@transaction.atomic
def game_advance_now(*, game: Game) -> Game:
    """End the current phase now, as if its deadline had passed (the lobby: start the game).

    Raises:
        Paused: resume the game first.
        GameOver: the game has finished.
    """
    game = _lock(game.pk)
    if game.status == Status.LOBBY:
        return game_start(game=game)
    if game.status == Status.FINISHED:
        raise GameOver(GAME_IS_OVER)
    if game.status == Status.PAUSED:
        raise Paused("Resume the game before advancing it.")
    now = clock.now()
    changes = _Changes()
    _log(game, Action.ADVANCE, Actor.HOST, now=now)
    _drive(game, now, changes, expired=True)
    _commit(game, changes)
    return game


def game_play_out(*, game: Game) -> Game:
    """Advance phase after phase, as the instructor's "advance now" does, until the game is over.

    Starts a game still in the lobby. Every seat that owes a move gets its default or its bot.
    For demo data and all-bot classes; each step is its own transaction.

    Raises:
        Paused: resume the game first.
    """
    game = Game.objects.get(pk=game.pk)
    # Each advance ends at least one phase; a round has at most five and the lobby one more.
    for _ in range(5 * game.rounds + 2):
        if game.status == Status.FINISHED:
            return game
        game = game_advance_now(game=game)
    raise RuntimeError(f"game {game.code} did not end after {game.rounds} rounds of advances")


@transaction.atomic
def game_pause(*, game: Game) -> Game:
    """Stop the clock: the remaining seconds are kept and no move is taken until resumed.

    Raises:
        NotRunning: the game is not running.
    """
    game = _lock(game.pk)
    if game.status != Status.RUNNING:
        raise NotRunning("Only a running game can be paused.")
    now = clock.now()
    remaining = None
    if game.phase_deadline is not None:
        remaining = max(0.0, (game.phase_deadline - now).total_seconds())
    game.status = Status.PAUSED
    game.paused_remaining = remaining
    game.phase_deadline = None
    _log(game, Action.PAUSE, Actor.HOST, now=now, payload={"remaining": remaining})
    changes = _Changes()
    changes.add("phase", game.round_no)
    _commit(game, changes)
    return game


@transaction.atomic
def game_resume(*, game: Game) -> Game:
    """Restart the clock with the seconds that were left when the game was paused.

    Raises:
        NotRunning: the game is not paused.
    """
    game = _lock(game.pk)
    if game.status != Status.PAUSED:
        raise NotRunning("Only a paused game can be resumed.")
    now = clock.now()
    game.status = Status.RUNNING
    if game.paused_remaining is not None:
        game.phase_deadline = now + dt.timedelta(seconds=game.paused_remaining)
    _log(game, Action.RESUME, Actor.HOST, now=now, payload={"remaining": game.paused_remaining})
    game.paused_remaining = None
    changes = _Changes()
    changes.add("phase", game.round_no)
    _drive(game, now, changes, expired=False)  # a seat handed to a bot while paused
    _commit(game, changes)
    return game


@transaction.atomic
def game_extend(*, game: Game, seconds: float) -> Game:
    """Give the current phase ``seconds`` more (a phase without a deadline gets one).

    Raises:
        ValueError: ``seconds`` is not positive.
        NotRunning: the game is not running or paused.
    """
    if not seconds > 0:
        raise ValueError("seconds must be positive")
    game = _lock(game.pk)
    now = clock.now()
    if game.status == Status.RUNNING:
        base = game.phase_deadline if game.phase_deadline is not None else now
        game.phase_deadline = base + dt.timedelta(seconds=seconds)
    elif game.status == Status.PAUSED:
        game.paused_remaining = (game.paused_remaining or 0.0) + seconds
    else:
        raise NotRunning("Only a running or paused game has a timer.")
    _log(game, Action.EXTEND, Actor.HOST, now=now, payload={"seconds": seconds})
    changes = _Changes()
    changes.add("phase", game.round_no)
    _commit(game, changes)
    return game


@transaction.atomic
def game_end(*, game: Game) -> Game:
    """End the game now (after the rounds played so far); a finished game stays as it is."""
    game = _lock(game.pk)
    if game.status == Status.FINISHED:
        return game
    changes = _Changes()
    _finish(game, clock.now(), changes, actor=Actor.HOST)
    _commit(game, changes)
    return game


@transaction.atomic
def seat_hand_to_bot(*, seat: Seat, to_bot: bool = True) -> Seat:
    """Hand a seat to its fallback bot at once (``to_bot``), or give it back to its player.

    A bot takes over immediately, so the current phase does not wait for the seat; the player
    gets it back from the next phase.

    Raises:
        NotRunning: the game is not running or paused.
        SeatChange: nobody has joined the seat (a bot plays it anyway).
    """
    game = _lock(seat.game_id)
    seat = Seat.objects.get(pk=seat.pk)
    if game.status not in (Status.RUNNING, Status.PAUSED):
        raise NotRunning(HAND_WHILE_PLAYING)
    if not seat.has_player:
        label = "The governor's seat" if seat.role == Role.GOVERNOR else lab_label(seat.player_id)
        raise SeatChange(HAND_NO_PLAYER.format(label=label))
    now = clock.now()
    changes = _Changes()
    if seat.handed_to_bot == to_bot:
        return seat
    seat.handed_to_bot = to_bot
    if to_bot:
        seat.controller = Controller.BOT
    seat.save()
    _log(game, Action.HAND_TO_BOT if to_bot else Action.HAND_BACK, Actor.HOST, now=now, seat=seat)
    changes.seat_ids.add(seat.pk)
    changes.add("seats", game.round_no)
    _drive(game, now, changes, expired=False)
    _commit(game, changes)
    return seat


# ------------------------------------------------------------------------------ the lobby

LOBBY_ONLY = "Seats can be changed only before the game starts."
LAST_LAB = "A game needs at least one lab."
NO_EMPTY_SEAT = "Every lab seat has a player; only an empty seat can be removed."
SEAT_HAS_PLAYER = "{label} is {nickname}'s seat; only an empty seat can be removed."
NOT_A_LAB_SEAT = "That seat is not a lab of this game."
NOT_A_PLAYER = "Only a student who has joined can be made the governor."
PRESET_NAME_EMPTY = "Give the preset a name."
PRESET_NAME_TOO_LONG = "A preset name has at most {limit} characters."
PRESET_NAME_MAX = 60


def _check_lobby(game: Game) -> None:
    if game.status != Status.LOBBY:
        raise NotRunning(LOBBY_ONLY)


def _set_lab_count(game: Game, count: int) -> None:
    """Store N = ``count`` in the game's scenario and re-derive every lab's fallback strategy.

    Call while holding the game's lock, in the lobby, after the lab seats are 0..count-1. The
    scenario goes through sim_core's validation again; a strategy mix becomes exact counts of
    bots for the new N (MODEL.md §10).
    """
    document = dict(game.scenario)
    document["labs"] = {**document["labs"], "count": count}
    scenario = parse_scenario(document)
    game.scenario = scenario_to_dict(scenario)
    setup = make_setup(scenario, seed=game.seed, human_governor=game.human_governor)
    for seat in game.seats.filter(role=Role.LAB):
        assert seat.lab_index is not None
        strategy = setup.strategy_name(seat.lab_index)
        if seat.fallback_strategy != strategy:
            seat.fallback_strategy = strategy
            seat.save(update_fields=["fallback_strategy"])


@transaction.atomic
def game_add_bot(*, game: Game) -> Seat:
    """Add a lab played by a bot (N grows by one); a student who joins later may take it.

    Raises:
        NotRunning: the game has left the lobby.
    """
    game = _lock(game.pk)
    _check_lobby(game)
    count = game.lab_count
    seat = Seat.objects.create(
        game=game, role=Role.LAB, lab_index=count, kind=Seat.Kind.BOT, fallback_strategy=""
    )
    _set_lab_count(game, count + 1)
    _log(game, Action.ADD_BOT, Actor.HOST, now=clock.now(), payload={"lab": count + 1})
    changes = _Changes()
    changes.add("seats", game.round_no)
    _commit(game, changes)
    seat.refresh_from_db()
    return seat


@transaction.atomic
def game_remove_bot(*, game: Game, seat: Seat | None = None) -> None:
    """Remove an empty lab seat (N shrinks by one): ``seat``, or else the last empty bot seat.

    The labs after it move down one number, so lab numbers stay 1..N; their players see their
    new number at once.

    Raises:
        NotRunning: the game has left the lobby.
        SeatChange: the seat has a player, no seat is empty, or it is the last lab.
    """
    game = _lock(game.pk)
    _check_lobby(game)
    labs = list(game.seats.filter(role=Role.LAB).order_by("lab_index"))
    if len(labs) <= 1:
        raise SeatChange(LAST_LAB)
    if seat is None:
        empty = [s for s in labs if not s.has_player]
        if not empty:
            raise SeatChange(NO_EMPTY_SEAT)
        # Seats created for bots go first, then those left open for students; the last first.
        target = max(empty, key=lambda s: (s.kind == Seat.Kind.BOT, s.lab_index or 0))
    else:
        found = next((s for s in labs if s.pk == seat.pk), None)
        if found is None:
            raise SeatChange(NOT_A_LAB_SEAT)
        if found.has_player:
            label = lab_label(found.player_id)
            raise SeatChange(SEAT_HAS_PLAYER.format(label=label, nickname=found.nickname))
        target = found
    removed = target.lab_index or 0
    target.delete()  # an empty lobby seat: no move of the log refers to it
    changes = _Changes()
    renumbered = []
    for later in labs:
        if later.lab_index is not None and later.lab_index > removed:
            later.lab_index -= 1  # ascending order: the number below is always free
            later.save(update_fields=["lab_index"])
            moved = {"seat": later.pk, "from": later.lab_index + 2, "to": later.lab_index + 1}
            renumbered.append(moved)
            if later.has_player:
                changes.seat_ids.add(later.pk)
    _set_lab_count(game, len(labs) - 1)
    _log(
        game,
        Action.REMOVE_SEAT,
        Actor.HOST,
        now=clock.now(),
        payload={"lab": removed + 1, "moved": renumbered},
    )
    changes.add("seats", game.round_no)
    _commit(game, changes)


def _swap_roles(lab_seat: Seat, governor_seat: Seat) -> None:
    """Make ``lab_seat`` the governor's seat and ``governor_seat`` a lab with its number.

    Seats keep their players (token, nickname, private group): roles move, people do not, so a
    socket that has not reconnected yet can never receive another player's private messages.
    """
    index = lab_seat.lab_index
    lab_seat.role = Role.GOVERNOR
    lab_seat.lab_index = None
    lab_seat.save(update_fields=["role", "lab_index"])
    governor_seat.role = Role.LAB
    governor_seat.lab_index = index
    governor_seat.kind = Seat.Kind.HUMAN  # open for the next student, or its player's
    governor_seat.save(update_fields=["role", "lab_index", "kind"])


@transaction.atomic
def game_set_governor(*, game: Game, seat: Seat | None) -> None:
    """Choose who plays the governor in the lobby: the student of lab ``seat``, or a bot (None).

    A student made governor leaves their lab seat empty (open for the next student, a bot plays
    it otherwise); a governor replaced by a bot moves to an empty lab seat (a new lab when there
    is none). The sockets of the players who changed role reconnect to get their new screens.

    Raises:
        NotRunning: the game has left the lobby.
        SeatChange: ``seat`` is not a lab of this game, or nobody has joined in it.
    """
    game = _lock(game.pk)
    _check_lobby(game)
    seats = list(game.seats.order_by("id"))
    governor = next(s for s in seats if s.role == Role.GOVERNOR)
    moved: list[int] = []
    nickname: str | None = None
    if seat is not None:
        target = next((s for s in seats if s.pk == seat.pk), None)
        if target is None or target.role != Role.LAB:
            raise SeatChange(NOT_A_LAB_SEAT)
        if not target.has_player:
            raise SeatChange(NOT_A_PLAYER)
        moved = [target.pk] + ([governor.pk] if governor.has_player else [])
        _swap_roles(target, governor)
        governor = target
        nickname = target.nickname
        game.human_governor = True
    else:
        if governor.has_player:
            moved = [governor.pk]  # the seat moves with its player
            free = [s for s in seats if s.role == Role.LAB and not s.has_player]
            if free:
                spot = min(free, key=lambda s: (s.kind != Seat.Kind.HUMAN, s.lab_index or 0))
                _swap_roles(spot, governor)
                governor = spot
            else:
                governor.role = Role.LAB
                governor.lab_index = game.lab_count
                governor.save(update_fields=["role", "lab_index"])
                governor = Seat.objects.create(
                    game=game, role=Role.GOVERNOR, kind=Seat.Kind.BOT, fallback_strategy=""
                )
        game.human_governor = False
    governor.kind = Seat.Kind.HUMAN if game.human_governor else Seat.Kind.BOT
    governor.fallback_strategy = bridge.scenario_of(game).governor.policy
    governor.save(update_fields=["kind", "fallback_strategy"])
    lab_count = game.seats.filter(role=Role.LAB).count()
    _set_lab_count(game, lab_count)
    _log(
        game,
        Action.ASSIGN,
        Actor.HOST,
        now=clock.now(),
        seat=governor if seat is not None else None,
        payload={"governor": nickname},
    )
    changes = _Changes()
    changes.add("seats", game.round_no)
    changes.seat_ids.update(moved)
    _commit(game, changes)
    if moved:
        transaction.on_commit(
            partial(realtime.send_seat_moved, game_id=game.pk, seat_ids=moved), robust=True
        )


# ------------------------------------------------------------------------- instructors' presets


def clean_preset_name(name: object) -> str:
    """Return the preset name stripped, or raise ``BadRequest`` saying what is wrong."""
    if not isinstance(name, str) or not name.strip():
        raise BadRequest(PRESET_NAME_EMPTY)
    cleaned = " ".join(name.split())
    if len(cleaned) > PRESET_NAME_MAX:
        raise BadRequest(PRESET_NAME_TOO_LONG.format(limit=PRESET_NAME_MAX))
    return cleaned


@transaction.atomic
def preset_save(
    *,
    owner: Any,
    name: object,
    scenario: Scenario,
    human_governor: bool,
    durations: Mapping[str, int | None],
) -> SavedPreset:
    """Save an instructor's game settings under ``name`` (replacing their preset of that name).

    Raises:
        BadRequest: the name is empty or too long.
        ValueError: bad durations.
    """
    cleaned = clean_preset_name(name)
    now = clock.now()
    preset, _ = SavedPreset.objects.update_or_create(
        owner=owner,
        name=cleaned,
        defaults={
            "scenario": scenario_to_dict(scenario),
            "human_governor": human_governor,
            "durations": _durations(durations),
            "updated_at": now,
        },
        create_defaults={
            "scenario": scenario_to_dict(scenario),
            "human_governor": human_governor,
            "durations": _durations(durations),
            "created_at": now,
            "updated_at": now,
        },
    )
    return preset


@transaction.atomic
def preset_delete(*, owner: Any, preset_id: int) -> bool:
    """Delete one of ``owner``'s presets; return whether there was one to delete."""
    deleted, _ = SavedPreset.objects.filter(owner=owner, pk=preset_id).delete()
    return deleted > 0
