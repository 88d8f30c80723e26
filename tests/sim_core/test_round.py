"""The resolver, phase by phase (MODEL.md §4, §6, §11)."""

from dataclasses import replace

import numpy as np
import pytest

from sim_core import (
    ActionError,
    Phase,
    RoundInputs,
    initial_state,
    load_preset,
    make_setup,
    parse_scenario,
    resolve_round,
    run_game,
)
from sim_core.round import BID_ABOVE_WEALTH, BID_NEGATIVE, BID_NOT_A_NUMBER, check_bid


def scenario(**sections):
    document = {"labs": {"count": 8}, "market": {"type": "clearing", "token_cap": 3}}
    for key, value in sections.items():
        document[key] = document.get(key, {}) | value if isinstance(value, dict) else value
    return parse_scenario(document)


def bots_only(setup, state):
    return resolve_round(setup, state, RoundInputs())


def test_round_settles_when_every_seat_is_a_bot():
    setup = make_setup(load_preset("targeted_audit"))
    progress = bots_only(setup, initial_state(setup))
    assert progress.awaiting is None
    assert progress.metrics.round == 1
    assert progress.next_state.round_no == 2


def test_round_waits_in_bidding_for_a_human_without_a_bid():
    setup = make_setup(scenario())
    progress = resolve_round(setup, initial_state(setup), RoundInputs(human_labs=frozenset({2, 5})))
    assert progress.awaiting is Phase.BIDDING
    assert progress.waiting_for == {2, 5}
    assert progress.market is None


def test_round_waits_in_compliance_only_for_humans_without_a_permit():
    setup = make_setup(scenario())
    state = initial_state(setup)
    humans = frozenset({0, 1})
    progress = resolve_round(setup, state, RoundInputs(bids={0: 9.0, 1: 0.0}, human_labs=humans))
    assert progress.awaiting is Phase.COMPLIANCE
    assert progress.market.won[0] and not progress.market.won[1]
    assert progress.waiting_for == {1}  # lab 0 holds a permit and owes nothing


def test_round_waits_for_a_human_governor_with_signals_known():
    setup = make_setup(scenario(), human_governor=True)
    progress = resolve_round(setup, initial_state(setup), RoundInputs(human_governor=True))
    assert progress.awaiting is Phase.AUDIT
    assert progress.signals is not None and progress.audited is None


def test_humans_acting_as_bots_give_the_all_bot_result_phase_by_phase():
    for preset in ("targeted_audit", "random_audit", "carbon_tax"):
        base = load_preset(preset)
        mix = {"rational": 0.5, "random": 0.25, "adaptive": 0.25}
        setup = make_setup(base.with_changes(labs=replace(base.labs, count=12, strategy=mix)))
        state = initial_state(setup)
        for _ in range(4):
            bot = bots_only(setup, state)
            humans = frozenset({1, 4, 7})
            # Phase by phase: bids first, then the run choices they owe, then the audits.
            step = resolve_round(setup, state, RoundInputs(human_labs=humans, human_governor=True))
            assert step.awaiting is Phase.BIDDING
            bids = {lab: float(bot.bids[lab]) for lab in humans}
            step = resolve_round(
                setup, state, RoundInputs(bids=bids, human_labs=humans, human_governor=True)
            )
            if step.awaiting is Phase.COMPLIANCE:
                runs = {lab: bool(bot.runs[lab]) for lab in step.waiting_for}
            else:
                runs = {}
            step = resolve_round(
                setup,
                state,
                RoundInputs(bids=bids, runs=runs, human_labs=humans, human_governor=True),
            )
            assert step.awaiting is Phase.AUDIT
            audits = frozenset(np.flatnonzero(bot.audited).tolist())
            done = resolve_round(
                setup,
                state,
                RoundInputs(
                    bids=bids, runs=runs, audits=audits, human_labs=humans, human_governor=True
                ),
            )
            assert done.metrics == bot.metrics
            assert np.array_equal(done.settlement.wealth, bot.settlement.wealth)
            state = done.next_state


def test_a_human_move_never_shifts_anyone_elses_draws():
    setup = make_setup(scenario(labs={"strategy": "random"}))
    state = initial_state(setup)
    bot = bots_only(setup, state)
    human = resolve_round(setup, state, RoundInputs(bids={3: 0.0}, runs={}, human_labs=frozenset()))
    others = np.arange(8) != 3
    assert np.array_equal(human.bids[others], bot.bids[others])
    assert np.array_equal(human.values, bot.values)


def test_replaying_a_round_with_more_moves_keeps_earlier_phases():
    setup = make_setup(scenario(), human_governor=True)
    state = initial_state(setup)
    first = resolve_round(setup, state, RoundInputs(human_governor=True))
    second = resolve_round(setup, state, RoundInputs(audits=frozenset(), human_governor=True))
    assert np.array_equal(first.signals, second.signals)
    assert first.market.price == second.market.price


def test_given_moves_are_checked_by_the_rules():
    setup = make_setup(scenario(labs={"endowment": 1.0}))
    state = initial_state(setup)
    with pytest.raises(ActionError, match="cannot exceed your wealth"):
        resolve_round(setup, state, RoundInputs(bids={0: 1.5}))
    with pytest.raises(ActionError, match="There is no lab 9"):
        resolve_round(setup, state, RoundInputs(bids={8: 0.1}))
    winner = resolve_round(setup, state, RoundInputs(bids={0: 1.0}))
    assert winner.market.won[0]
    with pytest.raises(ActionError, match="holds a permit"):
        resolve_round(setup, state, RoundInputs(bids={0: 1.0}, runs={0: True}))
    capped = make_setup(scenario(audit={"max_audits": 1}))
    with pytest.raises(ActionError, match=r"at most 1 audits"):
        resolve_round(capped, initial_state(capped), RoundInputs(audits=frozenset({0, 1})))


@pytest.mark.parametrize(
    ("bid", "message"),
    [
        ("0.3", BID_NOT_A_NUMBER),
        (float("nan"), BID_NOT_A_NUMBER),
        (True, BID_NOT_A_NUMBER),
        (-0.01, BID_NEGATIVE),
        (2.5, BID_ABOVE_WEALTH),
    ],
)
def test_check_bid_refuses_with_a_clear_message(bid, message):
    with pytest.raises(ActionError) as caught:
        check_bid(bid, wealth=2.0)
    assert str(caught.value).startswith(message.split("{")[0])


def test_check_bid_floors_negative_wealth_at_zero():
    assert check_bid(0, wealth=-3.0) == 0.0
    with pytest.raises(ActionError, match=r"wealth of 0\.00"):
        check_bid(0.1, wealth=-3.0)


def play(document_changes, rounds=30, seed=5):
    base = {
        "labs": {"count": 30, "strategy": "reckless"},
        "governor": {"policy": "policy"},
        "rounds": rounds,
    }
    for key, value in document_changes.items():
        base[key] = base.get(key, {}) | value
    return run_game(parse_scenario(base), seed=seed)


def test_only_violators_are_caught_and_every_audit_of_a_compliant_lab_is_a_false_positive():
    game = play(
        {
            "labs": {"strategy": {"reckless": 0.5, "compliant": 0.5}},
            "audit": {"high_prob": 0.7, "base_prob": 0.3},
        }
    )
    for row in game.rows:
        assert row.caught <= row.violations
        assert row.false_positive_audits <= row.audits


def test_everybody_unpermitted_is_audited_when_both_audit_probabilities_are_one():
    game = play({"audit": {"high_prob": 1.0, "base_prob": 1.0}})
    for row in game.rows:
        assert row.audits == 30 - row.permits
        assert row.caught == row.violations == 30  # reckless labs never buy
        assert row.detection_rate == 1.0


def test_nobody_is_audited_when_both_audit_probabilities_are_zero():
    game = play({"audit": {"high_prob": 0.0, "base_prob": 0.0}})
    assert all(row.audits == 0 and row.caught == 0 for row in game.rows)


def test_backcheck_of_one_catches_every_violator_without_audits():
    game = play({"audit": {"high_prob": 0.0, "base_prob": 0.0, "backcheck_prob": 1.0}})
    assert all(row.caught == row.violations and row.audits == 0 for row in game.rows)


def test_audits_follow_signals_exactly_when_alpha_zero_and_beta_one():
    # Violators always signal, compliant labs never: with π1 = 1, π0 = 0 every violator is
    # audited and no audit is a false positive.
    game = play(
        {
            "labs": {"strategy": {"reckless": 0.5, "compliant": 0.5}},
            "audit": {"alpha": 0.0, "beta": 1.0, "high_prob": 1.0, "base_prob": 0.0},
        }
    )
    for row in game.rows:
        assert row.audits == row.violations == row.caught
        assert row.false_positive_audits == 0


def test_max_audits_caps_the_bot_governor():
    game = play({"audit": {"high_prob": 1.0, "base_prob": 1.0, "max_audits": 4}})
    assert all(row.audits == 4 for row in game.rows)


def test_none_policy_never_audits_but_backchecks_still_catch():
    game = play({"governor": {"policy": "none"}, "audit": {"backcheck_prob": 0.5}})
    assert all(row.audits == 0 for row in game.rows)
    assert sum(row.caught for row in game.rows) > 0


def test_optimal_policy_announces_pi1_star_from_this_rounds_price():
    setup = make_setup(load_preset("targeted_audit"))
    progress = bots_only(setup, initial_state(setup))
    audit = setup.scenario.audit
    expected = min(1.0, progress.market.price / (audit.punishment * audit.beta))
    assert progress.announced_high_prob == pytest.approx(expected)
    assert progress.next_state.announced_high_prob == progress.announced_high_prob


def test_wealth_carries_over_and_caught_violators_lose_collateral_and_fine():
    game_setup = make_setup(
        parse_scenario(
            {
                "labs": {
                    "count": 10,
                    "strategy": "reckless",
                    "racing_value": 0.0,
                    "redraw_values_each_round": False,
                },
                "audit": {
                    "high_prob": 1.0,
                    "base_prob": 1.0,
                    "collateral": 0.2,
                    "fine": 0.3,
                    "reputation_penalty": 0.4,
                },
                "governor": {"policy": "policy"},
            }
        )
    )
    state = initial_state(game_setup)
    progress = bots_only(game_setup, state)
    settlement = progress.settlement
    net = progress.net_values
    assert settlement.caught.all()
    assert np.allclose(settlement.payoffs, net - 0.9)  # score counts R
    assert np.allclose(settlement.wealth, 10.0 + net - 0.5)  # wealth does not
    assert np.array_equal(progress.next_state.wealth, settlement.wealth)
