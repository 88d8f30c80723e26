"""The Central Exchange (MODEL.md §3): permit prices and winners from submitted bids.

Here: ``clear_bids``, the array rule (any leading batch axes, labs on the last axis), and
``clear_market``, its one-game form. The market only resolves prices from bids: it never decides
for a lab (seed 000's "Strict Rule Separation"). Not here: how bids are made (``strategies.py``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

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
        tie_keys: uniform [0, 1) keys broadcastable to the bids' shape, one per lab (drawn for
            every lab; a sweep shares one (N,) vector across its cells).
        market: the market section of the scenario.

    Returns:
        ``(price, won)``: price of shape (...), winners of shape (..., N).
    """
    floor = _eligible_floor(bids.dtype, market.reserve_price)
    if market.type == "fixed_price":
        price = np.full(bids.shape[:-1], market.fixed_price)
        return price, (bids >= floor) & (bids >= market.fixed_price)
    cap = market.token_cap or 0
    labs = bids.shape[-1]
    if cap == 0 or cap > labs:  # nothing sold, or every eligible bid wins: at the reserve price
        reserve = np.full(bids.shape[:-1], market.reserve_price)
        return reserve, (bids >= floor) if cap else np.zeros(bids.shape, dtype=bool)
    # Eligibility is closed upwards, so the Q-th highest of ALL bids is eligible exactly when at
    # least Q bids are, and then it is the Q-th highest eligible bid: no masking needed.
    k = labs - cap
    partitioned = _partition(bids, k)
    qth_highest = partitioned[..., k].view(bids.dtype)
    enough = qth_highest >= floor
    price = np.where(enough, qth_highest, market.reserve_price)
    # Every bid at or above the threshold wins: the price when oversubscribed, else every eligible.
    threshold = np.where(enough, qth_highest, floor)
    won = bids >= threshold[..., None]
    # More than Q winners only when a bid below the Q-th place ties with it: the keys decide.
    below = partitioned[..., :k] == partitioned[..., k, None]
    if below.any():
        overfull = below.any(axis=-1) & enough
        if overfull.any():
            _break_ties(bids, tie_keys, cap, price, overfull, won)
    return price, won


@functools.lru_cache(maxsize=64)
def _eligible_floor(dtype: np.dtype[Any], reserve_price: float) -> np.floating[Any]:
    """Return the smallest bid of ``dtype`` that is eligible: > 0 and >= the reserve price."""
    float_type = dtype.type if np.issubdtype(dtype, np.floating) else np.float64
    reserve = float_type(reserve_price)
    smallest_positive = np.nextafter(float_type(0), float_type(1))
    return reserve if reserve > 0 else smallest_positive


def _partition(bids: FloatArray, k: int) -> npt.NDArray[Any]:
    """Return a copy of ``bids`` partially sorted along the last axis around position ``k``.

    Floats are partitioned through their integer bit patterns, which sort twice as fast and order
    every non-negative float (and put every negative one below them): the order only needs to be
    right where a bid can be eligible. Read element ``k`` back with ``.view(bids.dtype)``.
    """
    if bids.dtype == np.float32:
        return np.partition(bids.view(np.int32), k, axis=-1)
    if bids.dtype == np.float64:
        return np.partition(bids.view(np.int64), k, axis=-1)
    return np.partition(bids, k, axis=-1)


def _break_ties(
    bids: FloatArray,
    tie_keys: FloatArray,
    cap: int,
    price: FloatArray,
    overfull: BoolArray,
    won: BoolArray,
) -> None:
    """Keep exactly ``cap`` winners in ``overfull`` rows: ties at the price go to the smallest keys.

    Only the rows where more bids sit at or above the price than there are permits are touched
    (written into ``won``).
    """
    labs = bids.shape[-1]
    rows = np.flatnonzero(overfull)
    row_bids = bids.reshape(-1, labs)[rows]
    row_keys = np.broadcast_to(tie_keys, bids.shape).reshape(-1, labs)[rows]
    row_price = price.reshape(-1)[rows, None]
    above = row_bids > row_price
    tied = row_bids == row_price
    needed = cap - above.sum(axis=-1)
    tied_keys = np.sort(np.where(tied, row_keys, np.inf), axis=-1)
    last_index = np.clip(needed - 1, 0, labs - 1)[:, None]
    threshold = np.take_along_axis(tied_keys, last_index, axis=-1)
    won_tie = tied & (row_keys <= threshold) & (needed[:, None] > 0)
    won.reshape(-1, labs)[rows] = above | won_tie


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
