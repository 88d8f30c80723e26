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
    """Compute one round's metrics exactly as §8 defines them.

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
    labs = won.shape[-1]
    permits = int(won.sum())
    violations = int(violated.sum())
    caught_count = int(caught.sum())
    audits = int(audited.sum())
    tempted = ~won & (net_values + racing_value > 0)
    tempted_count = int(tempted.sum())
    deterred = int((tempted & ~violated).sum())
    total_compute = permits + violations
    ran = won | violated
    return MetricsRow(
        round=round_no,
        price=float(price),
        permits=permits,
        violations=violations,
        compliance_rate=1.0 - violations / labs,
        deterrence_rate=deterred / tempted_count if tempted_count else 1.0,
        total_compute=total_compute,
        cap_overshoot=max(0, total_compute - reference_cap) if reference_cap is not None else 0,
        audits=audits,
        false_positive_audits=int((audited & ~violated).sum()),
        caught=caught_count,
        detection_rate=caught_count / violations if violations else 1.0,
        revenue=float(permits * price + caught_count * (fine + collateral)),
        welfare=float(
            np.sum(np.where(ran, net_values, 0.0))
            - harm_per_violation * violations
            - audit_cost * audits
        ),
    )


def summarise(rows: Sequence[MetricsRow]) -> dict[str, float]:
    """Return the mean of every metric over the rounds (§8: ratios averaged per round)."""
    return {name: float(np.mean([getattr(row, name) for row in rows])) for name in METRICS}
