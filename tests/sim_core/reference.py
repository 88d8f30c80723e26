"""Slow, loop-by-loop reference versions of sim_core's array rules, for parity tests."""

from __future__ import annotations

import numpy as np

from sim_core import MarketParams


def clear_market_reference(bids: list[float], tie_keys: list[float], market: MarketParams):
    """MODEL.md §3 written as plainly as possible: returns (price, set of winners)."""
    eligible = [i for i, bid in enumerate(bids) if bid > 0 and bid >= market.reserve_price]
    if market.type == "fixed_price":
        return market.fixed_price, {i for i in eligible if bids[i] >= market.fixed_price}
    cap = market.token_cap or 0
    if cap == 0:
        return market.reserve_price, set()
    if len(eligible) < cap:
        return market.reserve_price, set(eligible)
    # Highest bid first; among equal bids, the smallest tie key first.
    ranked = sorted(eligible, key=lambda i: (-bids[i], tie_keys[i]))
    winners = set(ranked[:cap])
    return bids[ranked[cap - 1]], winners


def payoff_reference(*, net_value, won, violated, caught, price, racing_value, punishment):
    """MODEL.md §4: run·(v − c) + violate·rho − won·price − caught·(K + φ + R), one lab."""
    ran = won or violated
    return (
        (net_value if ran else 0.0)
        + (racing_value if violated else 0.0)
        - (price if won else 0.0)
        - (punishment if caught else 0.0)
    )


def as_array(values) -> np.ndarray:
    """A float64 copy."""
    return np.array(values, dtype=float)


def clear_trades_reference(
    bids: list[float], asks: list[float | None], granted: list[bool], tie_keys: list[float]
):
    """MODEL.md §3b written as plainly as possible: returns (price or None, buyers, sellers).

    ``asks[i]`` is None for a holder that keeps its permit (and ignored for non-holders).
    """
    buyers = [i for i, bid in enumerate(bids) if not granted[i] and bid > 0]
    sellers = [i for i, ask in enumerate(asks) if granted[i] and ask is not None]
    buyers.sort(key=lambda i: (-bids[i], tie_keys[i]))
    sellers.sort(key=lambda i: (asks[i], tie_keys[i]))
    k = 0
    while k < min(len(buyers), len(sellers)) and bids[buyers[k]] > asks[sellers[k]]:
        k += 1
    if k == 0:
        return None, set(), set()
    b_k, a_k = bids[buyers[k - 1]], asks[sellers[k - 1]]
    lower = max(a_k, bids[buyers[k]]) if k < len(buyers) else a_k
    upper = min(b_k, asks[sellers[k]]) if k < len(sellers) else b_k
    return (lower + upper) / 2, set(buyers[:k]), set(sellers[:k])
