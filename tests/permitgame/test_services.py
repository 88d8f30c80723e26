"""The services: the phase machine, deadlines, dropouts, idempotency and stale moves.

Time is frozen (``frozen_clock``) and deadlines are fired by calling the clock loop's ``tick``,
never by sleeping. These tests also run on PostgreSQL (``pytest --postgres``, as ``make test``
does).
"""

import datetime as dt
import threading

import pytest
from django.db import DataError, connection, transaction

from permitgame import realtime, selectors, services, ticker
from permitgame.errors import (
    AlreadySubmitted,
    BadNickname,
    BotPlaying,
    GameFull,
    GameOver,
    NicknameTaken,
    NotAllowed,
    Paused,
    StaleMove,
    WrongRole,
)
from permitgame.models import Action, Actor, Controller, Game, Move, RoundRecord, Seat, Status
from sim_core import PRESETS, load_preset, run_game
from sim_core.round import BID_ABOVE_WEALTH

TIMED = {"bidding": 30, "compliance": 30, "audit": 30, "results": 10}


@pytest.fixture(autouse=True)
def _no_open_sockets():
    """Each test starts with no socket open in this process (see ``connect``)."""
    realtime.LOCAL_CHANNELS.clear()
    yield
    realtime.LOCAL_CHANNELS.clear()


def connect(seat):
    """Open a (pretend) socket for ``seat`` in this process: the clock loop keeps it alive."""
    name = f"test.{seat.pk}"
    services.seat_connect(seat=seat, channel_name=name)
    realtime.LOCAL_CHANNELS.add(name)


def make_game(scenario, *, human_labs=2, human_governor=True, durations=TIMED, names=None):
    game = services.game_create(
        scenario=scenario,
        human_labs=human_labs,
        human_governor=human_governor,
        durations=durations,
    )
    names = names or [f"p{i}" for i in range(human_labs + int(human_governor))]
    seats = [services.seat_join(game=game, nickname=name) for name in names]
    return game, seats


def fresh(model):
    return type(model).objects.get(pk=model.pk)


def moves(game, **filters):
    return list(Move.objects.filter(game=game, **filters).order_by("id"))


@pytest.mark.django_db
def test_defaults_are_logged_when_connected_humans_miss_the_bidding_deadline(
    small_scenario, frozen_clock
):
    game, (lab_a, lab_b, governor) = make_game(small_scenario)
    for seat in (lab_a, lab_b, governor):
        connect(seat)
    services.game_start(game=game)
    services.round_submit_bid(seat=lab_a, round_no=1, amount=0.25)

    frozen_clock.advance(29)
    assert ticker.tick() == 0
    assert fresh(game).phase == "bidding"

    frozen_clock.advance(2)
    assert ticker.tick() == 1
    game = fresh(game)
    assert (game.round_no, game.phase) != (1, "bidding")
    bid_b = moves(game, seat=lab_b, action=Action.BID)
    assert [(m.actor, m.payload) for m in bid_b] == [(Actor.DEFAULT, {"amount": 0.0})]
    assert [m.actor for m in moves(game, seat=lab_a, action=Action.BID)] == [Actor.HUMAN]
    bots = moves(game, action=Action.BID, actor=Actor.BOT)
    assert len(bots) == small_scenario.labs.count - 2
    assert not fresh(lab_b).standing_in


@pytest.mark.django_db
def test_fallback_bot_plays_until_player_reconnects_when_away_at_deadline(
    small_scenario, frozen_clock
):
    game, (lab_a, lab_b, governor) = make_game(small_scenario)
    connect(lab_a)
    services.game_start(game=game)
    services.round_submit_bid(seat=lab_a, round_no=1, amount=0.3)
    frozen_clock.advance(31)
    ticker.tick()

    game = fresh(game)
    lab_b = fresh(lab_b)
    assert lab_b.standing_in and lab_b.controller == Controller.BOT
    [bid_b] = moves(game, seat=lab_b, action=Action.BID)
    assert bid_b.actor == Actor.BOT
    assert moves(game, seat=lab_b, action=Action.STAND_IN)
    # The governor is flagged only when a phase it owes ends while it is away.
    assert not fresh(governor).standing_in and game.phase in ("compliance", "audit")

    connect(lab_b)
    lab_b = fresh(lab_b)
    assert not lab_b.standing_in and lab_b.controller == Controller.HUMAN
    assert moves(game, seat=lab_b, action=Action.RECLAIM)[0].actor == Actor.HUMAN


@pytest.mark.django_db
def test_deadline_fires_once_when_the_clock_ticks_again(small_scenario, frozen_clock):
    game, _ = make_game(small_scenario)
    services.game_start(game=game)
    frozen_clock.advance(31)
    assert ticker.tick() == 1
    assert ticker.tick() == 0
    assert len(moves(game, action=Action.PHASE, round_no=1, phase="compliance")) <= 1
    assert len(moves(game, action=Action.STAND_IN)) == len(
        {m.seat_id for m in moves(game, action=Action.STAND_IN)}
    )


@pytest.mark.django_db
def test_a_deadline_that_falls_due_while_a_beat_fires_another_is_fired_at_once(
    small_scenario, frozen_clock, monkeypatch
):
    # Two rooms' deadlines 20 ms apart, and a beat whose firing of the first takes 30 ms: the
    # second fell due during the beat, and the next beat comes at once (it waited a whole beat,
    # 0.25 s, when the loop looked only for deadlines still to come).
    first, _ = make_game(small_scenario)
    second, _ = make_game(small_scenario)
    services.game_start(game=first)
    services.game_start(game=second)
    soon = fresh(first).phase_deadline + dt.timedelta(milliseconds=20)
    Game.objects.filter(pk=second.pk).update(phase_deadline=soon)
    frozen_clock.advance(30.005)  # the first is due, the second 15 ms from now
    fire = ticker._fire_due

    def fire_taking_30_ms() -> int:
        fired = fire()
        frozen_clock.advance(0.03)
        return fired

    monkeypatch.setattr(ticker, "_fire_due", fire_taking_30_ms)
    upcoming = ticker._beat()
    assert fresh(first).phase != "bidding" and fresh(second).phase == "bidding"
    assert upcoming is not None and upcoming <= 0  # due already: the loop beats again at once
    monkeypatch.undo()
    ticker._beat()  # the next beat, at once
    assert fresh(second).phase != "bidding"


@pytest.mark.django_db
def test_move_after_the_deadline_is_refused_before_the_clock_fires_it(small_scenario, frozen_clock):
    game, (lab_a, lab_b, _) = make_game(small_scenario)
    services.game_start(game=game)
    services.round_submit_bid(seat=lab_a, round_no=1, amount=0.1)
    frozen_clock.advance(31)  # past the deadline; no tick yet
    before = Move.objects.count()

    with pytest.raises(StaleMove, match="Time is up for round 1's bidding phase"):
        services.round_submit_bid(seat=lab_b, round_no=1, amount=0.2)
    assert services.round_submit_bid(seat=lab_a, round_no=1, amount=0.1).duplicate
    assert Move.objects.count() == before

    assert ticker.tick() == 1
    late = Move.objects.get(game=game, round_no=1, action=Action.BID, seat=lab_b)
    assert late.actor != Actor.HUMAN


@pytest.mark.django_db
def test_pause_stops_the_clock_and_resume_restores_the_remaining_time(small_scenario, frozen_clock):
    game, (lab_a, *_) = make_game(small_scenario)
    services.game_start(game=game)
    frozen_clock.advance(10)
    services.game_pause(game=game)
    game = fresh(game)
    assert game.status == Status.PAUSED and game.phase_deadline is None
    assert game.paused_remaining == pytest.approx(20)

    frozen_clock.advance(600)
    assert ticker.tick() == 0
    with pytest.raises(Paused, match="paused"):
        services.round_submit_bid(seat=lab_a, round_no=1, amount=0.1)
    assert not moves(game, action=Action.BID)

    services.game_resume(game=game)
    game = fresh(game)
    assert game.status == Status.RUNNING
    assert (game.phase_deadline - frozen_clock.now()).total_seconds() == pytest.approx(20)
    frozen_clock.advance(19)
    assert ticker.tick() == 0
    frozen_clock.advance(2)
    assert ticker.tick() == 1


@pytest.mark.django_db
def test_extend_moves_the_deadline_when_running_or_paused(small_scenario, frozen_clock):
    game, _ = make_game(small_scenario)
    services.game_start(game=game)
    deadline = fresh(game).phase_deadline
    services.game_extend(game=game, seconds=15)
    assert (fresh(game).phase_deadline - deadline).total_seconds() == pytest.approx(15)
    services.game_pause(game=game)
    services.game_extend(game=game, seconds=5)
    assert fresh(game).paused_remaining == pytest.approx(50)


@pytest.mark.django_db
def test_move_is_refused_and_nothing_changes_when_round_or_phase_is_stale(small_scenario):
    game, (lab_a, _, governor) = make_game(small_scenario, durations=None)
    services.game_start(game=game)
    before = Move.objects.count()
    with pytest.raises(StaleMove, match="round 2's bidding phase, but the game is in round 1's"):
        services.round_submit_bid(seat=lab_a, round_no=2, amount=0.1)
    with pytest.raises(StaleMove, match="compliance phase, but the game is in round 1's bidding"):
        services.round_submit_choice(seat=lab_a, round_no=1, run=True)
    with pytest.raises(WrongRole):
        services.round_submit_audits(seat=lab_a, round_no=1, labs=[0])
    with pytest.raises(WrongRole):
        services.round_submit_bid(seat=governor, round_no=1, amount=0.1)
    assert Move.objects.count() == before


@pytest.mark.django_db
def test_bid_is_refused_with_sim_cores_message_when_above_wealth(small_scenario):
    game, (lab_a, *_) = make_game(small_scenario, durations=None)
    services.game_start(game=game)
    prefix = BID_ABOVE_WEALTH.split("{")[0]
    with pytest.raises(NotAllowed, match=prefix):
        services.round_submit_bid(seat=lab_a, round_no=1, amount=1e6)
    assert not moves(game, action=Action.BID, actor=Actor.HUMAN)


@pytest.mark.django_db
def test_repeated_move_is_acknowledged_once_and_a_different_one_refused(small_scenario):
    game, (lab_a, *_) = make_game(small_scenario, durations=None)
    services.game_start(game=game)
    first = services.round_submit_bid(seat=lab_a, round_no=1, amount=0.2)
    again = services.round_submit_bid(seat=lab_a, round_no=1, amount=0.2)
    assert (first.duplicate, again.duplicate) == (False, True)
    with pytest.raises(AlreadySubmitted):
        services.round_submit_bid(seat=lab_a, round_no=1, amount=0.3)
    assert len(moves(game, seat=lab_a, action=Action.BID)) == 1


@pytest.mark.django_db(transaction=True)
def test_two_simultaneous_submissions_record_one_move(small_scenario):
    game, (lab_a, *_) = make_game(small_scenario, durations=None)
    services.game_start(game=game)
    barrier = threading.Barrier(2)
    results, errors = [], []

    def submit():
        try:
            barrier.wait()
            results.append(services.round_submit_bid(seat=lab_a, round_no=1, amount=0.2))
        except Exception as error:  # collected and asserted below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=submit) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors
    assert sorted(r.duplicate for r in results) == [False, True]
    assert len(moves(game, seat=lab_a, action=Action.BID)) == 1


@pytest.mark.django_db(transaction=True)
def test_deadline_fires_exactly_once_when_two_clocks_race(small_scenario, frozen_clock):
    game, _ = make_game(small_scenario)
    services.game_start(game=game)
    frozen_clock.advance(31)
    barrier = threading.Barrier(2)
    fired = []

    def clock_loop():
        try:
            barrier.wait()
            fired.append(services.game_expire_phase(game_id=game.pk))
        finally:
            connection.close()

    threads = [threading.Thread(target=clock_loop) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(fired) == [False, True]
    assert len(moves(game, action=Action.PHASE, round_no=1, phase="compliance")) == 1


@pytest.mark.django_db
def test_late_joiner_takes_a_bot_seat_from_the_next_phase(small_scenario, frozen_clock):
    game, (lab_a, lab_b, governor) = make_game(small_scenario)
    for seat in (lab_a, lab_b, governor):
        connect(seat)
    services.game_start(game=game)
    late = services.seat_join(game=game, nickname="Late")
    assert late.role == "lab" and late.lab_index == 2
    assert fresh(late).controller == Controller.BOT
    with pytest.raises(BotPlaying, match="next phase"):
        services.round_submit_bid(seat=late, round_no=1, amount=0.1)
    services.round_submit_bid(seat=lab_a, round_no=1, amount=0.9)
    services.round_submit_bid(seat=lab_b, round_no=1, amount=0.9)
    game = fresh(game)
    assert game.phase != "bidding"  # the late joiner's bot did not hold bidding up
    assert moves(game, seat=late, action=Action.BID)[0].actor == Actor.BOT
    assert fresh(late).controller == Controller.HUMAN


@pytest.mark.django_db
def test_handing_a_seat_to_a_bot_ends_the_wait_for_it(small_scenario):
    game, (lab_a, lab_b, _) = make_game(small_scenario, durations=None)
    services.game_start(game=game)
    services.round_submit_bid(seat=lab_a, round_no=1, amount=0.5)
    assert fresh(game).phase == "bidding"
    services.seat_hand_to_bot(seat=lab_b)
    game = fresh(game)
    assert game.phase != "bidding"
    [bid_b] = moves(game, seat=lab_b, action=Action.BID)
    assert bid_b.actor == Actor.BOT
    assert moves(game, seat=lab_b, action=Action.HAND_TO_BOT)[0].actor == Actor.HOST
    services.seat_hand_to_bot(seat=lab_b, to_bot=False)
    assert not fresh(lab_b).handed_to_bot


@pytest.mark.django_db
def test_join_explains_what_is_wrong_when_it_cannot_seat_the_player(small_scenario):
    game, _ = make_game(small_scenario, human_labs=1, human_governor=False, names=["Ana"])
    with pytest.raises(NicknameTaken, match="'ana' is taken"):
        services.seat_join(game=game, nickname="ana")
    for bad in ("", "   ", "x" * 25, "nul\x00"):
        with pytest.raises(BadNickname):
            services.seat_join(game=game, nickname=bad)
    with pytest.raises(WrongRole, match="bot"):
        services.seat_join(game=game, nickname="Gov", role="governor")
    for i in range(small_scenario.labs.count - 1):
        services.seat_join(game=game, nickname=f"s{i}")
    with pytest.raises(GameFull):
        services.seat_join(game=game, nickname="one too many")
    services.game_end(game=game)
    with pytest.raises(GameOver):
        services.seat_join(game=game, nickname="after")


@pytest.mark.django_db
def test_autostart_begins_when_every_human_seat_is_taken(small_scenario):
    game = services.game_create(scenario=small_scenario, human_labs=2, autostart=True)
    services.seat_join(game=game, nickname="a")
    assert fresh(game).status == Status.LOBBY
    services.seat_join(game=game, nickname="b")
    game = fresh(game)
    assert (game.status, game.round_no, game.phase) == (Status.RUNNING, 1, "bidding")


@pytest.mark.django_db
def test_lobby_timer_starts_the_game_when_it_runs_out(small_scenario, frozen_clock):
    game = services.game_create(
        scenario=small_scenario, human_labs=3, autostart=True, lobby_seconds=20
    )
    services.seat_join(game=game, nickname="a")
    frozen_clock.advance(21)
    assert ticker.tick() == 1
    assert fresh(game).status == Status.RUNNING


@pytest.mark.django_db
def test_game_plays_out_with_defaults_only_when_nobody_acts(small_scenario, frozen_clock):
    game, seats = make_game(small_scenario)
    for seat in seats:
        connect(seat)
    services.game_start(game=game)
    for _ in range(20):
        if fresh(game).status == Status.FINISHED:
            break
        frozen_clock.advance(31)
        ticker.tick()
    game = fresh(game)
    assert game.status == Status.FINISHED
    assert RoundRecord.objects.filter(game=game).count() == small_scenario.rounds
    defaults = moves(game, actor=Actor.DEFAULT)
    assert {m.action for m in defaults} >= {Action.BID, Action.AUDIT}
    assert all(m.payload in ({"amount": 0.0}, {"run": False}, {"labs": []}) for m in defaults)


@pytest.mark.django_db
@pytest.mark.parametrize("preset", PRESETS)
def test_server_game_matches_batch_run_when_every_seat_is_a_bot(preset):
    scenario = load_preset(preset).with_changes(rounds=3)
    game = services.game_create(scenario=scenario, durations={"results": 0})
    services.game_start(game=game)
    assert fresh(game).status == Status.FINISHED
    expected = [row.as_dict() for row in run_game(scenario).rows]
    assert selectors.game_export_rows(game) == expected


@pytest.mark.django_db
def test_screens_show_each_audience_only_its_own_information(small_scenario):
    game, (lab_a, lab_b, governor) = make_game(small_scenario, durations=None)
    services.game_start(game=game)
    services.round_submit_bid(seat=lab_a, round_no=1, amount=0.0)
    services.round_submit_bid(seat=lab_b, round_no=1, amount=0.0)
    screens = selectors.game_screens(Game.objects.get(pk=game.pk))
    assert screens.public.market is not None
    assert not hasattr(screens.public, "signals")
    view_a = screens.labs[lab_a.pk]
    assert view_a.bid == 0.0 and view_a.won is False
    fields = set(type(view_a).__slots__)
    assert "signals" not in fields and "runs" not in fields
    assert Seat.objects.get(pk=governor.pk).role == "governor"


@pytest.mark.django_db
def test_a_batch_of_log_entries_is_written_as_django_writes_them(monkeypatch, small_scenario):
    # Move.objects.append (a batch of moves, inside the game's lock) stores every field as
    # bulk_create does, in order, and gives each entry its id: with SQLite over as many
    # statements as the database's limit asks, with PostgreSQL (the --postgres pass) in one
    # statement of one array per column, a column of NULLs alone included.
    import datetime as dt

    game = services.game_create(scenario=small_scenario, human_labs=2)
    seat = Seat.objects.filter(game=game, role="lab").first()
    when = dt.datetime(2026, 12, 4, 3, 20, 1, 123456, tzinfo=dt.UTC)

    def entries(tag: str) -> list[Move]:
        payloads = [
            {"amount": 0.25},
            {"run": True},
            {"labs": [0, 2]},
            {"note": "été ✓ 'quoted' \"twice\" back\\slash", "n": None},
            {},
        ]
        return [
            Move(
                game=game,
                seat=seat if index % 2 == 0 else None,
                action=Action.BID,
                actor=Actor.HUMAN if index else Actor.BOT,
                round_no=9 + index,
                phase=tag,
                payload=payload,
                latency_ms=None if index == 3 else 100 * index,
                created_at=when + dt.timedelta(seconds=index),
                prev_hash=f"{tag}{index}'\\",
                hash=f"{tag}{index + 1}",
            )
            for index, payload in enumerate(payloads)
        ]

    Move.objects.bulk_create(expected := entries("a"))
    monkeypatch.setattr(connection.ops, "bulk_batch_size", lambda fields, objs: 2)
    Move.objects.append(appended := entries("b"))
    ids = [move.pk for move in appended]
    assert None not in ids and ids == sorted(ids) and len(set(ids)) == 5  # three statements
    assert all(not move._state.adding for move in appended)

    def stored(moves: list[Move]) -> list[dict[str, object]]:
        rows = Move.objects.in_bulk([move.pk for move in moves])
        fields = ("seat_id", "action", "actor", "round_no", "payload", "latency_ms", "created_at")
        return [
            {
                **{name: getattr(rows[move.pk], name) for name in fields},
                # each batch's tag apart: a text with a quote and a backslash, kept whole
                "prev_hash": rows[move.pk].prev_hash[1:],
                "tagged": rows[move.pk].phase == rows[move.pk].prev_hash[0],
            }
            for move in moves
        ]

    assert stored(appended) == stored(expected)
    system = entries("c")
    Move.objects.bulk_create(expected := [*system[1::2], *entries("d")[1::2]])  # no seat
    Move.objects.append(appended := [*entries("e")[1::2], *entries("f")[1::2]])
    assert stored(appended) == stored(expected)
    assert [Move.objects.get(pk=pk).hash for pk in ids] == [f"b{i + 1}" for i in range(5)]
    if connection.vendor == "postgresql":  # a text too long for its column is refused, not cut
        too_long = entries("g")
        too_long[1].action = "x" * 13
        with pytest.raises(DataError), transaction.atomic():
            Move.objects.append(too_long)
        assert not Move.objects.filter(phase="g").exists()
