"""The Central Exchange (MODEL.md §3): permit prices and winners from submitted bids.

Here: ``clear_bids``, the array rule (any leading batch axes, labs on the last axis), and
``clear_market``, its one-game form. The market only resolves prices from bids: it never decides
for a lab (seed 000's "Strict Rule Separation"). Not here: how bids are made (``strategies.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim_core.arrays import BoolArray, FloatArray, frozen
from sim_core.params import MarketParams


@dataclass(frozen=True, slots=True, kw_only=True)
class MarketResult:
    """The market's outcome in one round: the price every winner pays and who won."""

    price: float
    won: BoolArray  # (N,)

    @property
    def permits(self) -> int:
        """Permits sold."""
        return int(self.won.sum())


def clear_bids(
    bids: FloatArray, tie_keys: FloatArray, market: MarketParams
) -> tuple[FloatArray, BoolArray]:
    """Clear the market for bids of shape (..., N) (§3).

    Eligible bids are > 0 and >= the reserve price. Clearing market with cap Q: if fewer than Q
    are eligible all win at the reserve price; otherwise the price is the Q-th highest eligible bid,
    every bid above it wins and ties at the price are broken by the smallest ``tie_keys`` so that
    exactly Q win. Fixed price: every eligible bid >= the fixed price wins at that price.

    Args:
        bids: sealed bids b, shape (..., N).
        tie_keys: uniform [0, 1) keys of the same shape, one per lab (drawn for every lab).
        market: the market section of the scenario.

    Returns:
        ``(price, won)``: price of shape (...), winners of shape (..., N).
    """
    eligible = (bids > 0) & (bids >= market.reserve_price)
    batch_shape = bids.shape[:-1]
    if market.type == "fixed_price":
        price = np.full(batch_shape, market.fixed_price)
        return price, eligible & (bids >= market.fixed_price)
    cap = market.token_cap or 0
    labs = bids.shape[-1]
    reserve = np.full(batch_shape, market.reserve_price)
    if cap == 0:
        return reserve, np.zeros(bids.shape, dtype=bool)
    if cap > labs:
        return reserve, eligible
    masked = np.where(eligible, bids, -np.inf)
    qth_highest = np.partition(masked, labs - cap, axis=-1)[..., labs - cap]
    enough = eligible.sum(axis=-1) >= cap
    price = np.where(enough, qth_highest, reserve)
    above = masked > price[..., None]
    tied = eligible & (masked == price[..., None])
    needed = cap - above.sum(axis=-1)
    tied_keys = np.sort(np.where(tied, tie_keys, np.inf), axis=-1)
    last_index = np.clip(needed - 1, 0, labs - 1)[..., None]
    threshold = np.take_along_axis(tied_keys, last_index, axis=-1)
    won_tie = tied & (tie_keys <= threshold) & (needed[..., None] > 0)
    won = np.where(enough[..., None], above | won_tie, eligible)
    return price, won


def clear_market(bids: FloatArray, market: MarketParams, rng: np.random.Generator) -> MarketResult:
    """Clear one round's market (§3); ties are broken with keys drawn from ``rng`` for every lab.

    Args:
        bids: sealed bids, shape (N,), already checked against wealth.
        market: the market section.
        rng: the round's tie-break stream.
    """
    tie_keys = rng.random(int(bids.shape[-1]))
    price, won = clear_bids(bids, tie_keys, market)
    return MarketResult(price=float(price), won=frozen(won))
