"""Per-round metrics (MODEL.md §8), written out explicitly.

Here: ``METRICS`` (the names, in export order), ``MetricsRow``, ``round_metrics`` for one game
round and ``summarise`` (the per-round mean of a game or a cell; ratios averaged per round, not
pooled). Not here: sweeps.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from sim_core.arrays import BoolArray, FloatArray

#: Every metric of §8, in the order of the JSON export.
METRICS: tuple[str, ...] = (
    "price",
    "permits",
    "violations",
    "compliance_rate",
    "deterrence_rate",
    "total_compute",
    "cap_overshoot",
    "audits",
    "false_positive_audits",
    "caught",
    "detection_rate",
    "revenue",
    "welfare",
    "trades",  # §3b: appended last, so every earlier column keeps its place in exports
)

#: The metrics that count labs or audits (whole numbers).
COUNTS: frozenset[str] = frozenset(
    {
        "permits",
        "violations",
        "total_compute",
        "cap_overshoot",
        "audits",
        "false_positive_audits",
        "caught",
        "trades",
    }
)


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricsRow:
    """One round's metrics (§8); counts are ints, the rest floats.

    ``price`` is None in a §3b round without a trade (no price was made); ``trades`` is 0 under
    an auction (its default, so rows stored before §3b still load).
    """

    round: int
    price: float | None
    permits: int
    violations: int
    compliance_rate: float
    deterrence_rate: float
    total_compute: int
    cap_overshoot: int
    audits: int
    false_positive_audits: int
    caught: int
    detection_rate: float
    revenue: float
    welfare: float
    trades: int = 0

    def as_dict(self) -> dict[str, float | int]:
        """Return the row as a plain dict, ``round`` first, then ``METRICS`` in order."""
        return asdict(self)


#: The per-round lab tallies behind the §8 metrics, in the order of ``lab_tallies``'s last axis.
TALLIES: tuple[str, ...] = (
    "tempting",  # labs with u + rho > 0
    "permits",
    "permits_tempting",
    "permits_value",  # Σ u over permit holders
    "violations",
    "violations_tempting",
    "violations_value",  # Σ u over violators
    "caught",
    "audits",
    "audits_of_violators",
    "trades",  # §3b: permits bought in the call market
)


def lab_tallies(
    *,
    net_values: FloatArray,
    won: BoolArray,
    violated: BoolArray,
    audited: BoolArray | None,
    caught: BoolArray,
    racing_value: float,
    bought: BoolArray | None = None,
) -> FloatArray:
    """Count and sum over the labs what the §8 metrics need, for one round or a batch of rounds.

    Counts are products of the masks with per-lab weights (1, tempted), one matrix product for a
    whole batch whose labs share their values (a sweep's cells under common random numbers); as
    whole numbers they are exact whatever order the product adds in. Sums of u are dot products
    row by row (``np.vecdot``), which add a row's terms in an order fixed by N alone: a game's
    sums, and so its welfare, are the same to the last bit in any batch, alone or inside a
    sweep's grid, and in a single game (§11). A matrix product would not give that: BLAS chooses
    how to block and add by the shape of the whole batch.

    Args:
        net_values: u = v − c, shape (N,) (shared by the batch), (..., 1, N) (shared along the
            batch's last axis: a sweep's cells of one replicate) or (..., N).
        won: (..., N) permit holders.
        violated: (..., N) labs that ran without a permit (never a permit holder, §4 step 3).
        audited: (..., N) labs audited, or None when nobody is (a sweep cell, §9).
        caught: (..., N) violators caught.
        racing_value: rho.
        bought: (..., N) labs that bought a permit in §3b's call market, or None (an auction).

    Returns:
        (..., len(TALLIES)) in the order of ``TALLIES``, in the dtype of ``net_values``; counts
        are whole numbers (exact in float32 up to 2**24 labs).
    """
    tempting = net_values + racing_value > 0  # would gain from running unpermitted
    dtype = net_values.dtype
    weights = np.empty((*net_values.shape, 2), dtype=dtype)  # per lab: 1, tempted
    weights[..., 0] = 1
    weights[..., 1] = tempting
    masks = [won, violated, caught] + ([] if audited is None else [audited, audited & violated])
    shape = won.shape
    if any(mask.shape != shape for mask in masks):
        shape = np.broadcast_shapes(*(mask.shape for mask in masks))
    stacked = np.empty((len(masks), *shape), dtype=dtype)  # the masks as 0 and 1
    for row, mask in zip(stacked, masks, strict=True):
        np.copyto(row, mask)
    if weights.ndim == 2:  # one set of values for the whole batch
        counts = stacked @ weights
    elif weights.shape[-3] == 1:  # values (..., 1, N), shared along the batch's last axis
        counts = stacked @ weights[..., 0, :, :]
    else:
        counts = np.einsum("m...n,...nk->m...k", stacked, weights)
    values = np.vecdot(stacked[:2], net_values)  # Σ u over permit holders, over violators
    tallies = np.zeros((*shape[:-1], len(TALLIES)), dtype=dtype)
    tallies[..., 0] = tempting.sum(axis=-1)
    tallies[..., 1:3] = counts[0]
    tallies[..., 3] = values[0]
    tallies[..., 4:6] = counts[1]
    tallies[..., 6] = values[1]
    tallies[..., 7] = counts[2, ..., 0]
    if audited is not None:
        tallies[..., 8] = counts[3, ..., 0]
        tallies[..., 9] = counts[4, ..., 0]
    if bought is not None:
        tallies[..., 10] = np.count_nonzero(bought, axis=-1)
    return tallies


def metrics_from_tallies(
    tallies: FloatArray,
    *,
    price: FloatArray | float,
    labs: int,
    reference_cap: int | None,
    fine: FloatArray | float,
    collateral: float,
    audit_cost: float,
    harm_per_violation: float,
    auctioned: bool = True,
) -> FloatArray:
    """Compute every §8 metric from a round's lab tallies (any leading batch shape).

    Args:
        tallies: (..., len(TALLIES)) from ``lab_tallies``.
        price: the clearing or fixed price, shape (...).
        labs: N.
        reference_cap: Q for ``cap_overshoot``; None (a fixed-price market without a reference
            cap) makes the overshoot 0.
        fine: φ, shape (...) or a float (revenue counts fines and forfeited collateral, not R).
        collateral: K.
        audit_cost: cost of one audit (counted in welfare).
        harm_per_violation: welfare loss per violation.
        auctioned: whether the government sold the permits; under §3b's grandfathering (False)
            ``price`` is the traded price (NaN without a trade), and trades pay labs, not the
            government, so revenue counts no permit sales.

    Returns:
        Float64 array of shape (..., len(METRICS)), in the order of ``METRICS``.
    """
    (
        tempting,
        permits,
        permits_tempting,
        permits_value,
        violations,
        violations_tempting,
        violations_value,
        caught,
        audits,
        audits_of_violators,
        trades,
    ) = np.ascontiguousarray(np.moveaxis(tallies, -1, 0), dtype=np.float64)  # tally by tally
    # Tempted: no permit and u + rho > 0. Violators hold no permit, so the deterred are the
    # tempted who did not violate.
    tempted = tempting - permits_tempting
    deterred = tempted - violations_tempting
    total_compute = permits + violations
    overshoot = (
        np.maximum(total_compute - reference_cap, 0.0)
        if reference_cap is not None
        else np.zeros_like(total_compute)
    )
    columns = [
        np.broadcast_to(np.asarray(price, dtype=np.float64), permits.shape),
        permits,
        violations,
        1.0 - violations / labs,
        _share(deterred, tempted),
        total_compute,
        overshoot,
        audits,
        audits - audits_of_violators,
        caught,
        _share(caught, violations),
        (permits * price if auctioned else 0.0) + caught * (fine + collateral),
        (permits_value + violations_value) - harm_per_violation * violations - audit_cost * audits,
        trades,
    ]
    # Written metric by metric into contiguous rows, then viewed with the metrics last: several
    # times faster than stacking along the last axis (np.stack) for a sweep's batch of rounds.
    metrics = np.empty((len(columns), *permits.shape))
    for index, column in enumerate(columns):
        metrics[index] = column
    result: FloatArray = np.moveaxis(metrics, 0, -1)
    return result


def _share(part: FloatArray, whole: FloatArray) -> FloatArray:
    """Return part / whole, and 1 where whole is 0 (§8: "1 if none"; part is then 0 as well).

    Counts are whole numbers, so max(whole, 1) is whole wherever it is not 0: the quotient is the
    exact one, and adding the 0-or-1 of an empty whole changes nothing else. Several times faster
    on a sweep's batch than a division masked with ``where``.
    """
    share: FloatArray = part / np.maximum(whole, 1.0) + (whole == 0)
    return share


def metric_values(
    *,
    price: FloatArray | float,
    net_values: FloatArray,
    won: BoolArray,
    violated: BoolArray,
    audited: BoolArray | None,
    caught: BoolArray,
    racing_value: float,
    reference_cap: int | None,
    fine: FloatArray | float,
    collateral: float,
    audit_cost: float,
    harm_per_violation: float,
    bought: BoolArray | None = None,
) -> FloatArray:
    """Compute every §8 metric of one round, or of a batch of rounds at once.

    The single definition of §8: ``lab_tallies`` then ``metrics_from_tallies``. A game calls it
    through ``round_metrics``; a sweep calls the two halves, the second once for all its rounds.
    Arguments as in ``lab_tallies`` and ``metrics_from_tallies``; ``bought`` given (even empty)
    means §3b's grandfathering: permits were granted and traded, not auctioned.

    Returns:
        Float64 array of shape (..., len(METRICS)), in the order of ``METRICS``.
    """
    tallies = lab_tallies(
        net_values=net_values,
        won=won,
        violated=violated,
        audited=audited,
        caught=caught,
        racing_value=racing_value,
        bought=bought,
    )
    return metrics_from_tallies(
        tallies,
        price=price,
        labs=won.shape[-1],
        reference_cap=reference_cap,
        fine=fine,
        collateral=collateral,
        audit_cost=audit_cost,
        harm_per_violation=harm_per_violation,
        auctioned=bought is None,
    )


def round_metrics(
    *,
    round_no: int,
    price: float | None,
    net_values: FloatArray,
    won: BoolArray,
    violated: BoolArray,
    audited: BoolArray,
    caught: BoolArray,
    racing_value: float,
    reference_cap: int | None,
    fine: float,
    collateral: float,
    audit_cost: float,
    harm_per_violation: float,
    bought: BoolArray | None = None,
) -> MetricsRow:
    """Compute one round's metrics exactly as §8 defines them (through ``metric_values``).

    Args:
        round_no: the round (from 1).
        price: the clearing, fixed or traded price (None: a §3b round without a trade).
        net_values: u = v − c per lab.
        won: (N,) permit holders (after trading, under §3b).
        violated: (N,) labs that ran without a permit.
        audited: (N,) labs audited.
        caught: (N,) violators caught.
        racing_value: rho.
        reference_cap: Q for ``cap_overshoot``; None (a fixed-price market without a reference
            cap) makes the overshoot 0.
        fine: φ (revenue counts fines and forfeited collateral, not R).
        collateral: K.
        audit_cost: cost of one audit (counted in welfare).
        harm_per_violation: welfare loss per violation.
        bought: (N,) labs that bought a permit in §3b's call market; None under an auction.
    """
    values = metric_values(
        price=math.nan if price is None else price,
        net_values=net_values,
        won=won,
        violated=violated,
        audited=audited,
        caught=caught,
        racing_value=racing_value,
        reference_cap=reference_cap,
        fine=fine,
        collateral=collateral,
        audit_cost=audit_cost,
        harm_per_violation=harm_per_violation,
        bought=bought,
    ).tolist()
    row: dict[str, float | None] = dict(zip(METRICS, values, strict=True))
    if price is None:
        row["price"] = None
    return MetricsRow(
        round=round_no,
        **{  # type: ignore[arg-type]
            name: int(value) if name in COUNTS and value is not None else value
            for name, value in row.items()
        },
    )


def summarise(rows: Sequence[MetricsRow]) -> dict[str, float | None]:
    """Return the mean of every metric over the rounds (§8: ratios averaged per round).

    Rounds without a price (§3b: no trade) are left out of the price's mean; with none left the
    mean price is None.
    """
    summary: dict[str, float | None] = {}
    for name in METRICS:
        values = [value for row in rows if (value := getattr(row, name)) is not None]
        summary[name] = float(np.mean(values)) if values else None
    return summary
