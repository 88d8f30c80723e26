"""The bot governor's audit policies and the check of a human governor's picks (MODEL.md §6).

Here: ``policy_audits`` (the array rule), ``choose_audits`` (the bot governor of a game under
``policy``, ``optimal`` or ``none``) and ``check_audits``. Not here: what an audit finds
(``enforcement.py``).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from sim_core.arrays import BoolArray, FloatArray
from sim_core.errors import ActionError
from sim_core.params import AuditParams, Policy


def policy_audits(
    *,
    signals: BoolArray,
    won: BoolArray,
    high_prob: float,
    base_prob: float,
    max_audits: int | None,
    uniforms: FloatArray,
    trim_keys: FloatArray,
) -> BoolArray:
    """Audit each lab without a permit with probability π1 if s = 1, π0 if s = 0 (§6).

    A permit holder cannot be violating and permit status is public, so it is never audited. If
    more than ``max_audits`` are drawn, keep that many: signal-1 labs first, then by the smallest
    ``trim_keys`` (at random within a class).

    Args:
        signals: s, shape (N,).
        won: permit holders, shape (N,).
        high_prob: π1.
        base_prob: π0.
        max_audits: cap on audits per round, or None.
        uniforms: uniform [0, 1) draws per lab for the audit coins.
        trim_keys: uniform [0, 1) draws per lab for the trim.
    """
    audited = ~won & (uniforms < np.where(signals, high_prob, base_prob))
    if max_audits is not None and int(audited.sum()) > max_audits:
        priority = np.where(audited, np.where(signals, 0.0, 1.0) + trim_keys, np.inf)
        keep = np.argsort(priority, kind="stable")[:max_audits]
        audited = np.zeros_like(audited)
        audited[keep] = True
    return audited


def choose_audits(
    *,
    policy: Policy,
    signals: BoolArray,
    won: BoolArray,
    audit: AuditParams,
    optimal_high_prob: float,
    rng: np.random.Generator,
) -> BoolArray:
    """Return the bot governor's audit set for one round (§6).

    ``none`` audits nobody; ``optimal`` uses π0 = 0 and this round's announced π1*; ``policy``
    the scenario's π1 and π0. Both uniform arrays are drawn for every lab whatever the policy.
    """
    count = int(signals.shape[-1])
    uniforms = rng.random(count)
    trim_keys = rng.random(count)
    if policy == "none":
        return np.zeros(signals.shape, dtype=bool)
    high_prob, base_prob = (
        (optimal_high_prob, 0.0) if policy == "optimal" else (audit.high_prob, audit.base_prob)
    )
    return policy_audits(
        signals=signals,
        won=won,
        high_prob=high_prob,
        base_prob=base_prob,
        max_audits=audit.max_audits,
        uniforms=uniforms,
        trim_keys=trim_keys,
    )


def check_audits(labs: Iterable[int], *, lab_count: int, max_audits: int | None) -> BoolArray:
    """Check a human governor's picks and return them as a mask (§6: any set of at most the cap).

    Raises:
        ActionError: a lab index out of range, or more labs than ``max_audits``.
    """
    picks = sorted(set(labs))
    for lab in picks:
        if not 0 <= lab < lab_count:
            raise ActionError(f"there is no lab {lab + 1}; labs are numbered 1 to {lab_count}")
    if max_audits is not None and len(picks) > max_audits:
        raise ActionError(f"at most {max_audits} audits per round; {len(picks)} were chosen")
    mask = np.zeros(lab_count, dtype=bool)
    mask[picks] = True
    return mask
