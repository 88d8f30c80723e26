"""Simulated reference classes for the debrief (where does a class sit?)."""

import numpy as np
import pytest

from sim_core import METRICS, load_preset, percentile_rank, run_game, simulate_classes


def test_simulated_classes_are_reproducible_and_varied():
    scenario = load_preset("random_audit")
    first = simulate_classes(scenario, classes=12, rounds=4)
    second = simulate_classes(scenario, classes=12, rounds=4)
    assert set(first) == set(METRICS)
    assert np.array_equal(first["compliance_rate"], second["compliance_rate"])
    assert np.unique(first["welfare"]).size > 1


def test_simulated_classes_never_replay_the_class_own_seed():
    scenario = load_preset("random_audit")
    own = run_game(scenario).summary["welfare"]
    simulated = simulate_classes(scenario, classes=20)["welfare"]
    assert own not in simulated.tolist()


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0.0, 0.0), (5.0, 100.0), (2.0, 37.5), (2.5, 50.0), (4.0, 87.5)],
)
def test_percentile_rank_counts_ties_half(value, expected):
    assert percentile_rank(value, np.array([1.0, 2.0, 3.0, 4.0])) == pytest.approx(expected)
