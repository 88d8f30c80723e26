"""Balanced random assignment of arrivals to treatments: seeded, reproducible, logged.

``complete``: the whole sequence for the design's expected participants is drawn at once, each
treatment ``n // T`` times and the remainder's treatments chosen at random, then shuffled; so
after everyone the counts differ by at most one. ``blocked``: permuted blocks, each holding every
treatment ``block_size`` times in a random order; at any time the counts differ by at most
``block_size``. Arrivals past the complete sequence continue in permuted blocks of one.
The same seed gives the same sequence on any machine (numpy's PCG64 via ``default_rng``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Mixed into the experiment's seed, so the assignment's stream is its own.
ASSIGNMENT_STREAM = 0xA551


def treatment_at(
    order: int,
    treatments: Sequence[str],
    *,
    seed: int,
    method: str,
    block_size: int = 1,
    participants: int | None = None,
) -> str:
    """Return the treatment of the ``order``-th arrival (0-based)."""
    names = list(treatments)
    if method == "complete" and participants is not None and order < participants:
        return complete_sequence(names, seed=seed, participants=participants)[order]
    if method == "complete" and participants is not None:
        order, block_size, seed = order - participants, 1, seed + 1
    size = len(names) * block_size
    block, index = divmod(order, size)
    rng = np.random.default_rng([ASSIGNMENT_STREAM, seed, block])
    drawn = rng.permutation(np.repeat(np.arange(len(names)), block_size))
    return names[int(drawn[index])]


def complete_sequence(treatments: Sequence[str], *, seed: int, participants: int) -> list[str]:
    """Return the complete-randomisation sequence of ``participants`` arrivals."""
    names = list(treatments)
    rng = np.random.default_rng([ASSIGNMENT_STREAM, seed])
    base, extra = divmod(participants, len(names))
    counts = np.full(len(names), base)
    counts[rng.choice(len(names), size=extra, replace=False)] += 1
    sequence = np.repeat(np.arange(len(names)), counts)
    return [names[i] for i in rng.permutation(sequence)]
