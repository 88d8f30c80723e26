"""The perceived-penalty chain: announced p_eff, the adaptive labs' estimate, E = r·p̂·P."""

import numpy as np
import pytest

from sim_core import STRATEGIES, perceived_penalties
from sim_core.strategies import ADAPTIVE_PRIOR_WEIGHT

RATIONAL, ADAPTIVE = STRATEGIES["rational"], STRATEGIES["adaptive"]


def test_labs_that_believe_the_announcement_expect_r_times_p_eff_times_p():
    penalties = perceived_penalties(
        np.array([RATIONAL, RATIONAL]), np.array([0.5, 1.5]), 0.4, 10.0, caught_total=3,
        violations_total=3,
    )  # fmt: skip
    assert penalties.tolist() == pytest.approx([0.5 * 0.4 * 10, 1.5 * 0.4 * 10])


def test_adaptive_labs_use_the_estimate_learnt_from_the_public_tally():
    codes = np.array([RATIONAL, ADAPTIVE])
    fresh = perceived_penalties(codes, np.ones(2), 0.4, 10.0)
    assert fresh.tolist() == pytest.approx([4.0, 4.0])  # nothing learnt yet: the announcement
    # Every violator so far was caught: the adaptive lab now fears more than it was told.
    learnt = perceived_penalties(codes, np.ones(2), 0.4, 10.0, caught_total=10, violations_total=10)
    estimate = (ADAPTIVE_PRIOR_WEIGHT * 0.4 + 10) / (ADAPTIVE_PRIOR_WEIGHT + 10)
    assert learnt.tolist() == pytest.approx([4.0, estimate * 10])


def test_a_batch_of_games_broadcasts_one_announcement_and_tally_per_game():
    announced = np.array([[0.2], [0.6]])  # two games, one p_eff each
    caught, violations = np.array([[0.0], [5.0]]), np.array([[0.0], [5.0]])
    risk = np.array([[1.0, 2.0]])
    penalties = perceived_penalties(
        ADAPTIVE, risk, announced, 10.0, caught_total=caught, violations_total=violations
    )
    estimate = (ADAPTIVE_PRIOR_WEIGHT * 0.6 + 5) / (ADAPTIVE_PRIOR_WEIGHT + 5)
    assert penalties.shape == (2, 2)
    assert penalties == pytest.approx(np.array([[2.0, 4.0], [estimate * 10, estimate * 20]]))
