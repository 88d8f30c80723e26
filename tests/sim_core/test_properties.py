"""Properties over random valid scenarios (MODEL.md §3, §4, §8, §11)."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from sim_core import RoundInputs, initial_state, make_setup, resolve_round, run_game

from .generators import scenarios


def play_rounds(scenario, seed):
    setup = make_setup(scenario, seed=seed)
    state = initial_state(setup)
    for _ in range(scenario.rounds):
        progress = resolve_round(setup, state, RoundInputs())
        yield state, progress
        state = progress.next_state


@settings(max_examples=150, deadline=None)
@given(scenario=scenarios(), seed=st.integers(min_value=0, max_value=2**31))
def test_metric_identities_and_conservation_hold_every_round(scenario, seed):
    audit = scenario.audit
    labs = scenario.labs.count
    for state, progress in play_rounds(scenario, seed):
        row = progress.metrics
        settlement = progress.settlement
        won = progress.market.won
        assert row.total_compute == row.permits + row.violations
        assert row.compliance_rate == 1 - row.violations / labs
        assert row.price >= scenario.market.reserve_price
        assert 0 <= row.caught <= row.violations
        assert row.false_positive_audits <= row.audits
        assert not (won & progress.runs).any()  # a permit holder is never a violator
        if scenario.market.type == "clearing":
            assert row.permits <= scenario.market.token_cap
        assert np.all(progress.bids <= np.maximum(state.wealth, 0) + 1e-12)
        # Money is conserved: what labs pay is exactly the revenue.
        paid = won.sum() * row.price + settlement.caught.sum() * (audit.collateral + audit.fine)
        assert np.isclose(paid, row.revenue)
        earned = (
            np.where(settlement.ran, progress.net_values, 0).sum()
            + scenario.labs.racing_value * row.violations
        )
        assert np.isclose(settlement.wealth.sum() - state.wealth.sum(), earned - row.revenue)
        assert np.isclose(
            settlement.payoffs.sum(),
            earned - row.revenue - audit.reputation_penalty * row.caught,
        )


@settings(max_examples=40, deadline=None)
@given(scenario=scenarios(), seed=st.integers(min_value=0, max_value=2**31))
def test_same_seed_replays_exactly(scenario, seed):
    first = run_game(scenario, seed=seed)
    second = run_game(scenario, seed=seed)
    assert first.rows == second.rows


def test_different_seeds_give_different_games():
    from sim_core import load_preset

    scenario = load_preset("targeted_audit")
    rows = {run_game(scenario, seed=seed).rows for seed in range(5)}
    assert len(rows) == 5
