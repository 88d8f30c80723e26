"""Hypothesis strategies for sim_core tests: bid vectors and valid scenario documents."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import strategies as st

from sim_core import STRATEGY_NAMES, Scenario, parse_scenario

probabilities = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
small_money = st.floats(min_value=0.0, max_value=2.0, allow_nan=False)


@st.composite
def intervals(draw: st.DrawFn, low: float = 0.0, high: float = 2.0) -> list[float]:
    """A [lo, hi] pair with lo <= hi."""
    a = draw(st.floats(min_value=low, max_value=high, allow_nan=False))
    b = draw(st.floats(min_value=low, max_value=high, allow_nan=False))
    return [min(a, b), max(a, b)]


@st.composite
def bid_vectors(draw: st.DrawFn, max_labs: int = 30) -> np.ndarray:
    """Bids with many ties: drawn from a small set of levels, zeros included."""
    labs = draw(st.integers(min_value=1, max_value=max_labs))
    levels = draw(
        st.lists(
            st.sampled_from([0.0, 0.05, 0.1, 0.25, 0.3, 0.5, 0.75, 1.0]),
            min_size=labs,
            max_size=labs,
        )
    )
    return np.array(levels, dtype=float)


@st.composite
def strategy_mixes(draw: st.DrawFn) -> str | dict[str, float]:
    """A single strategy name or a mix of shares summing to 1."""
    if draw(st.booleans()):
        return draw(st.sampled_from(STRATEGY_NAMES))
    names = draw(st.lists(st.sampled_from(STRATEGY_NAMES), min_size=2, max_size=4, unique=True))
    weights = [draw(st.integers(min_value=1, max_value=5)) for _ in names]
    total = sum(weights)
    shares = [weight / total for weight in weights]
    shares[-1] = 1.0 - sum(shares[:-1])
    return dict(zip(names, shares, strict=True))


@st.composite
def scenario_documents(draw: st.DrawFn) -> dict[str, Any]:
    """A valid scenario document covering both markets, every policy and every strategy."""
    count = draw(st.integers(min_value=1, max_value=25))
    market_type = draw(st.sampled_from(["clearing", "fixed_price"]))
    market: dict[str, Any] = {
        "type": market_type,
        "reserve_price": draw(st.sampled_from([0.0, 0.0, 0.1, 0.3])),
    }
    if market_type == "clearing":
        market["token_cap"] = draw(st.integers(min_value=0, max_value=count + 2))
    else:
        market["fixed_price"] = market["reserve_price"] + draw(st.sampled_from([0.0, 0.1, 0.3]))
    return {
        "seed": draw(st.integers(min_value=0, max_value=2**32 - 1)),
        "rounds": draw(st.integers(min_value=1, max_value=4)),
        "labs": {
            "count": count,
            "gross_value": draw(intervals(0.0, 1.5)),
            "risk_profile": draw(intervals(0.0, 2.0)),
            "compute_cost": draw(st.floats(min_value=0.0, max_value=0.5)),
            "racing_value": draw(st.sampled_from([0.0, 0.0, 0.1, 0.4])),
            "endowment": draw(st.sampled_from([0.0, 0.2, 1.0, 10.0])),
            "redraw_values_each_round": draw(st.booleans()),
            "strategy": draw(strategy_mixes()),
        },
        "market": market,
        "audit": {
            "alpha": draw(probabilities),
            "beta": draw(probabilities),
            "high_prob": draw(probabilities),
            "base_prob": draw(probabilities),
            "backcheck_prob": draw(st.sampled_from([0.0, 0.0, 0.2, 1.0])),
            "collateral": draw(small_money),
            "fine": draw(small_money),
            "reputation_penalty": draw(st.sampled_from([0.0, 0.0, 0.3])),
            "audit_cost": draw(st.sampled_from([0.0, 0.01, 0.1])),
            "max_audits": draw(st.sampled_from([None, None, 0, 1, 3])),
        },
        "governor": {"policy": draw(st.sampled_from(["policy", "optimal", "none"]))},
        "welfare": {"harm_per_violation": draw(st.sampled_from([0.0, 0.5, 1.0]))},
    }


def scenarios() -> st.SearchStrategy[Scenario]:
    """Parsed valid scenarios."""
    return scenario_documents().map(parse_scenario)
