"""Seeded randomness (MODEL.md §11): one ``numpy.random.Generator`` per (round, purpose).

Here: ``Purpose`` and ``stream``/``round_streams``/``setup_stream``. Every random number in
sim_core comes from these, so a game replays exactly from its seed and its logged human moves,
and one purpose drawing more or fewer numbers never shifts another's draws. Not here: what the
numbers are used for.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np

#: The round number reserved for the per-game setup stream (real rounds count from 1).
SETUP_ROUND = 0


class Purpose(IntEnum):
    """What a stream is for. Append only: renumbering would change every recorded game."""

    SETUP = 0  # per-game draws: values (when not redrawn), risk profiles, strategy assignment
    VALUES = 1  # gross values redrawn this round
    BIDS = 2  # the random strategy's bids
    TIE_BREAK = 3  # the market's ties at the clearing price
    CHOICES = 4  # the random strategy's run/idle coin
    SIGNALS = 5  # signals of every lab
    AUDITS = 6  # the bot governor's audit draws and the max_audits trim
    BACKCHECK = 7  # backchecks of unaudited violators
    GRANT = 8  # §3b: the lottery's grant of permits this round (incumbents: the setup stream)


def stream(seed: int, round_no: int, purpose: Purpose) -> np.random.Generator:
    """Return the generator for one (round, purpose) of a game seeded with ``seed``."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, round_no, purpose])))


def setup_stream(seed: int) -> np.random.Generator:
    """Return the per-game setup generator (values, risk profiles, strategy assignment)."""
    return stream(seed, SETUP_ROUND, Purpose.SETUP)


@dataclass(frozen=True, slots=True)
class RoundStreams:
    """The generators of one round, one per purpose."""

    values: np.random.Generator
    bids: np.random.Generator
    tie_break: np.random.Generator
    choices: np.random.Generator
    signals: np.random.Generator
    audits: np.random.Generator
    backcheck: np.random.Generator


def round_streams(seed: int, round_no: int) -> RoundStreams:
    """Return fresh generators for round ``round_no`` (>= 1): the same numbers on every call."""
    return RoundStreams(
        values=stream(seed, round_no, Purpose.VALUES),
        bids=stream(seed, round_no, Purpose.BIDS),
        tie_break=stream(seed, round_no, Purpose.TIE_BREAK),
        choices=stream(seed, round_no, Purpose.CHOICES),
        signals=stream(seed, round_no, Purpose.SIGNALS),
        audits=stream(seed, round_no, Purpose.AUDITS),
        backcheck=stream(seed, round_no, Purpose.BACKCHECK),
    )
