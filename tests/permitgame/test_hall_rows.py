"""A game's seats and round moves are read once per version and process (``bridge.Rows``).

A batch of moves that only logged moves (or ended a phase without any seat changing hands)
carries the rows it began with on to the game's next version, so the next batch and the next
screens read none of them again. These tests prove the reads are saved (counted), and, more to
the point, that what is carried on is exactly what a fresh read gives at every version of a
whole game, and that a failed batch leaves nothing behind.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import numpy as np
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from permitgame import bridge, clock, ledger, realtime, selectors, services
from permitgame.models import Game, Move, Seat
from permitgame.services import MoveCommand
from sim_core import Phase, expected_penalty
from tests.permitgame.test_hall import CountResolves, fresh, hall
from tests.permitgame.test_hall_joins import migrate_to_latest


def bids(seats: list[Seat], round_no: int, amount: float = 0.1) -> list[MoveCommand]:
    return [
        MoveCommand(seat_id=s.pk, action="bid", round_no=round_no, payload={"amount": amount})
        for s in seats
    ]


def seat_reads(queries: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in queries.captured_queries if 'FROM "permitgame_seat"' in q["sql"]]


def move_reads(queries: CaptureQueriesContext) -> list[str]:
    return [
        q["sql"]
        for q in queries.captured_queries
        if q["sql"].startswith("SELECT") and 'FROM "permitgame_move"' in q["sql"]
    ]


def fresh_rows(game: Game) -> bridge.Rows:
    """The seats and round moves as a fresh read gives them (what is kept left alone)."""
    seats = list(game.seats.order_by("id"))
    moves = bridge.round_moves(game, game.round_no, seats=seats) if game.round_no else []
    key = bridge.RowsKey(game.pk, game.code, game.version, game.round_no)
    return bridge.Rows(key=key, seats=seats, moves=moves)


def rows_as_read(game: Game) -> tuple[Any, ...]:
    return summary(fresh_rows(game))


def plain(value: Any) -> Any:
    """A value of sim_core's as plain Python, to compare two resolves of a round."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return tuple((f.name, plain(getattr(value, f.name))) for f in dataclasses.fields(value))
    if isinstance(value, np.ndarray):
        return tuple(value.tolist())
    if isinstance(value, (set, frozenset)):
        return tuple(sorted(value))
    if isinstance(value, (list, tuple)):
        return tuple(plain(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, plain(v)) for k, v in value.items()))
    return value


def check_position(game: Game, rows: bridge.Rows) -> bool:
    """If the rows carry the round resolved, it is the resolve of a fresh read; True if so."""
    if rows.position is None:
        return False
    again = bridge.position_of(game)
    assert plain(rows.position.progress) == plain(again.progress)
    assert [m.pk for m in rows.position.moves] == [m.pk for m in again.moves]
    return True


def screens_reading_nothing(game: Game, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The game's screens built afresh (no room kept): no seat or move read, nothing resolved."""
    selectors._rooms.clear()
    resolves = CountResolves(monkeypatch)
    with CaptureQueriesContext(connection) as queries:
        screens = selectors.game_screens(game)
    assert seat_reads(queries) == [] and move_reads(queries) == []
    assert resolves.calls == 0
    return screens


def check_ledger(game: Game) -> None:
    """The settled rounds a room shows (kept while they hold) are those of a fresh read."""
    kept = selectors._room(game).book
    again = ledger.read(game)
    assert [r.pk for r in kept.records] == [r.pk for r in again.records]
    assert plain(kept.standings) == plain(again.standings)
    assert kept.scores == again.scores and kept.wealth == again.wealth
    assert plain([[row.payoff for row in rounds] for rounds in kept.rows]) == plain(
        [[row.payoff for row in rounds] for rounds in again.rows]
    )


def check_views(game: Game) -> None:
    """The player rows and every lab's view the kept room shows are a fresh read's.

    A room carries the player rows of the room before it while its seats are the same ones, and
    builds each lab's view from the round's quantities taken out of the resolve once per room:
    both must be what a room built from the database alone (and resolved again) gives.
    """
    screens = selectors.game_screens(game)
    again = selectors._build_room(game, selectors._room_key(game), fresh_rows(game))
    online = {row.seat_id for row in screens.public.players if row.connected}
    assert plain(selectors._player_rows(again, online)) == plain(screens.public.players)
    position, records = again.position, again.records
    settled = records[-1] if records and records[-1].round_no == game.round_no else None
    for lab, seat in again.lab_seats.items():
        view = screens.labs[seat.pk]
        assert plain(selectors._lab_view(game, again, seat)) == plain(view)
        # ... and each number is the resolve's own, for this lab.
        if position is None:
            assert view.value is None and view.won is None
            continue
        progress, state = position.progress, position.state
        assert view.value == progress.values[lab] and view.net_value == progress.net_values[lab]
        assert (
            view.wealth == state.wealth[lab]
            and view.risk_profile == position.setup.risk_profile[lab]
        )
        assert view.current_wealth == (settled.wealth[lab] if settled else state.wealth[lab])
        market = progress.market
        assert view.won == (None if market is None else bool(market.won[lab]))
        penalty = expected_penalty(
            position.setup.risk_profile, again.rules.p_eff, again.rules.punishment
        )
        assert view.expected_penalty == penalty[lab]


def summary(rows: bridge.Rows) -> tuple[Any, ...]:
    seats = tuple(
        (s.pk, s.role, s.lab_index, s.controller, s.kind, s.nickname, s.handed_to_bot)
        for s in rows.seats
    )
    moves = tuple(
        (m.pk, m.seat_id, m.action, m.round_no, m.phase, m.actor, m.payload) for m in rows.moves
    )
    return (rows.key, seats, moves)


@pytest.mark.django_db
def test_a_batch_after_a_batch_reads_no_seat_and_no_move(django_capture_on_commit_callbacks):
    for labs in (10, 120):
        game, seats = hall(labs=labs, humans=labs)
        services.game_start(game=game)
        with django_capture_on_commit_callbacks(execute=True):
            services.round_submit_moves(game_id=game.pk, commands=bids(seats[:3], 1))
        with (
            CaptureQueriesContext(connection) as queries,
            django_capture_on_commit_callbacks(execute=True),
        ):
            outcomes = services.round_submit_moves(game_id=game.pk, commands=bids(seats[3:6], 1))
        assert all(isinstance(o, services.MoveResult) for o in outcomes)
        assert seat_reads(queries) == [] and move_reads(queries) == []
        # The same number of statements for a room of 10 and of 120.
        assert len(queries.captured_queries) <= 6, [q["sql"] for q in queries.captured_queries]


def end_bidding(
    game: Game, seats: list[Seat], capture: Any, *, screens_between: bool = False
) -> list[Any]:
    """Start the game and bid with every seat; return the event the last bid caused, kept back.

    The last bid is a batch of its own: it ends the phase, and its event is appended to the
    list returned (``publish_later``) instead of being sent. ``screens_between``: the room's
    screens are built before the last bid, as a progress or a snapshot of the room does (the
    process then holds the ledger of the settled rounds).
    """
    services.game_start(game=game)
    with capture(execute=True):
        services.round_submit_moves(game_id=game.pk, commands=bids(seats[:-1], 1))
    if screens_between:
        selectors.game_screens(fresh(game))
    later: list[Any] = []
    with capture(execute=True):
        services.round_submit_moves(
            game_id=game.pk, commands=bids(seats[-1:], 1), publish_later=later
        )
    return later


@pytest.mark.django_db
def test_a_batch_ending_a_phase_leaves_the_new_phases_screens_nothing_to_read(
    django_capture_on_commit_callbacks, monkeypatch
):
    game, seats = hall(labs=30, humans=30)
    end_bidding(game, seats, django_capture_on_commit_callbacks)
    game = fresh(game)
    assert game.phase == Phase.COMPLIANCE
    # Nothing read, nothing resolved: the batch's own resolve is the new phase's.
    screens = screens_reading_nothing(game, monkeypatch)
    # ... and they are right: every lab's own bid is on its screen, the market cleared.
    assert all(screens.labs[s.pk].bid == pytest.approx(0.1) for s in seats)
    assert screens.public.market is not None


def connection_reads(queries: CaptureQueriesContext) -> list[str]:
    return [
        q["sql"] for q in queries.captured_queries if 'FROM "permitgame_connection"' in q["sql"]
    ]


@pytest.mark.django_db
def test_a_phase_changes_publish_reads_who_is_online_once_and_renders_html_for_pages_only(
    django_capture_on_commit_callbacks, monkeypatch
):
    game, seats = hall(labs=12, humans=12, online=True)
    page, program = seats[0], seats[1]
    services.seat_connect(seat=page, channel_name="page", html=True)
    later = end_bidding(game, seats, django_capture_on_commit_callbacks)
    sent: list[Any] = []
    monkeypatch.setattr(realtime, "send", lambda update, **kw: sent.append(update))
    with CaptureQueriesContext(connection) as queries:
        services.publish_deferred(later)
    # The player list's sockets and the pages' are one read (the phase change waits for it).
    assert len(connection_reads(queries)) == 1, connection_reads(queries)
    event = next(update for update in sent if isinstance(update, realtime.RoomEvent))
    assert set(event.seats) == {s.pk for s in seats}  # every joined lab has its part
    assert 'id="phase"' in event.html and 'id="you"' in event.seats[page.pk].html
    assert event.seats[program.pk].html == ""  # a program's socket is sent no HTML
    assert [json.loads(t)["type"] for t in event.seats[program.pk].json] == ["you"]


def tables_read(queries: CaptureQueriesContext) -> list[str]:
    return [q["sql"].split(" FROM ", 1)[1].split()[0].strip('"') for q in queries.captured_queries]


@pytest.mark.django_db
def test_a_phase_changes_publish_reads_who_is_online_and_nothing_else(
    django_capture_on_commit_callbacks, monkeypatch
):
    """The batch carried the new version's rows on and hands the event the game's row as it
    committed it: the room is built from them without a read, so nothing but who is online is
    read on every phase change's way (not the game, nor anything to check the version)."""
    game, seats = hall(labs=12, humans=12, online=True)
    later = end_bidding(game, seats, django_capture_on_commit_callbacks, screens_between=True)
    sent: list[Any] = []
    monkeypatch.setattr(realtime, "send", lambda update, **kw: sent.append(update))
    with CaptureQueriesContext(connection) as queries:
        services.publish_deferred(later)
    assert tables_read(queries) == ["permitgame_connection"]
    assert any(isinstance(update, realtime.RoomEvent) for update in sent)
    # The room is kept: the version's next reader builds nothing and reads who is online.
    game = fresh(game)
    with CaptureQueriesContext(connection) as queries:
        screens = selectors.game_screens(game)
    assert tables_read(queries) == ["permitgame_connection"]
    assert all(screens.labs[s.pk].bid == pytest.approx(0.1) for s in seats)
    # Rows that must be read (another process's version, say): the room is checked against
    # the game's version after the reads, as before, and kept.
    selectors._rooms.clear()
    bridge._rows.clear()
    with CaptureQueriesContext(connection) as queries:
        again = selectors.game_screens(game)
    assert tables_read(queries).count("permitgame_game") == 1  # the version, after the reads
    assert "permitgame_seat" in tables_read(queries)
    assert again.public.market == screens.public.market
    with CaptureQueriesContext(connection) as queries:
        selectors.game_screens(game)
    assert tables_read(queries) == ["permitgame_connection"]


@pytest.mark.django_db
def test_an_event_shows_the_version_its_transaction_committed_though_another_came_since(
    django_capture_on_commit_callbacks, monkeypatch
):
    """With several processes another batch may commit between an event's commit and its
    publish (the next phase's first moves, from another Daphne). The event still shows the game
    as its own transaction left it: its version, its phase, nobody moved yet in the new phase;
    the next event or progress tells the rest. And it is that version's room, built from the
    rows the batch carried on, not a mix of the old row and newer moves."""
    game, seats = hall(labs=12, humans=12, online=True)
    later = end_bidding(game, seats, django_capture_on_commit_callbacks, screens_between=True)
    committed = fresh(game)
    assert committed.phase == Phase.COMPLIANCE
    decide = [
        MoveCommand(seat_id=s.pk, action="decide", round_no=1, payload={"run": False})
        for s in seats[:3]
    ]
    services.round_submit_moves(game_id=game.pk, commands=decide)  # "another process"
    assert fresh(game).version == committed.version + 1
    sent: list[Any] = []
    monkeypatch.setattr(realtime, "send", lambda update, **kw: sent.append((update, kw)))
    with CaptureQueriesContext(connection) as queries:
        services.publish_deferred(later)
    assert tables_read(queries) == ["permitgame_connection"]
    ((event, sent_as),) = [(u, kw) for u, kw in sent if isinstance(u, realtime.RoomEvent)]
    assert sent_as["seq"] == committed.seq and sent_as["version"] == committed.version
    (phase,) = [m for m in map(json.loads, event.json) if m["type"] == "phase"]
    assert phase["phase"] == Phase.COMPLIANCE
    # The labs that decided in the later batch: the game shows it now, the event does not.
    now = selectors.game_screens(fresh(game))
    moved = [s for s in seats[:3] if now.labs[s.pk].run_by is not None]
    assert moved
    for seat in moved:
        you = next(json.loads(t) for t in event.seats[seat.pk].json if '"you"' in t)
        assert (you["run_by"], you["owes_move"]) == (None, True)


@pytest.mark.django_db
def test_a_settled_rounds_publish_reads_no_record_and_its_results_are_the_records(
    django_capture_on_commit_callbacks, monkeypatch
):
    """The batch that settles a round adds its record to the process's ledger: the round's
    results go out without reading it back, and each lab's are what a fresh read shows."""
    game, seats = hall(labs=12, humans=12, online=True)  # the governor is a bot: no audit waits
    capture = django_capture_on_commit_callbacks
    end_bidding(game, seats, capture)
    decide = [
        MoveCommand(seat_id=s.pk, action="decide", round_no=1, payload={"run": i % 3 == 0})
        for i, s in enumerate(seats)
    ]
    with capture(execute=True):
        services.round_submit_moves(game_id=game.pk, commands=decide[:-1])
    selectors.game_screens(fresh(game))  # as a progress of the room does: round 1's ledger
    later: list[Any] = []
    with capture(execute=True):
        services.round_submit_moves(game_id=game.pk, commands=decide[-1:], publish_later=later)
    assert fresh(game).phase == Phase.RESULTS
    sent: list[Any] = []
    monkeypatch.setattr(realtime, "send", lambda update, **kw: sent.append(update))
    with CaptureQueriesContext(connection) as queries:
        services.publish_deferred(later)
    assert tables_read(queries) == ["permitgame_connection"]
    event = next(update for update in sent if isinstance(update, realtime.RoomEvent))
    public = [json.loads(text) for text in event.json]
    assert [m["round"] for m in public if m["type"] == "round_results"] == [1]
    again = ledger.read(fresh(game))
    for seat in seats:
        own = [json.loads(text) for text in event.seats[seat.pk].json]
        (results,) = [m for m in own if m["type"] == "your_results"]
        row = again.rows[0][seat.lab_index]
        assert (results["payoff"], results["ran"], results["won"]) == (
            pytest.approx(row.payoff),
            row.ran,
            row.won,
        )
    check_ledger(fresh(game))


@pytest.mark.django_db
def test_the_rows_carried_on_are_the_rows_read_at_every_version_of_a_whole_game(
    django_capture_on_commit_callbacks,
):
    # Humans and bots, a seat handed to its bot mid-game (it changes hands when a batch ends
    # bidding), a refused move in a batch; three rounds to the end.
    game, seats = hall(labs=8, humans=5, rounds=3)
    services.game_start(game=game)
    checked = resolved = 0
    handed = False
    for step in range(200):
        game = fresh(game)
        if game.status == "finished":
            break
        kept = bridge.rows_of(game)  # carried on by the last batch, or read
        assert summary(kept) == rows_as_read(game), (step, game.round_no, game.phase)
        checked += 1
        check_ledger(game)
        check_views(game)
        screens = selectors.game_screens(game)
        owed = [s for s in seats if s.player_id in screens.public.waiting_for]
        if (game.round_no, game.phase) == (2, Phase.BIDDING) and not handed:
            # Handed to its bot now, played by it from the next phase (begun by a batch).
            services.seat_hand_to_bot(seat=Seat.objects.get(pk=seats[1].pk))
            handed = True
            continue
        if game.phase == Phase.BIDDING and owed:
            commands = bids(owed, game.round_no)
            if step == 0:  # one bid too high: refused alone, the others go in
                commands[0] = MoveCommand(
                    seat_id=owed[0].pk, action="bid", round_no=1, payload={"amount": 1e9}
                )
        elif game.phase == Phase.COMPLIANCE and owed:
            commands = [
                MoveCommand(
                    seat_id=s.pk,
                    action="decide",
                    round_no=game.round_no,
                    payload={"run": i % 2 == 0},
                )
                for i, s in enumerate(owed)
            ]
        else:
            services.game_advance_now(game=game)
            continue
        half = max(1, len(commands) // 2)
        for part in (commands[:half], commands[half:]):
            if part:
                with django_capture_on_commit_callbacks(execute=True):
                    services.round_submit_moves(game_id=game.pk, commands=part)
                now = fresh(game)
                carried = bridge.rows_of(now)
                assert summary(carried) == rows_as_read(now), step
                resolved += check_position(now, carried)
                check_ledger(now)
                check_views(now)
                checked += 1
    assert fresh(game).status == "finished"
    assert handed and Seat.objects.get(pk=seats[1].pk).controller == "bot"
    assert checked > 15 and resolved > 10
    assert Move.objects.filter(game=game, action="bid").count() == 8 * 3


@pytest.mark.django_db
def test_a_batch_that_fails_leaves_no_rows_behind(monkeypatch, django_capture_on_commit_callbacks):
    game, seats = hall(labs=6, humans=6)
    services.game_start(game=game)
    with django_capture_on_commit_callbacks(execute=True):
        services.round_submit_moves(game_id=game.pk, commands=bids(seats[:5], 1))
    assert bridge.rows_of(fresh(game)).moves  # kept

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("the database went away")

    # The last bid ends the phase; the phase machine fails after seats may have changed hands.
    monkeypatch.setattr(services, "_begin_phase", broken)
    with pytest.raises(RuntimeError):
        services.round_submit_moves(game_id=game.pk, commands=bids(seats[5:], 1))
    assert game.pk not in bridge._rows
    monkeypatch.undo()
    game = fresh(game)
    assert game.phase == Phase.BIDDING
    assert summary(bridge.rows_of(game)) == rows_as_read(game)


@pytest.mark.django_db
def test_a_process_catches_up_with_another_ones_moves_without_reading_the_room_again(
    django_capture_on_commit_callbacks,
):
    # With several Daphnes the batches of a round come from each in turn: a process's rows
    # are then a version behind. It reads only the moves logged since: the other batch
    # changed no seat (the game's ``seats_version`` says so). A commit that may have changed
    # one (a player's socket dropped) makes it compare the seats' columns; a seat that changed
    # (handed to its bot by the instructor) means a full read.
    game, seats = hall(labs=40, humans=40, online=True)
    services.game_start(game=game)
    with django_capture_on_commit_callbacks(execute=True):
        services.round_submit_moves(game_id=game.pk, commands=bids(seats[:5], 1))
    # "Another process": its commit is not carried on here (no on_commit in this test).
    services.round_submit_moves(game_id=game.pk, commands=bids(seats[5:9], 1))
    game = fresh(game)
    with CaptureQueriesContext(connection) as queries:
        caught_up = bridge.rows_of(game)
    assert summary(caught_up) == rows_as_read(game)
    assert len(caught_up.moves) == 9
    kept_seats = caught_up.seats
    statements = [q["sql"] for q in queries.captured_queries]
    assert len(statements) == 1, statements  # the 4 new moves only
    assert '"permitgame_move"."id" >' in statements[0]

    services.seat_disconnect(channel_name=f"test-{seats[30].pk}")  # logged: a drop
    game = fresh(game)
    assert game.seats_version == game.version
    with CaptureQueriesContext(connection) as queries:
        caught_up = bridge.rows_of(game)
    assert summary(caught_up) == rows_as_read(game)
    assert caught_up.seats is kept_seats  # no seat changed: kept
    statements = [q["sql"] for q in queries.captured_queries]
    # The seats' columns without building seats (all as they were), and the moves since.
    assert len(statements) == 2, statements
    assert '"permitgame_move"."id" >' in statements[1]

    services.seat_hand_to_bot(seat=Seat.objects.get(pk=seats[20].pk))
    game = fresh(game)
    with CaptureQueriesContext(connection) as queries:
        read_again = bridge.rows_of(game)
    assert summary(read_again) == rows_as_read(game)
    assert next(s for s in read_again.seats if s.pk == seats[20].pk).handed_to_bot
    assert len(queries.captured_queries) == 3  # the comparison, then seats and moves in full


@pytest.mark.django_db
def test_a_round_another_process_began_is_caught_up_without_reading_the_seats(
    django_capture_on_commit_callbacks,
):
    # The results phase's deadline is fired by one process's clock; the other Daphnes hold the
    # rows of the round before. A batch of the new round there (every lab bids at once) reads
    # the new round's moves, not the hall's seats again, unless a seat may have changed.
    game, seats = hall(labs=12, humans=12, rounds=2, online=True)
    capture = django_capture_on_commit_callbacks
    with clock.frozen() as frozen:
        services.game_start(game=game)
        for _ in range(2):  # bidding, compliance (the governor's bot audits): round 1 settles
            frozen.advance(10_000)
            services.presence_heartbeat({f"test-{s.pk}" for s in seats})
            with capture(execute=True):
                services.game_expire_phase(game_id=game.pk)
        assert fresh(game).phase == Phase.RESULTS
        before = bridge._rows.latest(game.pk)
        assert before is not None and before.key.round_no == 1
        frozen.advance(10_000)
        with capture(execute=True):
            services.game_expire_phase(game_id=game.pk)  # round 2 begins ...
        bridge._rows.keep(game.pk, before)  # ... in "another process"
        game = fresh(game)
        assert (game.round_no, game.phase) == (2, Phase.BIDDING)
        with CaptureQueriesContext(connection) as queries:
            rows = bridge.rows_of(game)
        assert summary(rows) == rows_as_read(game)
        assert rows.seats is before.seats
        statements = [q["sql"] for q in queries.captured_queries]
        assert len(statements) == 1, statements  # the new round's moves only
        assert bridge.state_of(game, bridge.setup_of(game), rows) is not None  # read when asked
        with capture(execute=True):
            services.round_submit_moves(game_id=game.pk, commands=bids(seats[:4], 2))
        assert summary(bridge.rows_of(fresh(game))) == rows_as_read(fresh(game))

        # A seat that changed hands since (handed to its bot): the seats are read again.
        bridge._rows.keep(game.pk, before)
        services.seat_hand_to_bot(seat=Seat.objects.get(pk=seats[5].pk))
        game = fresh(game)
        read_again = bridge.rows_of(game)
        assert summary(read_again) == rows_as_read(game)
        assert next(s for s in read_again.seats if s.pk == seats[5].pk).handed_to_bot


@pytest.mark.django_db
def test_a_belief_is_judged_against_the_whole_round_and_its_screens_are_right(
    django_capture_on_commit_callbacks,
):
    # A belief (MODEL.md §4: asked of the labs without a permit) is checked against the round
    # resolved with every move logged; the rows it carries on resolve the round the same way.
    game, seats = hall(labs=6, humans=6)
    Game.objects.filter(pk=game.pk).update(ask_belief=True)
    services.game_start(game=fresh(game))
    amounts = [1.0, 0.9, 0.8, 0.0, 0.0, 0.0]
    commands = [
        MoveCommand(seat_id=s.pk, action="bid", round_no=1, payload={"amount": a})
        for s, a in zip(seats, amounts, strict=True)
    ]
    with django_capture_on_commit_callbacks(execute=True):
        services.round_submit_moves(game_id=game.pk, commands=commands)
    game = fresh(game)
    assert game.phase == Phase.COMPLIANCE
    screens = selectors.game_screens(game)
    winner = next(s for s in seats if screens.labs[s.pk].won)
    loser = next(s for s in seats if not screens.labs[s.pk].won)

    def belief(seat: Seat) -> MoveCommand:
        return MoveCommand(seat_id=seat.pk, action="belief", round_no=1, payload={"percent": 30})

    with django_capture_on_commit_callbacks(execute=True):
        refused, taken = services.round_submit_moves(
            game_id=game.pk, commands=[belief(winner), belief(loser)]
        )
    assert isinstance(refused, services.NotAllowed)
    assert isinstance(taken, services.MoveResult)
    game = fresh(game)
    carried = bridge.rows_of(game)
    assert summary(carried) == rows_as_read(game)
    assert check_position(game, carried)
    screens = selectors.game_screens(game)
    assert screens.labs[loser.pk].belief == 30 and screens.labs[loser.pk].won is False


@pytest.mark.django_db
def test_the_clock_carries_the_rows_on_through_every_deadline_of_a_whole_game(
    django_capture_on_commit_callbacks,
):
    # Every phase ended by its deadline (some labs moved, present ones get defaults, the bots
    # play theirs, an absent one gets a stand-in: a seat changing hands is read again).
    game, seats = hall(labs=8, humans=5, rounds=3, online=True)
    services.seat_disconnect(channel_name=f"test-{seats[4].pk}")
    with clock.frozen() as frozen:
        services.game_start(game=game)
        carried = steps = kept_seats = 0
        while fresh(game).status != "finished" and steps < 40:
            steps += 1
            game = fresh(game)
            if game.phase == Phase.BIDDING and game.round_no == 1:
                with django_capture_on_commit_callbacks(execute=True):
                    services.round_submit_moves(game_id=game.pk, commands=bids(seats[:2], 1))
            frozen.advance(10_000)
            services.presence_heartbeat({f"test-{s.pk}" for s in seats[:4]})  # still there
            before = seat_columns(game)
            with django_capture_on_commit_callbacks(execute=True):
                assert services.game_expire_phase(game_id=game.pk)
            now = fresh(game)
            # A commit that changed a seat says so; one that did not leaves the mark alone,
            # so another process keeps the seats it holds.
            if seat_columns(now) != before:
                assert now.seats_version == now.version, (steps, now.round_no, now.phase)
            else:
                kept_seats += now.seats_version < now.version
            kept = bridge._rows.latest(now.pk)
            if kept is not None and kept.key == (now.pk, now.code, now.version, now.round_no):
                carried += 1
                assert summary(kept) == rows_as_read(now), (steps, now.round_no, now.phase)
                check_position(now, kept)
            check_ledger(now)
    assert fresh(game).status == "finished"
    # Each round's four deadlines carry the rows on, the next round's bidding included (the
    # stand-in's deadline and the game's end do not).
    assert carried >= 8, carried
    assert kept_seats >= 8, kept_seats


@pytest.mark.django_db(transaction=True)
def test_the_migration_counts_every_existing_games_seats_as_changed_at_its_version():
    # After the upgrade no process may take the seats it holds as current from a mark the
    # upgrade made up: each game's mark is its version (a catch-up compares the seats).
    from django.db.migrations.executor import MigrationExecutor

    game, seats = hall(labs=6, humans=6)
    services.game_start(game=game)
    services.round_submit_moves(game_id=game.pk, commands=bids(seats[:3], 1))
    version = fresh(game).version
    assert fresh(game).seats_version < version  # the batch changed no seat
    MigrationExecutor(connection).migrate([("permitgame", "0012_halljoin_nickname_key")])
    try:
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate([("permitgame", "0013_game_seats_version")])
    finally:
        migrate_to_latest()
    game = fresh(game)
    assert (game.version, game.seats_version) == (version, version)


def seat_columns(game: Game) -> list[tuple[Any, ...]]:
    """Every seat's columns as the database has them (``last_seen`` aside, as the rows do)."""
    return list(bridge._SEAT_ROWS.all(game.pk))


@pytest.mark.django_db
def test_after_the_results_deadline_the_new_rounds_screens_read_no_seat(
    django_capture_on_commit_callbacks, monkeypatch
):
    game, seats = hall(labs=12, humans=12, rounds=2, online=True)
    with clock.frozen() as frozen:
        services.game_start(game=game)
        for _ in range(3):  # bidding, compliance (the governor's bot audits), the results
            frozen.advance(10_000)
            services.presence_heartbeat({f"test-{s.pk}" for s in seats})
            with django_capture_on_commit_callbacks(execute=True):
                services.game_expire_phase(game_id=game.pk)
        game = fresh(game)
        assert (game.round_no, game.phase) == (2, Phase.BIDDING)
        screens = screens_reading_nothing(game, monkeypatch)
        assert sorted(screens.public.waiting_for) == [s.player_id for s in seats]
