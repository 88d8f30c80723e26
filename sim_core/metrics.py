"""Per-round metrics (MODEL.md §8), written out explicitly.

Here: ``METRICS`` (the names, in export order), ``MetricsRow``, ``round_metrics`` for one game
round and ``summarise`` (the per-round mean of a game or a cell; ratios averaged per round, not
pooled). Not here: sweeps.
"""

from __future__ import annotations

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
    }
)


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricsRow:
    """One round's metrics (§8); counts are ints, the rest floats."""

    round: int
    price: float
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

    def as_dict(self) -> dict[str, float | int]:
        """Return the row as a plain dict, ``round`` first, then ``METRICS`` in order."""
        return asdict(self)


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
) -> FloatArray:
    """Compute every §8 metric of one round, or of a batch of rounds at once.

    The single definition of §8, used by a game (``round_metrics``) and by a sweep, whose leading
    batch axes are its cells. Lab counts and sums are matrix products of the masks with per-lab
    weights (ones, tempted, u), which a batch shares when its labs' values are the same.

    Args:
        price: the clearing or fixed price, shape (...).
        net_values: u = v − c, shape (N,) (shared by the batch) or (..., N).
        won: (..., N) permit holders.
        violated: (..., N) labs that ran without a permit (never a permit holder, §4 step 3).
        audited: (..., N) labs audited, or None when nobody is (a sweep cell, §9).
        caught: (..., N) violators caught.
        racing_value: rho.
        reference_cap: Q for ``cap_overshoot``; None (a fixed-price market without a reference
            cap) makes the overshoot 0.
        fine: φ, shape (...) or a float (revenue counts fines and forfeited collateral, not R).
        collateral: K.
        audit_cost: cost of one audit (counted in welfare).
        harm_per_violation: welfare loss per violation.

    Returns:
        Float64 array of shape (..., len(METRICS)), in the order of ``METRICS``; counts are whole
        numbers.
    """
    labs = won.shape[-1]
    tempting = net_values + racing_value > 0  # u + rho > 0: would gain from running unpermitted
    weights = np.stack(
        [np.ones_like(net_values), tempting.astype(net_values.dtype), net_values], -1
    )
    tempting_count = _lab_sums(tempting, weights[..., :1])[..., 0]
    permits, won_tempted, won_value = _split(_lab_sums(won, weights))
    violations, violated_tempted, violated_value = _split(_lab_sums(violated, weights))
    caught_count = _lab_sums(caught, weights[..., :1])[..., 0].astype(np.float64)
    if audited is None:
        audits = false_positive_audits = np.zeros(np.shape(permits))
    else:
        audits = _lab_sums(audited, weights[..., :1])[..., 0].astype(np.float64)
        false_positive_audits = audits - _lab_sums(audited & violated, weights[..., :1])[..., 0]
    # Tempted: no permit and u + rho > 0. Violators hold no permit, so the deterred are the
    # tempted who did not violate.
    tempted = tempting_count - won_tempted
    deterred = tempted - violated_tempted
    total_compute = permits + violations
    overshoot = (
        np.maximum(total_compute - reference_cap, 0.0)
        if reference_cap is not None
        else np.zeros_like(total_compute)
    )
    return np.stack(
        [
            np.broadcast_to(np.asarray(price, dtype=np.float64), np.shape(permits)),
            permits,
            violations,
            1.0 - violations / labs,
            np.divide(deterred, tempted, out=np.ones_like(tempted), where=tempted > 0),
            total_compute,
            overshoot,
            audits,
            false_positive_audits,
            caught_count,
            np.divide(caught_count, violations, out=np.ones_like(violations), where=violations > 0),
            permits * price + caught_count * (fine + collateral),
            (won_value + violated_value) - harm_per_violation * violations - audit_cost * audits,
        ],
        axis=-1,
    )


def _lab_sums(mask: BoolArray, weights: FloatArray) -> FloatArray:
    """Return Σ over labs of ``mask`` times each column of ``weights``: (..., k)."""
    if weights.ndim == 2:
        sums: FloatArray = mask @ weights
        return sums
    batched: FloatArray = np.einsum("...n,...nk->...k", mask, weights)
    return batched


def _split(sums: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    as_float64 = sums.astype(np.float64)
    return as_float64[..., 0], as_float64[..., 1], as_float64[..., 2]


def round_metrics(
    *,
    round_no: int,
    price: float,
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
) -> MetricsRow:
    """Compute one round's metrics exactly as §8 defines them (through ``metric_values``).

    Args:
        round_no: the round (from 1).
        price: the clearing or fixed price.
        net_values: u = v − c per lab.
        won: (N,) permit holders.
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
    """
    values = metric_values(
        price=price,
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
    ).tolist()
    row = dict(zip(METRICS, values, strict=True))
    return MetricsRow(
        round=round_no, **{name: int(row[name]) if name in COUNTS else row[name] for name in row}
    )


def summarise(rows: Sequence[MetricsRow]) -> dict[str, float]:
    """Return the mean of every metric over the rounds (§8: ratios averaged per round)."""
    return {name: float(np.mean([getattr(row, name) for row in rows])) for name in METRICS}
