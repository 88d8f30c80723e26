"""The debrief's truth: the bots' price line, detection as realised, and the bot in your seat."""

from __future__ import annotations

import csv
import io

import pytest

from permitgame import bridge, debrief, services
from permitgame.models import Game
from sim_core import RoundInputs, expected_bot_prices, initial_state, resolve_round, run_game
from tests.permitgame.console_fixtures import play_to_end, small_scenario

pytestmark = pytest.mark.django_db

UNTIMED = {"bidding": None, "compliance": None, "audit": None, "results": None}


def chart_column(chart, label: str) -> list[float]:
    rows = list(csv.DictReader(io.StringIO(chart.csv)))
    return [float(row[label]) for row in rows if row[label] not in ("", None)]


def test_the_price_line_is_the_expected_price_of_the_bots_the_class_played_beside():
    game = services.game_create(scenario=small_scenario(labs=6, rounds=4, cap=3))
    play_to_end(game)
    summary = debrief.debrief_summary(Game.objects.get(pk=game.pk))
    (price_chart,) = [chart for chart in summary.charts if chart.name == "price"]
    expected = expected_bot_prices(debrief.debrief_scenario(game), rounds=game.rounds)
    line = chart_column(price_chart, "model's expected price (rational bots)")
    assert line == pytest.approx(list(expected), abs=1e-6)
    assert summary.price is not None and summary.price.mean == pytest.approx(sum(expected) / 4)
    assert summary.price.truthful > summary.price.mean  # the penalty caps rational bids here


def test_the_realised_detection_and_audit_rates_come_from_the_class():
    game = services.game_create(scenario=small_scenario(labs=6, rounds=4, cap=3))
    play_to_end(game)
    summary = debrief.debrief_summary(Game.objects.get(pk=game.pk))
    enforcement = summary.enforcement
    assert enforcement is not None
    seen = summary.observed
    assert enforcement.violations == seen.violations and enforcement.caught == seen.detected
    if seen.violations:
        assert enforcement.realised_detection == seen.detected / seen.violations
    # Labs without a permit: (6 − 3) per round, split by their signal.
    assert enforcement.signalled + enforcement.quiet == 3 * 4
    assert enforcement.announced_base_prob == 0.0  # the optimal policy: π0 = 0


def test_an_all_bot_class_equals_its_counterfactual_and_a_direct_run_with_the_same_seed():
    scenario = small_scenario(labs=6, rounds=4, cap=3)
    game = services.game_create(scenario=scenario, seed=41)
    play_to_end(game)
    counterfactual = debrief.counterfactual(Game.objects.get(pk=game.pk))
    assert counterfactual is not None and counterfactual.identical
    direct = run_game(scenario, seed=41)
    assert [r.bot_price for r in counterfactual.rounds] == [row.price for row in direct.rows]
    assert [r.bot_welfare for r in counterfactual.rounds] == [row.welfare for row in direct.rows]
    assert [r.bot_compliance for r in counterfactual.rounds] == [
        row.compliance_rate for row in direct.rows
    ]


def test_students_who_play_exactly_as_their_bots_show_no_difference():
    scenario = small_scenario(labs=4, rounds=3, cap=2)
    game = services.game_create(scenario=scenario, human_labs=2, durations=UNTIMED, seed=9)
    seats = [services.seat_join(game=game, nickname=name) for name in ("ana", "ben")]
    game = services.game_start(game=game)
    setup = bridge.setup_of(game)
    state = initial_state(setup)
    for round_no in range(1, scenario.rounds + 1):
        bots = resolve_round(setup, state, RoundInputs())  # what every bot would do
        assert bots.bids is not None and bots.market is not None and bots.runs is not None
        for seat in seats:
            lab = seat.lab_index
            services.round_submit_bid(seat=seat, round_no=round_no, amount=float(bots.bids[lab]))
        for seat in seats:
            lab = seat.lab_index
            if not bots.market.won[lab]:
                services.round_submit_choice(seat=seat, round_no=round_no, run=bool(bots.runs[lab]))
        services.game_advance_now(game=Game.objects.get(pk=game.pk))
        assert bots.next_state is not None
        state = bots.next_state
    game = Game.objects.get(pk=game.pk)
    assert game.status == "finished"
    counterfactual = debrief.counterfactual(game)
    assert counterfactual is not None and counterfactual.identical
    assert len(counterfactual.seats) == 2
    for seat in counterfactual.seats:
        assert seat.score == pytest.approx(seat.bot_score, abs=1e-12)


def test_students_who_play_otherwise_show_the_difference():
    scenario = small_scenario(labs=4, rounds=2, cap=2)
    game = services.game_create(scenario=scenario, human_labs=2, durations=UNTIMED, seed=9)
    seats = [services.seat_join(game=game, nickname=name) for name in ("ana", "ben")]
    game = services.game_start(game=game)
    for round_no in (1, 2):
        for seat in seats:  # bid nothing, then run anyway: unlike any rational bot
            services.round_submit_bid(seat=seat, round_no=round_no, amount=0.0)
        for seat in seats:
            services.round_submit_choice(seat=seat, round_no=round_no, run=True)
        services.game_advance_now(game=Game.objects.get(pk=game.pk))
    counterfactual = debrief.counterfactual(Game.objects.get(pk=game.pk))
    assert counterfactual is not None and not counterfactual.identical


def test_the_demo_class_is_a_typical_all_bot_class():
    import numpy as np

    from permitgame.management.commands.demo import PLAYED_SEED
    from sim_core import load_preset, percentile_rank, simulate_classes

    scenario = load_preset("targeted_audit")
    samples = simulate_classes(scenario, classes=debrief.SIMULATED_CLASSES)
    summary = run_game(scenario, seed=PLAYED_SEED).summary
    for metric, _, _ in debrief.COMPARED:
        rank = percentile_rank(summary[metric], np.asarray(samples[metric]))
        assert 30 <= rank <= 70, (metric, rank)


def _one_human_lab_at_compliance(*, ask_belief: bool):
    scenario = small_scenario(labs=4, rounds=2, cap=2)
    game = services.game_create(
        scenario=scenario, human_labs=1, durations=UNTIMED, seed=9, ask_belief=ask_belief
    )
    seat = services.seat_join(game=game, nickname="ana")
    services.game_start(game=game)
    services.round_submit_bid(seat=seat, round_no=1, amount=0.0)  # a bid of 0 never wins
    return Game.objects.get(pk=game.pk), seat


def test_a_belief_is_logged_as_a_move_exported_and_plotted_with_its_implied_risk():
    from permitgame import exports, selectors
    from permitgame.errors import AlreadySubmitted
    from permitgame.models import Move, RoundRecord
    from sim_core import perceived_p_eff

    game, seat = _one_human_lab_at_compliance(ask_belief=True)
    assert game.phase == "compliance"
    services.round_submit_belief(seat=seat, round_no=1, percent=30)
    assert services.round_submit_belief(seat=seat, round_no=1, percent=30).duplicate
    with pytest.raises(AlreadySubmitted):
        services.round_submit_belief(seat=seat, round_no=1, percent=40)
    (move,) = Move.objects.filter(game=game, action="belief")
    assert move.payload == {"percent": 30} and move.actor == "human"
    lab_view = selectors.game_screens(game).labs[seat.pk]
    assert lab_view.ask_belief and lab_view.belief == 30
    services.round_submit_choice(seat=seat, round_no=1, run=True)
    services.game_advance_now(game=Game.objects.get(pk=game.pk))
    game = Game.objects.get(pk=game.pk)
    rows = [row for row in exports.lab_round_rows(game) if row["lab"] == 1]
    assert rows[0]["belief"] == 30
    summary = debrief.debrief_summary(game)
    assert summary.beliefs is not None
    (row,) = summary.beliefs.labs
    record = RoundRecord.objects.get(game=game, round_no=1)
    announced = perceived_p_eff(
        bridge.scenario_of(game), announced_high_prob=record.announced_high_prob,
        human_governor=False,
    )  # fmt: skip
    assert row.implied_risk == pytest.approx(0.30 / announced)


def test_a_belief_is_refused_when_the_game_does_not_ask():
    from permitgame.errors import NotAllowed

    _, seat = _one_human_lab_at_compliance(ask_belief=False)
    with pytest.raises(NotAllowed):
        services.round_submit_belief(seat=seat, round_no=1, percent=30)
