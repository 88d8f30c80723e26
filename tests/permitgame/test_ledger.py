"""The ledger: one reading of a game's settled rounds, so every audience sees the same results.

The players' screens, the instructor's debrief and the researchers' labs.csv each show a lab's
score (and the first two its place); they must agree, and reading a game must not cost a query
per round or per lab.
"""

import csv
import io
from collections import defaultdict

import pytest
from django.urls import reverse

from permitgame import broadcast, exports, ledger, selectors, services
from tests.permitgame.console_fixtures import make_instructor, play_to_end, small_game
from tests.permitgame.test_experiments import finished_experiment  # noqa: F401 (a fixture)

pytestmark = pytest.mark.django_db


def finished(owner, *, labs=4, rounds=3):
    """A finished game with students in some seats (one who bid by hand), bots in the rest."""
    game = small_game(owner, labs=labs, rounds=rounds)
    ada = services.seat_join(game=game, nickname="Ada")
    services.seat_join(game=game, nickname="Bo")
    services.game_start(game=game)
    services.round_submit_bid(seat=ada, round_no=1, amount=0.3)
    return play_to_end(game)


def rows(response):
    return list(csv.DictReader(io.StringIO(response.content.decode())))


def test_screens_debrief_and_labs_csv_agree_on_scores_and_places(client, django_user_model):
    owner = make_instructor(django_user_model, "ana")
    game = finished(owner)
    client.force_login(owner)

    # The players: the game_over message every socket gets, and each lab's own screen.
    screens = selectors.game_screens(game)
    over = broadcast.game_over_message(screens.public)
    screen_scores = {s["player_id"]: s["score"] for s in over["standings"]}
    screen_places = {s["player_id"]: s["rank"] for s in over["standings"]}
    assert {lab.player_id: lab.score for lab in screens.labs.values()} == screen_scores
    assert {lab.player_id: lab.final_rank for lab in screens.labs.values()} == screen_places

    # The instructor: the debrief's leaderboard, as downloaded from the console.
    board = rows(client.get(reverse("console:export-csv", args=(game.code, "leaderboard"))))
    debrief_scores = {int(r["lab"].split()[-1]): float(r["score"]) for r in board}
    debrief_places = {int(r["lab"].split()[-1]): int(r["rank"]) for r in board}

    # The researcher: labs.csv, a lab's score is the sum of its payoffs over the rounds.
    labs = rows(client.get(reverse("console:export-csv", args=(game.code, "labs"))))
    assert len(labs) == game.rounds * game.lab_count
    csv_scores: dict[int, float] = defaultdict(float)
    for row in labs:
        csv_scores[int(row["lab"])] += float(row["payoff"])
    by_score = sorted(csv_scores, key=lambda lab: (-csv_scores[lab], lab))
    csv_places = {lab: place for place, lab in enumerate(by_score, start=1)}

    assert set(screen_scores) == set(debrief_scores) == set(csv_scores) == {1, 2, 3, 4}
    for lab, score in screen_scores.items():
        assert debrief_scores[lab] == pytest.approx(score, abs=1e-12)
        assert csv_scores[lab] == pytest.approx(score, abs=1e-12)
    assert screen_places == debrief_places == csv_places
    assert sorted(screen_places.values()) == [1, 2, 3, 4]
    # Not all equal (else a wrong order would pass unseen).
    assert len({round(score, 9) for score in screen_scores.values()}) > 1


def test_the_ledger_reads_a_game_in_a_fixed_number_of_queries(
    django_user_model, django_assert_num_queries
):
    owner = make_instructor(django_user_model, "ana")
    small, big = finished(owner, labs=3, rounds=1), finished(owner, labs=6, rounds=4)
    for game in (small, big):
        with django_assert_num_queries(2):  # the records and the seats
            book = ledger.read(game)
        assert len(book.rows) == game.rounds and len(book.rows[0]) == game.lab_count
        with django_assert_num_queries(3):  # and the lab moves
            book = ledger.read(game, moves=True)
        assert book.rows[0][0].bid_move is not None
        with django_assert_num_queries(4):  # labs.csv: the ledger and the join entries
            table = exports.lab_round_rows(game)
        assert len(table) == game.rounds * game.lab_count


def test_a_newly_settled_round_is_added_to_the_ledger_read_before_it(django_user_model):
    # A room's ledger grows by its new round at each settlement: the rounds read before are
    # kept and only the records settled since are read, with the same result as reading all.
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    owner = make_instructor(django_user_model, "ana")
    game, other = finished(owner, labs=5, rounds=4), finished(owner, labs=5, rounds=2)
    whole = ledger.read(game)
    first_two = ledger.read(game, records=whole.records[:2])
    with CaptureQueriesContext(connection) as queries:
        grown = ledger.read(game, before=first_two)
    records_query = next(q["sql"] for q in queries if "roundrecord" in q["sql"].lower())
    assert '"round_no" > 2' in records_query  # only the rounds settled since
    for book in (grown, ledger.read(game, before=ledger.read(other))):  # another game's: all
        assert [r.pk for r in book.records] == [r.pk for r in whole.records]
        assert book.rows == whole.rows and book.scores == whole.scores
        assert book.standings == whole.standings and book.wealth == whole.wealth


def test_an_experiments_gradebook_shows_the_points_and_place_of_each_players_screen(request):
    from permitgame.experiments import exports as experiment_exports
    from permitgame.experiments.models import Participant

    experiment = request.getfixturevalue("finished_experiment")  # four rooms, bots beside
    book = {row["label"]: row for row in experiment_exports.gradebook_rows(experiment)}
    assert len(book) == 4
    for p in Participant.objects.filter(experiment=experiment).select_related("seat"):
        screen = selectors.game_screens(p.room.game).labs[p.seat.pk]
        assert book[p.label]["points"] == pytest.approx(screen.score, abs=1e-12)
        assert screen.final_rank is not None
        assert book[p.label]["rank"] == screen.final_rank
