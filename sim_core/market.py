"""The Central Exchange (MODEL.md §3): permit prices and winners from submitted bids.

Here: ``clear_bids``, the array rule (any leading batch axes, labs on the last axis), and
``clear_market``, its one-game form. The market only resolves prices from bids: it never decides
for a lab (seed 000's "Strict Rule Separation"). Not here: how bids are made (``strategies.py``).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from sim_core.arrays import BoolArray, FloatArray, frozen
from sim_core.params import MarketParams


@dataclass(frozen=True, slots=True, kw_only=True)
class MarketResult:
    """The market's outcome in one round: the price every winner pays and who won.

    Under §3b's grandfathering ``won`` is the labs holding a permit after trading and ``price``
    the traded price, None in a round without a trade (the details are in ``TradeResult``).
    """

    price: float | None
    won: BoolArray  # (N,)

    @property
    def permits(self) -> int:
        """Permits sold (held after trading, under §3b)."""
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


# --- §3b: grandfathered permits and the call market ---------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class TradeResult:
    """The call market's outcome in one round (§3b).

    Attributes:
        price: the one price of every trade, or None in a round without a trade.
        granted: (N,) labs granted a permit at the start of the round.
        bought: (N,) non-holders that bought a permit.
        sold: (N,) holders that sold theirs.
    """

    price: float | None
    granted: BoolArray
    bought: BoolArray
    sold: BoolArray

    @property
    def trades(self) -> int:
        """Permits that changed hands."""
        return int(self.bought.sum())

    @property
    def holders(self) -> BoolArray:
        """(N,) labs holding a permit after trading: granted and not sold, or bought."""
        return frozen((self.granted & ~self.sold) | self.bought)


def grant_permits(keys: FloatArray, cap: int) -> BoolArray:
    """Return the labs granted a permit: the ``cap`` smallest of ``keys`` (..., N) (§3b).

    The keys are uniform draws, one per lab (the setup stream's for incumbents, the round's grant
    stream for a lottery), so every set of ``cap`` labs is equally likely; with ``cap`` >= N every
    lab holds one. A tie between two uniform draws (probability about N²·2⁻⁵³) goes to the lower
    index, so the result is always exactly min(cap, N) labs.
    """
    labs = keys.shape[-1]
    if cap >= labs:
        return np.ones(keys.shape, dtype=bool)
    if cap <= 0:
        return np.zeros(keys.shape, dtype=bool)
    order = np.argsort(keys, axis=-1, kind="stable")
    granted = np.zeros(keys.shape, dtype=bool)
    np.put_along_axis(granted, order[..., :cap], True, axis=-1)
    return granted


def clear_trades(
    bids: FloatArray, asks: FloatArray, granted: BoolArray, tie_keys: FloatArray
) -> tuple[FloatArray, BoolArray, BoolArray]:
    """Clear the uniform-price call market of §3b for orders of shape (..., N).

    Eligible bids are those > 0 of labs without a permit; asks are those of holders, where an ask
    of ``inf`` (or NaN) means the holder keeps its permit. With bids sorted from high to low,
    b(1) >= b(2) >= ..., and asks from low to high, a(1) <= a(2) <= ..., the number of trades k is
    the largest k with b(k) > a(k) (0 if none). The price is the midpoint of the clearing
    interval [max(a(k), b(k+1)), min(b(k), a(k+1))], where a missing b(k+1) counts as 0 (never
    above a(k) >= 0) and a missing a(k+1) as +inf. The k highest bids buy and the k lowest asks
    sell; ties at b(k) or at a(k) go to the smallest ``tie_keys``.

    Args:
        bids: every lab's bid (only non-holders' count), shape (..., N).
        asks: every lab's ask (only holders' count; inf keeps), shape (..., N).
        granted: (..., N) the holders before trading.
        tie_keys: uniform [0, 1) keys broadcastable to (..., N), one per lab.

    Returns:
        ``(price, bought, sold)``: price of shape (...) (NaN where nothing traded), and the
        buyers and sellers, shape (..., N).
    """
    shape = np.broadcast_shapes(bids.shape, asks.shape, granted.shape)
    keys = np.broadcast_to(tie_keys, shape)
    buying = np.broadcast_to(np.where(~granted & (bids > 0), bids, 0.0), shape)  # 0: no bid
    selling = np.broadcast_to(np.where(granted & (asks >= 0), asks, np.inf), shape)  # inf: none
    # Rank by price, then by tie key: the first k of each order trade.
    bid_order = np.lexsort((keys, -buying), axis=-1)
    ask_order = np.lexsort((keys, selling), axis=-1)
    sorted_bids = np.take_along_axis(buying, bid_order, axis=-1)
    sorted_asks = np.take_along_axis(selling, ask_order, axis=-1)
    # b(j) falls and a(j) rises with j, so b(j) > a(j) holds exactly for j <= k.
    trades = np.sum(sorted_bids > sorted_asks, axis=-1)
    padded_bids = np.concatenate([sorted_bids, np.zeros((*shape[:-1], 1))], axis=-1)
    padded_asks = np.concatenate([sorted_asks, np.full((*shape[:-1], 1), np.inf)], axis=-1)
    last = np.maximum(trades - 1, 0)[..., None]
    after = trades[..., None]
    kth_bid = np.take_along_axis(padded_bids, last, axis=-1)[..., 0]
    kth_ask = np.take_along_axis(padded_asks, last, axis=-1)[..., 0]
    next_bid = np.take_along_axis(padded_bids, after, axis=-1)[..., 0]
    next_ask = np.take_along_axis(padded_asks, after, axis=-1)[..., 0]
    lower = np.maximum(kth_ask, next_bid)
    upper = np.minimum(kth_bid, next_ask)
    price = np.where(trades > 0, (lower + upper) / 2, np.nan)
    ranks = np.arange(shape[-1])
    bought = np.zeros(shape, dtype=bool)
    sold = np.zeros(shape, dtype=bool)
    np.put_along_axis(bought, bid_order, ranks < after, axis=-1)
    np.put_along_axis(sold, ask_order, ranks < after, axis=-1)
    return price, bought, sold


def trade_permits(
    bids: FloatArray, asks: FloatArray, granted: BoolArray, rng: np.random.Generator
) -> TradeResult:
    """Clear one round's call market (§3b); ties are broken with keys drawn from ``rng``.

    Args:
        bids: (N,) every lab's bid, already checked against wealth (non-holders' count).
        asks: (N,) every lab's ask, inf for a holder that keeps (holders' count).
        granted: (N,) the labs granted a permit this round.
        rng: the round's tie-break stream (one key per lab, as the auction draws).
    """
    tie_keys = rng.random(int(bids.shape[-1]))
    price, bought, sold = clear_trades(bids, asks, granted, tie_keys)
    value = float(price)
    return TradeResult(
        price=None if math.isnan(value) else value,
        granted=frozen(np.asarray(granted, dtype=bool).copy()),
        bought=frozen(bought),
        sold=frozen(sold),
    )
