"""Queries compiled once per connection (``permitgame.prepared``) give what the ORM gives.

Run on SQLite in the main pass and on PostgreSQL in the second (Makefile: POSTGRES_TESTS): the
SQL is compiled by each backend, and the rows come back through its own converters (JSON,
dates, booleans).
"""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import pytest
from django.db import DatabaseError, connection, transaction
from django.db.models import F
from django.db.transaction import TransactionManagementError
from django.test.utils import CaptureQueriesContext

from permitgame import clock, services
from permitgame.models import Action, Actor, Connection, Game, Move, Seat
from permitgame.prepared import Prepared, counting_queries, insert, save_fields
from tests.permitgame.test_hall import hall


def fields_of(instance: Any) -> dict[str, Any]:
    return {f.attname: getattr(instance, f.attname) for f in type(instance)._meta.concrete_fields}


GAME = Prepared(lambda pk: Game.objects.filter(pk=pk), int)
SEAT = Prepared(
    lambda code, token: Seat.objects.filter(game__code=code, token=token).order_by("pk")[:1],
    str,
    str,
)


@pytest.mark.django_db
def test_a_model_row_is_the_one_the_orm_reads_field_by_field():
    game, seats = hall(labs=6, humans=3)
    services.game_start(game=game)  # dates, a JSON scenario and durations, a log head
    mine = GAME.first(game.pk)
    theirs = Game.objects.get(pk=game.pk)
    assert fields_of(mine) == fields_of(theirs)
    assert isinstance(mine.scenario, dict) and isinstance(mine.phase_started_at, dt.datetime)
    assert not mine._state.adding and mine._state.db == "default"
    assert fields_of(SEAT.first(game.code, seats[1].token)) == fields_of(
        Seat.objects.get(pk=seats[1].pk)
    )
    assert SEAT.first(game.code, "not a token") is None
    assert GAME.all(-1) == []


@pytest.mark.django_db
def test_get_is_the_one_row_or_the_models_does_not_exist_as_the_orms_get():
    game, _ = hall(labs=6, humans=3)
    assert fields_of(GAME.get(game.pk)) == fields_of(Game.objects.get(pk=game.pk))
    with pytest.raises(Game.DoesNotExist):
        GAME.get(-1)
    with pytest.raises(Seat.DoesNotExist):
        SEAT.get(game.code, "not a token")


@pytest.mark.django_db
def test_the_query_is_compiled_once_and_each_call_is_one_query_with_its_own_values():
    game, seats = hall(labs=6, humans=3)
    with CaptureQueriesContext(connection) as queries:
        found = [SEAT.first(game.code, seat.token) for seat in seats]
    assert [s.pk for s in found] == [s.pk for s in seats]
    assert len(queries.captured_queries) == 3
    assert len({q["sql"].split("WHERE")[0] for q in queries.captured_queries}) == 1


@pytest.mark.django_db
def test_counting_queries_counts_prepared_and_orm_statements_and_only_inside_the_block():
    game, _ = hall(labs=6, humans=3)
    with counting_queries() as none:
        pass
    with counting_queries() as reads:
        GAME.first(game.pk)
        list(Seat.objects.filter(game=game))
        assert reads.count == 2
    Seat.objects.filter(game=game).count()  # after the block: not counted
    assert (none.count, reads.count) == (0, 2)


@pytest.mark.django_db
def test_annotations_flat_values_and_value_rows_come_back_converted():
    game, seats = hall(labs=6, humans=2)
    with_status = Prepared(
        lambda pk: Seat.objects.annotate(game_status=F("game__status")).filter(pk=pk), int
    )
    seat = with_status.first(seats[0].pk)
    assert seat.game_status == game.status and seat.nickname == "p0"
    joined = Prepared(
        lambda pk: (
            Seat.objects.filter(game_id=pk, token__isnull=False)
            .order_by("pk")
            .values_list("joined_at", flat=True)
        ),
        int,
    )
    assert joined.all(game.pk) == list(
        Seat.objects.filter(game=game, token__isnull=False)
        .order_by("pk")
        .values_list("joined_at", flat=True)
    )
    assert all(isinstance(value, dt.datetime) for value in joined.all(game.pk))
    since = Prepared(
        lambda pk, when: Seat.objects.filter(game_id=pk, joined_at__gte=when).values_list(
            "pk", flat=True
        ),
        int,
        dt.datetime,
    )
    late = Seat.objects.get(pk=seats[1].pk).joined_at
    assert since.all(game.pk, late) == [seats[1].pk]
    assert sorted(since.all(game.pk, late - dt.timedelta(days=1))) == [s.pk for s in seats]
    pairs = Prepared(lambda pk: Game.objects.filter(pk=pk).values_list("version", "durations"), int)
    game.refresh_from_db()
    assert pairs.all(game.pk) == [(game.version, game.durations)]


@pytest.mark.django_db
def test_an_argument_of_a_positive_field_is_compared_as_any_other():
    # Django finds a look-up outside an integer field's range empty: the stand-ins stay inside.
    game, seats = hall(labs=4, humans=2)
    services.game_start(game=game)
    services.round_submit_bid(seat=seats[0], round_no=1, amount=0.1)
    of_round = Prepared(
        lambda game_id, round_no: Move.objects.filter(
            game_id=game_id, round_no=round_no, action=Action.BID
        ).values_list("seat_id", flat=True),
        int,
        int,
    )
    assert of_round.all(game.pk, 1) == [seats[0].pk]
    assert of_round.all(game.pk, 2) == []


@pytest.mark.django_db
def test_a_query_whose_constant_could_be_taken_for_an_argument_is_refused():
    from django.db.models import IntegerField, Value

    # Whatever the stand-in values, a constant of the query may equal one: two drafts of
    # stand-ins are compiled, and a constant that matched one of them shows.
    for constant in (29_000, 29_100):
        clash = Prepared(
            lambda lab, c=constant: Seat.objects.filter(lab_index=lab).annotate(
                k=Value(c, output_field=IntegerField())
            ),
            int,
        )
        with pytest.raises(ValueError, match="cannot be prepared"):
            clash._compile(connection)


def test_an_argument_that_does_not_reach_the_sql_unchanged_is_refused():
    with pytest.raises(TypeError, match="int, str or datetime"):
        Prepared(lambda when: Game.objects.filter(created_at=when), dt.date)
    fuzzy = Prepared(lambda code: Game.objects.filter(code__icontains=code), str)
    listed = Prepared(lambda pk: Game.objects.filter(pk__in=[pk, 1]), int)
    with pytest.raises(ValueError, match="unchanged"):
        fuzzy.all("AB")
    with pytest.raises(TypeError, match="takes 1 values"):
        listed.all()


@pytest.mark.django_db(transaction=True)
def test_a_locking_read_needs_a_transaction_as_the_orms_does():
    game, _ = hall(labs=3, humans=1)
    lock = Prepared(lambda pk: Game.objects.select_for_update().filter(pk=pk), int)
    with transaction.atomic():
        assert lock.first(game.pk).pk == game.pk
    if connection.features.has_select_for_update:  # PostgreSQL; SQLite has no row locks
        with pytest.raises(TransactionManagementError):
            lock.first(game.pk)
    else:
        assert lock.first(game.pk).pk == game.pk


@pytest.mark.django_db(transaction=True)
def test_a_query_compiled_on_one_thread_runs_on_another_threads_connection():
    # A Django request runs on a thread (and connection) of its own: the SQL is the database's.
    game, seats = hall(labs=3, humans=1)
    seen: list[Any] = []

    def read() -> None:
        try:
            seen.append(fields_of(SEAT.first(game.code, seats[0].token)))
        finally:
            connection.close()

    SEAT.first(game.code, seats[0].token)  # compiled here, on this thread's connection
    worker = threading.Thread(target=read)
    worker.start()
    worker.join()
    # The backend's converters (a date on SQLite) are the running connection's.
    assert seen == [fields_of(Seat.objects.get(pk=seats[0].pk))]
    assert isinstance(seen[0]["joined_at"], dt.datetime)


@pytest.mark.django_db
def test_save_fields_writes_only_the_fields_named_and_refuses_a_row_that_is_gone():
    game, seats = hall(labs=3, humans=2)
    seat = Seat.objects.get(pk=seats[0].pk)
    seat.nickname = "renamed"
    seat.last_seen = clock.now()
    Seat.objects.filter(pk=seat.pk).update(rejoin_code="ZZZZ")  # another writer's change
    save_fields(seat, ["last_seen"])
    stored = Seat.objects.get(pk=seat.pk)
    assert stored.last_seen == seat.last_seen
    assert stored.nickname == "p0" and stored.rejoin_code == "ZZZZ"
    game = Game.objects.get(pk=game.pk)
    game.version += 5
    game.durations = {"bidding": 7}
    save_fields(game)  # every field
    assert fields_of(Game.objects.get(pk=game.pk)) == fields_of(game)
    gone = Seat.objects.get(pk=seats[1].pk)
    Seat.objects.filter(pk=gone.pk).delete()
    with pytest.raises(DatabaseError, match="not in the database"):
        save_fields(gone, ["nickname"])
    assert save_fields(gone, ["nickname"], missing_ok=True) is False
    assert save_fields(seat, ["nickname"]) is True


@pytest.mark.django_db
def test_insert_stores_the_row_and_sets_its_key():
    game, seats = hall(labs=3, humans=1)
    move = Move(
        game=game,
        seat=seats[0],
        action=Action.CONNECT,
        actor=Actor.HUMAN,
        round_no=0,
        phase="",
        payload={"why": ["a", 1]},
        created_at=clock.now(),
    )
    insert(move)
    assert move.pk is not None and not move._state.adding
    assert fields_of(Move.objects.get(pk=move.pk)) == fields_of(move)
    with pytest.raises(ValueError, match="already saved"):
        insert(move)


@pytest.mark.django_db
def test_an_insert_on_a_unique_value_held_updates_that_row_instead():
    _, seats = hall(labs=3, humans=2)
    then = clock.now()
    first = Connection(seat=seats[0], channel_name="c1", opened_at=then, last_seen=then)
    insert(first, unique=["channel_name"], update=["seat", "last_seen", "html"])
    later = then + dt.timedelta(seconds=5)
    again = Connection(
        seat=seats[1], channel_name="c1", opened_at=later, last_seen=later, html=True
    )
    insert(again, unique=["channel_name"], update=["seat", "last_seen", "html"])
    (row,) = Connection.objects.filter(channel_name="c1")
    assert (row.pk, row.seat_id, row.last_seen, row.html) == (first.pk, seats[1].pk, later, True)
    assert row.opened_at == then  # not among the fields updated
    with pytest.raises(ValueError, match="both unique and update"):
        insert(Connection(seat=seats[0], channel_name="c2"), unique=["channel_name"])
