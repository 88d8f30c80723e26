"""The one family of errors sim_core raises.

Here: ``SimCoreError`` and its two kinds, bad scenarios and illegal actions. Not here: the
server's own errors (stale moves, permissions), which live in ``permitgame``.
"""

from __future__ import annotations


class SimCoreError(Exception):
    """Base class of every error sim_core raises on purpose."""


class ScenarioError(SimCoreError, ValueError):
    """A scenario value is missing, unknown, of the wrong type or out of range (MODEL.md §10).

    Attributes:
        key: the dotted key at fault, e.g. ``"audit.beta"`` (empty for the whole document).
    """

    def __init__(self, key: str, message: str) -> None:
        """Build the message ``'<key> <message>'``."""
        self.key = key
        super().__init__(f"{key} {message}" if key else message)


class ActionError(SimCoreError, ValueError):
    """A move that the rules do not allow (MODEL.md §4): a bid above wealth, an audit of nobody."""
