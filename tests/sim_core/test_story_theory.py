"""The bots' expected price (MODEL.md §7), payoff terms (§4) and the all-bot replay (§11)."""

from dataclasses import replace

import numpy as np
import pytest

from sim_core import (
    expected_bot_price,
    expected_bot_prices,
    expected_clearing_price,
    initial_state,
    load_preset,
    make_setup,
    payoff_terms,
    replay_with_bots,
    resolve_round,
    run_game,
)
from sim_core.enforcement import payoffs
from sim_core.round import RoundInputs


def _monte_carlo_prices(scenario, games=300):
    """Each round's mean price over ``games`` all-bot games played by the one resolver."""
    rows = [run_game(scenario, seed=seed).rows for seed in range(games)]
    return np.array([[row.price for row in game] for game in rows]).mean(axis=0)


@pytest.mark.parametrize("preset", ["random_audit", "targeted_audit"])
def test_expected_rational_price_matches_a_monte_carlo_of_the_resolver(preset):
    scenario = load_preset(preset)
    expected = np.array(expected_bot_prices(scenario))
    simulated = _monte_carlo_prices(scenario)
    # 300 games of 10 labs' Q-th highest bid: the standard error of a round's mean is < 0.005.
    assert np.allclose(expected, simulated, atol=0.015), (expected, simulated)
    assert expected_bot_price(scenario) == pytest.approx(simulated.mean(), abs=0.01)


def test_rational_price_is_capped_by_the_penalty_and_below_the_truthful_one():
    scenario = load_preset("random_audit")
    rational = expected_bot_price(scenario, strategy="rational")
    truthful = expected_bot_price(scenario, strategy="truthful")
    assert truthful == pytest.approx(expected_clearing_price(scenario), abs=1e-3)
    assert rational < truthful
    audit = scenario.audit
    from sim_core import p_eff

    cap = (
        scenario.labs.risk_profile[1]
        * audit.punishment
        * p_eff(audit.beta, audit.high_prob, audit.base_prob, audit.backcheck_prob)
    )
    assert rational <= cap


def test_a_mixed_population_prices_between_its_parts():
    scenario = load_preset("random_audit")
    labs = replace(scenario.labs, strategy={"rational": 0.5, "truthful": 0.5})
    mixed = scenario.with_changes(labs=labs)
    price = expected_bot_price(mixed)
    assert expected_bot_price(scenario, strategy="rational") < price
    assert price < expected_bot_price(scenario, strategy="truthful")
    simulated = _monte_carlo_prices(mixed, games=200).mean()
    assert price == pytest.approx(simulated, abs=0.015)


def test_payoff_terms_add_up_to_the_settlement_payoff():
    scenario = load_preset("targeted_audit")
    audit = scenario.audit
    rng = np.random.default_rng(5)
    for _ in range(200):
        value, price = rng.random(), rng.random() * 0.5
        won = bool(rng.random() < 0.5)
        violated = not won and bool(rng.random() < 0.5)
        caught = violated and bool(rng.random() < 0.5)
        terms = payoff_terms(
            value=value, compute_cost=0.1, won=won, violated=violated, caught=caught,
            price=price, racing_value=0.05, audit=audit,
        )  # fmt: skip
        expected = payoffs(
            net_values=np.array([value - 0.1]), won=np.array([won]),
            violated=np.array([violated]), caught=np.array([caught]), price=price,
            racing_value=0.05, punishment=audit.punishment,
        )[0]  # fmt: skip
        assert sum(term.amount for term in terms) == pytest.approx(expected)
        names = [term.name for term in terms]
        assert ("fine" in names) == caught and ("price" in names) == won


def test_replay_with_bots_equals_a_direct_all_bot_run_with_the_same_seed():
    scenario = load_preset("targeted_audit")
    direct = run_game(scenario, seed=11)
    replay = replay_with_bots(make_setup(scenario, seed=11), rounds=scenario.rounds)
    assert replay.rows == direct.rows


def test_replay_with_bots_replaces_only_the_named_seats():
    scenario = load_preset("random_audit")
    setup = make_setup(scenario, seed=3)
    replay = replay_with_bots(setup, rounds=1, strategies={0: "reckless"})
    given = RoundInputs(bids={0: 0.0}, runs={0: True})
    progress = resolve_round(setup, initial_state(setup), given)
    assert progress.settlement is not None
    assert np.allclose(replay.payoffs[0], progress.settlement.payoffs)


def test_signal_posterior_is_bayes_rule():
    from sim_core import signal_posterior

    loud, quiet = signal_posterior(0.1, 0.8, 0.25)
    assert loud == pytest.approx(0.8 * 0.25 / (0.8 * 0.25 + 0.1 * 0.75))
    assert quiet == pytest.approx(0.2 * 0.25 / (0.2 * 0.25 + 0.9 * 0.75))
    assert signal_posterior(0.0, 0.0, 0.3) == pytest.approx((0.3, 0.3))  # no signal: the prior


def test_score_audits_compares_an_audit_set_with_optimal_and_none_on_the_same_draws():
    from sim_core import score_audits

    scenario = load_preset("random_audit")
    setup = make_setup(scenario, seed=5)
    state = initial_state(setup)
    bots = resolve_round(setup, state, RoundInputs())
    assert bots.bids is not None and bots.runs is not None and bots.audited is not None
    labs = range(setup.lab_count)
    runs = {lab: bool(bots.runs[lab]) for lab in labs if not bots.market.won[lab]}
    bids = {lab: float(bots.bids[lab]) for lab in labs}
    violators = frozenset(lab for lab, ran in runs.items() if ran)
    everyone = RoundInputs(bids=bids, runs=runs, audits=violators)
    yours, optimal, nobody = score_audits(setup, state, everyone)
    assert yours.caught == len(violators) and yours.false_positives == 0
    assert nobody.audits == 0 and nobody.caught == 0  # no backcheck in this preset
    assert optimal.policy == "optimal" and optimal.caught <= len(violators)
    # The given audit set is scored as the resolver settles it.
    direct = resolve_round(setup, state, everyone)
    assert direct.metrics is not None and yours.welfare == direct.metrics.welfare
