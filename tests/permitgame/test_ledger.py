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

from permitgame import bridge, broadcast, exports, ledger, selectors, services
from sim_core import score_audits
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


def test_the_governors_audit_scores_read_each_rounds_moves_as_rows_with_the_same_inputs(
    django_user_model, django_assert_num_queries
):
    # At a hall's end the governor's scores against the bot policies are computed before the
    # game_over reaches anyone: each settled round's moves are read as plain rows, and they
    # must be the same inputs as the moves read with their seats.
    owner = make_instructor(django_user_model, "ana")
    game = finished(owner, labs=5, rounds=3)
    records = ledger.read(game).records
    labs = {seat.pk: seat.lab_index for seat in game.seats.filter(role="lab")}
    expected: dict[str, list[float]] = defaultdict(lambda: [0, 0, 0, 0.0])
    for record in records:
        given = bridge.round_inputs(
            bridge.round_moves(game, record.round_no), human_labs=frozenset(), human_governor=False
        )
        assert given.bids and given.audits is not None  # every lab's bid and the audit
        assert bridge.logged_inputs(game, record.round_no, labs) == given
        state = bridge.state_from_json(record.state)
        for row in score_audits(bridge.setup_of(game), state, given):
            total = expected[row.policy]
            total[0] += row.audits
            total[1] += row.caught
            total[2] += row.false_positives
            total[3] += row.welfare
    with django_assert_num_queries(1 + game.rounds):  # the labs' seats, then a round at a time
        scores = ledger.audit_scores(game, records)
    assert [s.policy for s in scores] == ["yours", "optimal", "none"]
    assert scores[0].audits == sum(int(r.metrics["audits"]) for r in records)
    for score in scores:
        audits, caught, false_positives, welfare = expected[score.policy]
        assert (score.audits, score.caught, score.false_positives) == (
            audits,
            caught,
            false_positives,
        )
        assert score.welfare == pytest.approx(welfare)


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
