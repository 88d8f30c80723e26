"""Bot lab strategies (MODEL.md §5)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim_core import STRATEGIES
from sim_core.strategies import adaptive_estimate, lab_bids, lab_runs, perceived_detection


def bid(name, u, penalty, racing_value=0.0, wealth=10.0, uniform=0.5):
    codes = np.array([STRATEGIES[name]])
    return float(
        lab_bids(
            codes,
            np.array([u]),
            np.array([penalty]),
            racing_value,
            np.array([wealth]),
            np.array([uniform]),
        )[0]
    )


def runs(name, d, uniform=0.9):
    return bool(lab_runs(np.array([STRATEGIES[name]]), np.array([d]), np.array([uniform]))[0])


@pytest.mark.parametrize(
    ("name", "u", "penalty", "rho", "expected"),
    [
        ("rational", 0.5, 0.3, 0.0, 0.3),  # capped by the penalty it avoids
        ("rational", 0.2, 0.3, 0.0, 0.2),  # its value, when enforcement is strong
        ("rational", 0.5, 0.3, 0.1, 0.2),  # racing value lowers what a permit is worth
        ("rational", -0.1, 0.3, 0.0, 0.0),  # never negative
        ("rational", 0.5, 0.0, 0.0, 0.0),  # no enforcement: a permit is worth nothing
        ("adaptive", 0.5, 0.3, 0.0, 0.3),
        ("truthful", 0.5, 0.0, 0.0, 0.5),
        ("truthful", -0.2, 0.3, 0.0, 0.0),
        ("compliant", 0.4, 0.0, 0.0, 0.4),
        ("reckless", 0.9, 0.9, 0.0, 0.0),
        ("random", 0.8, 0.0, 0.0, 0.4),  # uniform 0.5 of [0, u]
        ("random", -0.3, 0.0, 0.0, 0.0),
    ],
)
def test_bid_follows_section_5_when_strategy_decides(name, u, penalty, rho, expected):
    assert bid(name, u, penalty, rho) == pytest.approx(expected)


def test_bid_is_clipped_to_wealth_when_lab_is_poor():
    assert bid("truthful", 0.8, 0.0, wealth=0.25) == 0.25
    assert bid("truthful", 0.8, 0.0, wealth=-1.0) == 0.0


@pytest.mark.parametrize(
    ("name", "d", "uniform", "expected"),
    [
        ("rational", 0.01, 0.9, True),
        ("rational", 0.0, 0.9, False),  # "runs iff d > 0" is strict
        ("rational", -0.5, 0.9, False),
        ("truthful", 0.2, 0.9, True),
        ("adaptive", -0.1, 0.9, False),
        ("compliant", 5.0, 0.9, False),
        ("reckless", -5.0, 0.9, True),
        ("random", -5.0, 0.4, True),  # a fair coin whatever u is
        ("random", 5.0, 0.6, False),
    ],
)
def test_run_choice_follows_section_5_when_no_permit(name, d, uniform, expected):
    assert runs(name, d, uniform) is expected


@pytest.mark.parametrize("name", sorted(STRATEGIES))
@settings(max_examples=60, deadline=None)
@given(
    u=st.lists(st.floats(min_value=-1, max_value=2), min_size=1, max_size=20),
    penalty=st.floats(min_value=0, max_value=2),
    wealth=st.floats(min_value=-1, max_value=3),
)
def test_bids_stay_within_zero_and_wealth_when_any_strategy(name, u, penalty, wealth):
    net_values = np.array(u)
    codes = np.full(net_values.size, STRATEGIES[name])
    uniforms = np.random.default_rng(0).random(net_values.size)
    bids = lab_bids(
        codes,
        net_values,
        np.full(net_values.size, penalty),
        0.0,
        np.full(net_values.size, wealth),
        uniforms,
    )
    assert np.all(bids >= 0)
    assert np.all(bids <= max(wealth, 0.0) + 1e-12)
    assert np.all(bids <= np.maximum(net_values, 0.0) + 1e-12)  # nobody overpays its value


def test_adaptive_estimate_starts_at_announced_and_learns_from_public_news():
    assert adaptive_estimate(0.4, 0, 0) == pytest.approx(0.4)
    assert adaptive_estimate(0.4, 10, 10) == pytest.approx((4 + 10) / 20)
    assert adaptive_estimate(0.4, 0, 30) == pytest.approx(4 / 40)


def test_only_adaptive_labs_use_the_learnt_detection():
    codes = np.array([STRATEGIES["rational"], STRATEGIES["adaptive"]])
    assert perceived_detection(codes, 0.5, 0.2).tolist() == [0.5, 0.2]
