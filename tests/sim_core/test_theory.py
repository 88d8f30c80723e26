"""Closed forms (MODEL.md §2, §7)."""

import numpy as np
import pytest

from sim_core import (
    load_preset,
    optimal_high_prob,
    p_eff,
    p_s,
    parse_scenario,
    perceived_p_eff,
    unpermitted_value,
)
from sim_core.theory import expected_clearing_price


def test_p_s_and_p_eff_follow_section_2():
    assert p_s(0.8, 0.6, 0.05) == pytest.approx(0.8 * 0.6 + 0.2 * 0.05)
    assert p_eff(0.8, 0.6, 0.05, 0.5) == pytest.approx(0.49 + 0.51 * 0.5)
    assert p_eff(0.0, 1.0, 0.0, 0.0) == 0.0
    assert p_eff(1.0, 1.0, 0.0, 0.0) == 1.0


def test_p_eff_works_elementwise_on_arrays():
    betas = np.array([0.0, 0.5, 1.0])
    assert np.allclose(p_eff(betas, np.full(3, 1.0), np.zeros(3), np.zeros(3)), betas)


def test_optimal_high_prob_is_seed_000_formula_when_no_base_prob_nor_backcheck():
    # π1* = min(1, (v* − c) / (P·β))
    got = optimal_high_prob(
        price=0.2, racing_value=0.0, punishment=0.5, beta=0.8, base_prob=0.0, backcheck_prob=0.0
    )
    assert got == pytest.approx(0.2 / (0.5 * 0.8))
    capped = optimal_high_prob(
        price=0.9, racing_value=0.0, punishment=0.5, beta=0.8, base_prob=0.0, backcheck_prob=0.0
    )
    assert capped == 1.0


def test_optimal_high_prob_just_deters_the_marginal_lab_in_general_form():
    kwargs = {
        "price": 0.3,
        "racing_value": 0.05,
        "punishment": 0.9,
        "beta": 0.7,
        "base_prob": 0.1,
        "backcheck_prob": 0.2,
    }
    high_prob = optimal_high_prob(**kwargs)
    assert 0 < high_prob < 1
    detection = p_eff(0.7, high_prob, 0.1, 0.2)
    assert detection * 0.9 == pytest.approx(0.3 + 0.05)  # r·p_eff·P = g*


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"punishment": 0.0, "price": 0.2}, 1.0),  # P = 0: cannot be deterred
        ({"punishment": 0.0, "price": 0.0}, 0.0),  # nothing to deter
        ({"beta": 0.0, "base_prob": 0.0}, 1.0),  # signals carry nothing; π0 = 0
        ({"beta": 0.0, "base_prob": 1.0}, 0.0),  # everybody audited anyway
        ({"backcheck_prob": 1.0}, 0.0),  # always caught later
        ({"backcheck_prob": 1.0, "punishment": 0.1}, 1.0),  # caught, but P < g*
        ({"price": 0.0}, 0.0),  # a free permit: nobody gains from violating
    ],
)
def test_optimal_high_prob_degenerate_cases(kwargs, expected):
    base = {
        "price": 0.2,
        "racing_value": 0.0,
        "punishment": 0.5,
        "beta": 0.8,
        "base_prob": 0.0,
        "backcheck_prob": 0.0,
    }
    assert optimal_high_prob(**(base | kwargs)) == expected


def test_labs_perceive_the_announced_policy():
    targeted = load_preset("targeted_audit")  # optimal
    assert perceived_p_eff(
        targeted, announced_high_prob=0.5, human_governor=False
    ) == pytest.approx(0.8 * 0.5)
    assert perceived_p_eff(targeted, announced_high_prob=0.5, human_governor=True) == pytest.approx(
        p_eff(0.8, 0.6, 0.05, 0.0)
    )
    assert (
        perceived_p_eff(
            load_preset("no_enforcement"), announced_high_prob=0.5, human_governor=False
        )
        == 0.0
    )


def test_expected_clearing_price_matches_monte_carlo():
    scenario = load_preset("targeted_audit")
    rng = np.random.default_rng(1)
    values = rng.uniform(0.1, 1.0, size=(200_000, 20))
    qth = np.sort(values, axis=1)[:, -10] - 0.1
    assert expected_clearing_price(scenario) == pytest.approx(np.maximum(qth, 0).mean(), abs=2e-3)


def test_expected_clearing_price_is_the_expected_lowest_value_when_every_lab_gets_a_permit():
    # Q = N: all N bids are eligible and the price is the lowest of them (§3), E[min u] > 0.
    scenario = parse_scenario(
        {"labs": {"count": 10, "gross_value": [0.5, 1.0]}, "market": {"token_cap": 10}}
    )
    expected = 0.5 + 0.5 / 11 - 0.1  # E[min of 10 uniforms on [0.5, 1]] − c
    assert expected_clearing_price(scenario) == pytest.approx(expected, abs=1e-4)
    beyond = parse_scenario({"labs": {"count": 10}, "market": {"token_cap": 11}})
    assert expected_clearing_price(beyond) == 0.0


def test_unpermitted_value_is_what_running_without_a_permit_is_worth_on_average():
    # d = u + rho − E (§5): 0.6 net value, 0.1 racing value, 0.5 expected penalty.
    assert unpermitted_value(0.6, 0.1, 0.5) == pytest.approx(0.2)
    values = unpermitted_value(np.array([0.1, 0.4]), 0.0, np.array([0.25, 0.25]))
    assert values.tolist() == pytest.approx([-0.15, 0.15])
    # One penalty for every lab, as the screens take it at face value; none: the gain u + rho.
    same = unpermitted_value(np.array([0.1, 0.4]), 0.0, 0.25)
    assert same.tolist() == values.tolist()
    assert unpermitted_value(np.array([0.1, 0.4]), 0.2, 0.0).tolist() == pytest.approx([0.3, 0.6])
