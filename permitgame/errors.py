"""The server's own errors: each has a stable ``code`` that the protocol sends to clients.

Rule violations come from sim_core as ``ActionError`` and are wrapped in ``NotAllowed`` by the
services; everything else a client can get wrong (shape, timing, role, identity) is here.
``status`` is the HTTP status the JSON API answers with.
"""

from __future__ import annotations


class GameError(Exception):
    """Base of every error a player's request can cause; nothing was changed."""

    code = "error"
    status = 400

    def __init__(self, message: str) -> None:
        """Keep the human-readable message."""
        super().__init__(message)
        self.message = message


class BadRequest(GameError):
    code = "bad_request"


class UnknownCommand(GameError):
    code = "unknown_command"


class InvalidInput(GameError):
    code = "invalid"


class UnknownGame(GameError):
    code = "unknown_game"
    status = 404


class GameFull(GameError):
    code = "game_full"
    status = 409


class GameOver(GameError):
    code = "game_over"
    status = 410


class BadNickname(GameError):
    code = "bad_nickname"


class NicknameTaken(GameError):
    code = "nickname_taken"
    status = 409


class UnknownPlayer(GameError):
    code = "unknown_player"
    status = 403


class StaleMove(GameError):
    """The move is for a round or phase the game is no longer in (STYLE.md §3.7)."""

    code = "stale"
    status = 409


class NotRunning(GameError):
    code = "not_running"
    status = 409


class Paused(GameError):
    code = "paused"
    status = 409


class WrongRole(GameError):
    code = "wrong_role"
    status = 403


class BotPlaying(GameError):
    code = "bot_playing"
    status = 409


class AlreadySubmitted(GameError):
    code = "already_submitted"
    status = 409


class NotAllowed(GameError):
    """sim_core refused the move (MODEL.md §4); the message is sim_core's."""

    code = "not_allowed"


class NotYourGame(GameError):
    """An instructor asked for a game of another instructor (staff may run every game)."""

    code = "not_your_game"
    status = 403


class SeatChange(GameError):
    """A change of seats in the lobby that cannot be made (a seat with a player, the last lab)."""

    code = "seat_change"
    status = 409


class RateLimited(GameError):
    """Too many attempts from one address (or at one game) in a short time: wait and retry."""

    code = "rate_limited"
    status = 429

    def __init__(self, message: str, *, retry_after: int) -> None:
        """Keep how many seconds to wait (sent as ``Retry-After``)."""
        super().__init__(message)
        self.retry_after = retry_after
