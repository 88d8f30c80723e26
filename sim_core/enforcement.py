"""Signals, backchecks and settlement (MODEL.md §4 steps 4-6).

Here: ``signal_draws``/``draw_signals`` (every lab, violating or not), ``catch`` (audits plus
backchecks) and ``settle`` (payoffs and wealth). The array functions take pre-drawn uniforms so
that a batch of games can share them. Not here: who is audited (``governor.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim_core.arrays import BoolArray, FloatArray, frozen
from sim_core.params import AuditParams


def signal_draws(
    violating: BoolArray, uniforms: FloatArray, alpha: float, beta: float
) -> BoolArray:
    """Return s per lab: 1 with probability β if violating, α otherwise (§4 step 4).

    Every lab is signalled, not only the runners: signalling only runners would tell the
    governor who runs and make detection trivial (MODEL.md §4).
    """
    return uniforms < np.where(violating, beta, alpha)


def draw_signals(violating: BoolArray, audit: AuditParams, rng: np.random.Generator) -> BoolArray:
    """Draw one round's signals for all labs from the round's signal stream (§4 step 4)."""
    uniforms = rng.random(int(violating.shape[-1]))
    return frozen(signal_draws(violating, uniforms, audit.alpha, audit.beta))


def catch(
    violating: BoolArray,
    audited: BoolArray | None,
    uniforms: FloatArray,
    backcheck_prob: FloatArray | float,
) -> BoolArray:
    """Return who is caught: audited violators, and the rest with probability p_b (§4 step 5).

    Args:
        violating: (..., N) labs running without a permit.
        audited: (..., N) labs audited, or None when nobody is (a sweep cell, MODEL.md §9).
        uniforms: the backcheck uniforms, broadcastable to (..., N).
        backcheck_prob: p_b, a float or broadcastable to (..., N) (one per sweep cell).
    """
    chance: BoolArray = uniforms < backcheck_prob
    if audited is not None:
        chance = audited | chance
    caught: BoolArray = violating & chance
    return caught


@dataclass(frozen=True, slots=True, kw_only=True)
class Settlement:
    """The end of a round for every lab (§4 step 6).

    Attributes:
        ran: (N,) ran at all (with a permit or without).
        violated: (N,) ran without a permit.
        caught: (N,) violators caught by an audit or a backcheck.
        payoffs: (N,) this round's score of each lab.
        wealth: (N,) wealth after the round (the payoff less R, which is not money).
    """

    ran: BoolArray
    violated: BoolArray
    caught: BoolArray
    payoffs: FloatArray
    wealth: FloatArray


def payoffs(
    *,
    net_values: FloatArray,
    won: BoolArray,
    violated: BoolArray,
    caught: BoolArray,
    price: FloatArray | float,
    racing_value: float,
    punishment: FloatArray | float,
    transfers: FloatArray | None = None,
) -> FloatArray:
    """Return each lab's payoff, run·(v − c) + violate·rho − won·price − caught·(K + φ + R) (§4).

    Arrays of any leading batch shape; ``price`` and ``punishment`` broadcast against (..., N)
    once given a trailing axis by the caller. Price, rho and P are never negative, so each term
    is a product with its mask (x·1 = x, x·0 = +0); adding 0.0 to run·u turns the −0 of an idle
    lab with u < 0 into +0. The terms are summed left to right as written.

    Under §3b's trading ``transfers`` is each lab's money from the call market (sold·price −
    bought·price, shape (..., N)) and takes the place of −won·price: granted permits cost nothing.
    """
    scores = _times_mask(net_values, won | violated)
    scores += 0.0
    if racing_value:
        scores += _times_mask(racing_value, violated)
    if transfers is None:
        scores -= _times_mask(price, won)
    else:
        scores += transfers
    scores -= _times_mask(punishment, caught)
    return scores


def _times_mask(factor: FloatArray | float, mask: BoolArray) -> FloatArray:
    """Return ``np.multiply(factor, mask)``, the same numbers, computed faster.

    The mask is first made a float array of the product's type (0.0 and 1.0), then multiplied in
    place: numpy's mixed float-by-bool loop casts element by element and, with a broadcast
    factor, is several times slower than a cast and a float product.
    """
    dtype = factor.dtype if isinstance(factor, np.ndarray) else np.result_type(factor, np.bool_)
    product: FloatArray = mask.astype(dtype)
    try:
        product *= factor
    except ValueError:  # a factor with more dimensions than the mask: the general product
        general: FloatArray = np.multiply(factor, mask)
        return general
    return product


def settle(
    *,
    net_values: FloatArray,
    won: BoolArray,
    violated: BoolArray,
    caught: BoolArray,
    price: float,
    racing_value: float,
    audit: AuditParams,
    wealth: FloatArray,
    transfers: FloatArray | None = None,
) -> Settlement:
    """Settle one round: forfeit K and fine φ of the caught, refund every other bond (§4 step 6).

    Args:
        net_values: u = v − c, shape (N,).
        won: permit holders (they always run).
        violated: labs that ran without a permit.
        caught: violators caught.
        price: the permit price.
        racing_value: rho.
        audit: the audit section (K, φ, R).
        wealth: wealth at the start of the round.
        transfers: §3b's money from trading per lab (replaces the price paid), or None.
    """
    scores = payoffs(
        net_values=net_values,
        won=won,
        violated=violated,
        caught=caught,
        price=price,
        racing_value=racing_value,
        punishment=audit.punishment,
        transfers=transfers,
    )
    money = scores + np.where(caught, audit.reputation_penalty, 0.0)
    return Settlement(
        ran=frozen(won | violated),
        violated=frozen(violated.copy()),
        caught=frozen(caught.copy()),
        payoffs=frozen(scores),
        wealth=frozen(wealth + money),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class PayoffTerm:
    """One term of a lab's payoff (§4): its name, its MODEL.md symbol and its signed amount."""

    name: str
    symbol: str
    amount: float


def payoff_terms(
    *,
    value: float,
    compute_cost: float,
    won: bool,
    violated: bool,
    caught: bool,
    price: float,
    racing_value: float,
    audit: AuditParams,
    transfer: float | None = None,
) -> tuple[PayoffTerm, ...]:
    """Return one lab's payoff of a settled round as its terms (§4), the ones that apply.

    Under §3b's trading, ``transfer`` is the lab's money from the call market (+price sold,
    −price bought, 0 kept; ``trade_transfers``): it replaces the price term.

    run·v − run·c + violate·rho − won·price − caught·K − caught·φ − caught·R: an idle lab has no
    term (its payoff is 0). The terms add up to ``payoffs`` for the same settlement outputs
    (won, violated, caught, price); the test suite checks that they do.
    """
    terms: list[PayoffTerm] = []
    if won or violated:
        terms += [
            PayoffTerm(name="value", symbol="v", amount=float(value)),
            PayoffTerm(name="compute_cost", symbol="c", amount=-float(compute_cost)),
        ]
    if violated and racing_value:
        terms.append(PayoffTerm(name="racing_value", symbol="rho", amount=float(racing_value)))
    if transfer is not None:
        if transfer:
            terms.append(PayoffTerm(name="trade", symbol="trade", amount=float(transfer)))
    elif won:
        terms.append(PayoffTerm(name="price", symbol="price", amount=-float(price)))
    if caught:
        terms.append(PayoffTerm(name="collateral", symbol="K", amount=-float(audit.collateral)))
        terms.append(PayoffTerm(name="fine", symbol="phi", amount=-float(audit.fine)))
        if audit.reputation_penalty:
            terms.append(
                PayoffTerm(
                    name="reputation_penalty", symbol="R", amount=-float(audit.reputation_penalty)
                )
            )
    return tuple(terms)


def trade_transfers(price: FloatArray | float, bought: BoolArray, sold: BoolArray) -> FloatArray:
    """Return each lab's money from §3b's call market: +price if it sold, −price if it bought.

    ``price`` has shape (...) with a trailing axis added by the caller, or is a float; where
    nothing traded (price NaN) every transfer is 0.
    """
    safe = np.nan_to_num(price, nan=0.0)
    transfers: FloatArray = _times_mask(safe, sold) - _times_mask(safe, bought)
    return transfers
