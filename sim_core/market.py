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
    kth, tied_below = _select(bids, k)
    qth_highest = kth.view(bids.dtype)
    enough = qth_highest >= floor
    price = np.where(enough, qth_highest, market.reserve_price)
    # Every bid at or above the threshold wins: the price when oversubscribed, else every eligible.
    threshold = np.where(enough, qth_highest, floor)
    won = bids >= threshold[..., None]
    # More than Q winners only when a bid below the Q-th place ties with it: the keys decide.
    overfull = tied_below & enough
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


#: Rows up to this long are partitioned by numpy's fast path (a sorting network, whatever the
#: bids). Longer rows go through introselect, which is fast on distinct bids but ten times slower
#: on rows where many bids are equal (many zeros, say); rows up to twice as long are sorted whole
#: instead, at a cost per bid that ties do not change (as fast as the sorted halves used before).
FAST_SELECT_LENGTH = 512


def _select(bids: FloatArray, k: int) -> tuple[npt.NDArray[Any], BoolArray]:
    """Return each row's k-th smallest bid (0-based) and whether the (k−1)-th one equals it.

    Floats are ordered through their integer bit patterns, which sort twice as fast and order
    every non-negative float (and put every negative one below them): the order only needs to be
    right where a bid can be eligible. The k-th value comes back as that integer pattern (read it
    with ``.view(bids.dtype)``); equal patterns are equal bids.
    """
    if bids.dtype == np.float32 or bids.dtype == np.float64:
        keys = bids.view(np.int32 if bids.dtype == np.float32 else np.int64)
    else:
        keys = bids
    labs = keys.shape[-1]
    if FAST_SELECT_LENGTH < labs <= 2 * FAST_SELECT_LENGTH and k > 0:
        ordered = np.sort(keys, axis=-1)
        kth = ordered[..., k]
        tied: BoolArray = ordered[..., k - 1] == kth
        return kth, tied
    partitioned = np.partition(keys, k, axis=-1)
    kth = partitioned[..., k]
    if k == 0:
        return kth, np.zeros(kth.shape, dtype=bool)
    # Everything left of the k-th is <= it, so a tie below is the largest of them equalling it
    # (one reduction, several times faster than comparing them all).
    tied_below: BoolArray = partitioned[..., :k].max(axis=-1) == kth
    return kth, tied_below


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
