"""The game server's tables: Game, Seat, Move (the append-only log), RoundRecord, Connection.

Also the instructor's own tables: ``SavedPreset`` (game settings saved from the console) and
``DebriefCache`` (expensive debrief computations of a finished game, rebuilt on demand).

The truth of a game is its seed, its frozen scenario and its move log (MODEL.md §11). Everything
else here is either the live position of the game (round, phase, deadline, who plays each seat)
or a cache that replay rebuilds (``RoundRecord``). No rule of the game lives here: models hold
data, ``services`` change it, ``bridge`` turns it into sim_core values.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.conf import settings
from django.db import connections, models

from permitgame import prepared
from sim_core import Phase, Role

# Only these phases are ever stored: the game rests in them. Allocation, signals and
# settlement happen inside one transaction and are never a resting point.
RESTING_PHASES = (Phase.BIDDING, Phase.COMPLIANCE, Phase.AUDIT, Phase.RESULTS)

#: Default seconds per resting phase (``Game.durations``); None means "no deadline".
DEFAULT_DURATIONS: dict[str, int | None] = {
    Phase.BIDDING: 60,
    Phase.COMPLIANCE: 45,
    Phase.AUDIT: 60,
    Phase.RESULTS: 15,
}


class Status(models.TextChoices):
    LOBBY = "lobby", "Lobby"
    RUNNING = "running", "Running"
    PAUSED = "paused", "Paused"
    FINISHED = "finished", "Finished"


class Actor(models.TextChoices):
    """Who made an entry of the log."""

    HUMAN = "human", "Human"
    DEFAULT = "default", "Default (a human did not act in time)"
    BOT = "bot", "Bot"
    SYSTEM = "system", "System"
    HOST = "host", "Instructor"
    PROGRAM = "program", "Program (declared itself when it joined)"


class Action(models.TextChoices):
    """What an entry of the log records. Moves are bid/ask/decide/audit; the rest are events.

    ``ask`` is a holder's move in the trading phase of a game with granted permits (MODEL.md
    §3b): payload ``{"amount": a}``, or ``{"amount": null}`` to keep the permit.
    """

    BID = "bid", "Bid"
    ASK = "ask", "Ask or keep (traded permits)"
    DECIDE = "decide", "Run or idle"
    AUDIT = "audit", "Audits"
    CREATE = "create", "Game created"
    JOIN = "join", "Joined"
    START = "start", "Game started"
    PHASE = "phase", "Phase began"
    PAUSE = "pause", "Paused"
    RESUME = "resume", "Resumed"
    EXTEND = "extend", "Timer extended"
    ADVANCE = "advance", "Advanced by the instructor"
    STAND_IN = "stand_in", "Bot stands in for an absent player"
    RECLAIM = "reclaim", "Player took the seat back"
    HAND_TO_BOT = "hand_to_bot", "Seat handed to a bot"
    HAND_BACK = "hand_back", "Seat handed back to its player"
    END = "end", "Game ended"
    ADD_BOT = "add_bot", "Bot lab added in the lobby"
    REMOVE_SEAT = "remove_seat", "Lab seat removed in the lobby"
    ASSIGN = "assign", "Governor assigned in the lobby"
    CONNECT = "connect", "Player connected (first socket, or back after a drop)"
    DROP = "drop", "Player's last connection closed"
    REJOIN = "rejoin", "Player moved the seat to another device"
    FILL = "fill", "Empty human seat filled by a bot at the start"
    BELIEF = "belief", "Believed chance of being caught"


#: The actions that are moves of a round (one per seat, round and phase).
MOVE_ACTIONS = (Action.BID, Action.ASK, Action.DECIDE, Action.AUDIT)


def lab_label(player_id: int) -> str:
    """Return how every screen, table and message names a lab: "Lab 3" (numbered from 1)."""
    return f"Lab {player_id}"


class Controller(models.TextChoices):
    """Who plays a seat in the current phase (fixed when the phase begins, see services)."""

    HUMAN = "human", "Human"
    BOT = "bot", "Bot"


def _phase_choices() -> list[tuple[str, str]]:
    return [(phase.value, phase.value.capitalize()) for phase in RESTING_PHASES]


def _role_choices() -> list[tuple[str, str]]:
    return [(role.value, role.value.capitalize()) for role in Role]


class Coaching(models.TextChoices):
    """How much the run-or-idle screen works out for a lab (a game setting)."""

    FULL = "full", "Full: the numbers and whether running pays on average"
    NUMBERS = "numbers", "Numbers only: value, price, detection and penalty, no verdict"
    NONE = "none", "None: the choice alone"


class BotDisclosure(models.TextChoices):
    """Whether the players are told which seats bots play (an experiment's ``bot_disclosure``).

    ``hidden``: no player is sent anything that tells a bot's seat from a person's (the
    instructor's console, the admin and the exports still show it); ``revealed_at_end``: hidden
    until the game is over; ``revealed``: shown throughout (every class game).
    """

    REVEALED = "revealed", "Revealed: the players see which seats bots play"
    HIDDEN = "hidden", "Hidden: no player can tell a bot's seat from a person's"
    REVEALED_AT_END = "revealed_at_end", "Revealed at the end: hidden until the game is over"


class Game(models.Model):
    """One game room: its frozen scenario and seed, and where the game stands now.

    ``phase_deadline`` is an absolute time (the server's clock decides); while paused it is None
    and ``paused_remaining`` keeps the seconds that were left. ``version`` grows by one with
    every committed change, so a client that got a snapshot can drop older events. ``seq``
    grows by one with every event sent to the players (a phase change, a market, results, a
    change of seats; not a single move or join, whose progress is sent coalesced): the number
    each message to a seat carries, so a client sees a gap in its stream (docs/protocol.md).
    """

    code = models.CharField(max_length=8, unique=True)
    title = models.CharField(max_length=100, blank=True)
    scenario = models.JSONField(help_text="The complete scenario (sim_core.scenario_to_dict).")
    seed = models.BigIntegerField()
    human_governor = models.BooleanField(default=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.LOBBY)
    round_no = models.PositiveIntegerField(default=0)
    phase = models.CharField(max_length=12, choices=_phase_choices(), blank=True)
    phase_started_at = models.DateTimeField(null=True, blank=True)
    phase_deadline = models.DateTimeField(null=True, blank=True, db_index=True)
    paused_remaining = models.FloatField(null=True, blank=True)
    durations = models.JSONField(default=dict, help_text="Seconds per phase; null = no deadline.")
    autostart = models.BooleanField(
        default=False, help_text="Start by itself when every human seat is taken."
    )
    lobby_seconds = models.PositiveIntegerField(
        null=True, blank=True, help_text="With autostart: start this long after the first join."
    )
    live_standings = models.BooleanField(
        default=False,
        help_text=(
            "Each lab sees its place among the labs after every round (else only at game over): "
            "a place that moves tells a lab that other labs' payoffs moved."
        ),
    )
    version = models.PositiveIntegerField(default=0)
    # The version whose commit last changed a seat (who plays it, its role, its nickname, ...):
    # a process that holds the seats of an older version than this reads them again
    # (``bridge.rows_of``). A commit that does not know its seats unchanged sets it to its own
    # version (``services._commit``), so a seat is never taken as unchanged by mistake.
    seats_version = models.PositiveIntegerField(default=0)
    # The hash of the log's last entry (permitgame.chain): the next entry's ``prev_hash``, kept
    # here so that appending to the log reads nothing more; empty before the first hashed entry.
    log_head = models.CharField(max_length=64, blank=True, default="")
    coaching = models.CharField(
        max_length=8,
        choices=Coaching.choices,
        default=Coaching.FULL,
        help_text="How much the run-or-idle screen works out for a lab.",
    )
    ask_belief = models.BooleanField(
        default=False,
        help_text="Ask labs without a permit how likely a violator is caught, before they choose.",
    )
    bot_disclosure = models.CharField(
        max_length=16,
        choices=BotDisclosure.choices,
        default=BotDisclosure.REVEALED,
        help_text="Whether the players are shown which seats bots play.",
    )
    seq = models.PositiveIntegerField(
        default=0, help_text="Events sent to the players so far (each message's seq)."
    )
    created_at = models.DateTimeField()
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-created_at",)

    def __str__(self) -> str:
        return f"{self.code} ({self.status})"

    @property
    def bots_shown(self) -> bool:
        """Whether the players may be shown which seats bots play (``bot_disclosure``, now)."""
        if self.bot_disclosure == BotDisclosure.REVEALED_AT_END:
            return self.status == Status.FINISHED
        return self.bot_disclosure != BotDisclosure.HIDDEN

    @property
    def rounds(self) -> int:
        """The number of rounds the scenario plays."""
        return int(self.scenario["rounds"])

    @property
    def lab_count(self) -> int:
        """N, the number of labs."""
        return int(self.scenario["labs"]["count"])


class Seat(models.Model):
    """A lab or the governor in one game, played by a human or a bot.

    ``kind`` says what the seat was created for; a bot seat becomes a human one when a late
    joiner takes it. ``controller`` says who plays the current phase. ``standing_in`` is set
    when a bot took over because the player was away at a phase's end; ``handed_to_bot`` when
    the instructor gave the seat to a bot.
    """

    class Kind(models.TextChoices):
        HUMAN = "human", "Human"
        BOT = "bot", "Bot"

    game = models.ForeignKey(Game, on_delete=models.CASCADE, related_name="seats")
    role = models.CharField(max_length=10, choices=_role_choices())
    lab_index = models.PositiveIntegerField(null=True, blank=True, help_text="0-based; labs only.")
    kind = models.CharField(max_length=5, choices=Kind.choices)
    fallback_strategy = models.CharField(max_length=20)
    nickname = models.CharField(max_length=24, blank=True)
    # The nickname casefolded, set with it when a player joins (NULL for a seat without one):
    # "nickname taken" is one look-up of an index, unique per game, not a read of every seat.
    # Casefolding makes a character at most three (NICKNAME_MAX is 24).
    nickname_key = models.CharField(max_length=72, null=True, blank=True, editable=False)  # noqa: DJ001
    # NULL, not "", for "no player yet": both are unique among the seats that have one.
    token = models.CharField(max_length=64, null=True, blank=True, unique=True)
    rejoin_code = models.CharField(max_length=8, null=True, blank=True)  # noqa: DJ001
    join_key = models.CharField(  # noqa: DJ001
        max_length=64,
        null=True,
        blank=True,
        help_text="The client's key of the join request: a resent join gets the same seat.",
    )
    joined_at = models.DateTimeField(null=True, blank=True)
    controller = models.CharField(max_length=5, choices=Controller.choices, default=Controller.BOT)
    standing_in = models.BooleanField(default=False)
    handed_to_bot = models.BooleanField(default=False)
    last_seen = models.DateTimeField(null=True, blank=True)
    # A program that declared itself when it joined (the JSON join's "client"); a program that
    # does not declare itself is a human seat, as a student's own bot would be.
    client_kind = models.CharField(
        max_length=8,
        choices=[("", "not declared"), ("program", "Program")],
        blank=True,
        default="",
        help_text='"program" when the joiner declared itself a program.',
    )
    client_name = models.CharField(max_length=60, blank=True, default="")
    client_version = models.CharField(max_length=40, blank=True, default="")

    class Meta:
        ordering = ("game", "role", "lab_index")
        constraints = (
            models.UniqueConstraint(fields=["game", "lab_index"], name="one_seat_per_lab"),
            models.UniqueConstraint(
                fields=["game", "rejoin_code"], name="unique_rejoin_code_per_game"
            ),
            models.UniqueConstraint(
                fields=["game", "nickname_key"], name="unique_nickname_per_game"
            ),
        )

    def __str__(self) -> str:
        who = self.nickname or self.kind
        if self.role == Role.GOVERNOR:
            return f"{self.game.code} governor ({who})"
        return f"{self.game.code} lab {(self.lab_index or 0) + 1} ({who})"

    @property
    def player_id(self) -> int:
        """The public id of the seat: lab number 1..N, or 0 for the governor."""
        return 0 if self.lab_index is None else self.lab_index + 1

    @property
    def has_player(self) -> bool:
        """Whether a human holds this seat."""
        return self.token is not None

    @property
    def is_program(self) -> bool:
        """Whether the seat's player declared itself a program (never shown as a student)."""
        return self.has_player and self.client_kind == "program"

    @property
    def held_by(self) -> str:
        """Who holds the seat: ``program`` (declared), ``human`` (a student) or ``bot``."""
        if not self.has_player:
            return "bot"
        return "program" if self.client_kind == "program" else "human"


class MoveLog(models.Manager["Move"]):
    """The log's manager: Django's, plus ``append`` for a batch of entries."""

    def append(self, moves: Sequence[Move]) -> None:
        """Insert ``moves`` (new entries, in order) and set their ids.

        What ``bulk_create`` does for them, without building the statement's SQL value by
        value. A batch of moves is recorded inside the game's lock, where ``bulk_create`` took
        about 90 us per entry, most of it the statement's making. One entry is one INSERT
        (``prepared.insert``: 0.19 ms against 0.32 ms for the batch's statement, with
        PostgreSQL). With PostgreSQL several are one statement with one parameter, the rows as
        one JSON document (``prepared.insert_rows``), the same text for every batch; elsewhere one
        VALUES statement per chunk of the backend's batch size, each row's values made by its
        fields (``get_db_prep_save``, as Django writes them).
        """
        if not moves:
            return
        if len(moves) == 1:  # one row: a plain INSERT, cheaper than the batch's statement
            prepared.insert(moves[0], using=self.db)
            return
        connection = connections[self.db]
        if connection.vendor == "postgresql":
            prepared.insert_rows(moves, using=self.db)
            return
        if not connection.features.can_return_rows_from_bulk_insert:
            self.bulk_create(moves)
            return
        ops = connection.ops
        meta = self.model._meta
        fields = prepared.row_fields(self.model)
        columns = ", ".join(ops.quote_name(field.column) for field in fields)
        returning, _ = ops.return_insert_columns([meta.pk])
        insert = f"INSERT INTO {ops.quote_name(meta.db_table)} ({columns}) "
        with connection.cursor() as cursor:
            row = "(" + ", ".join(["%s"] * len(fields)) + ")"
            size = max(1, ops.bulk_batch_size(fields, moves))
            for start in range(0, len(moves), size):
                chunk = moves[start : start + size]
                params = [
                    field.get_db_prep_save(getattr(move, field.attname), connection)
                    for move in chunk
                    for field in fields
                ]
                cursor.execute(
                    f"{insert}VALUES {', '.join([row] * len(chunk))} {returning}", params
                )
                prepared.took_keys(chunk, cursor.fetchall(), using=self.db)


class Move(models.Model):
    """One entry of a game's append-only log: a move of a round, or an event.

    Moves (``bid``, ``decide``, ``audit``) carry their payload in 0-based lab indexes:
    ``{"amount": 0.4}``, ``{"run": true}``, ``{"labs": [0, 3]}``; at most one per seat, round
    and phase. ``actor`` says whether a human, a default, a bot, the system or the instructor
    made it; ``latency_ms`` how long a human took from the start of the phase. Rows are never
    updated or deleted.
    """

    game = models.ForeignKey(Game, on_delete=models.CASCADE, related_name="moves")
    seat = models.ForeignKey(Seat, null=True, blank=True, on_delete=models.CASCADE)
    action = models.CharField(max_length=12, choices=Action.choices)
    actor = models.CharField(max_length=8, choices=Actor.choices)
    round_no = models.PositiveIntegerField()
    phase = models.CharField(max_length=12, blank=True)
    payload = models.JSONField(default=dict, blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField()
    # The game's hash chain (permitgame.chain): SHA-256 of the previous entry and of this one
    # over a canonical JSON; empty in games recorded before the chain existed.
    prev_hash = models.CharField(max_length=64, blank=True, default="")
    hash = models.CharField(max_length=64, blank=True, default="")

    objects = MoveLog()

    class Meta:
        ordering = ("game", "id")
        constraints = (
            models.UniqueConstraint(
                fields=["game", "round_no", "phase", "seat"],
                condition=models.Q(action__in=[str(action) for action in MOVE_ACTIONS]),
                name="one_move_per_seat_and_phase",
            ),
        )
        indexes = (models.Index(fields=["game", "round_no"]),)

    def __str__(self) -> str:
        return f"{self.game_id} r{self.round_no} {self.phase} {self.action} by {self.actor}"


class RoundRecord(models.Model):
    """The settled results of one round: a cache that replaying the log rebuilds.

    ``state`` is the GameState the round started from, ``next_state`` the one it leaves for the
    next round; the arrays are per lab, 0-based; ``metrics`` is sim_core's MetricsRow.
    """

    game = models.ForeignKey(Game, on_delete=models.CASCADE, related_name="records")
    round_no = models.PositiveIntegerField()
    state = models.JSONField()
    next_state = models.JSONField()
    values = models.JSONField()
    bids = models.JSONField()
    won = models.JSONField()
    price = models.FloatField(null=True)  # null: traded permits and no trade (MODEL.md §3b)
    announced_high_prob = models.FloatField()
    runs = models.JSONField()
    signals = models.JSONField()
    audited = models.JSONField()
    caught = models.JSONField()
    payoffs = models.JSONField()
    wealth = models.JSONField()
    metrics = models.JSONField()
    #: MODEL.md §3b only (null under an auction): per lab ``granted``, ``asks`` (null: kept, or
    #: not a holder), ``bought`` and ``sold``; ``won`` is then the holders after trading.
    trade = models.JSONField(null=True, default=None)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ("game", "round_no")
        constraints = (
            models.UniqueConstraint(fields=["game", "round_no"], name="one_record_per_round"),
        )

    def __str__(self) -> str:
        return f"{self.game_id} round {self.round_no}"


class Connection(models.Model):
    """One open websocket of a seat, kept alive by its server process's heartbeat.

    A seat is connected while it has a row seen within ``CONNECTION_LEASE_SECONDS``: rows of a
    process that died (SIGKILL) go stale by themselves, whatever process serves the game next.
    """

    seat = models.ForeignKey(Seat, on_delete=models.CASCADE, related_name="connections")
    channel_name = models.CharField(max_length=200, unique=True)
    opened_at = models.DateTimeField()
    last_seen = models.DateTimeField(db_index=True)
    html = models.BooleanField(
        default=False, help_text="A browser's socket (HTML fragments), not the JSON protocol."
    )

    def __str__(self) -> str:
        return f"{self.seat} via {self.channel_name}"


class SavedPreset(models.Model):
    """An instructor's own game settings, saved from the create-a-game form to reuse.

    ``scenario`` is a complete scenario document (sim_core.scenario_to_dict); ``durations`` and
    ``human_governor`` are the game settings that are not part of a scenario.
    """

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="saved_presets"
    )
    name = models.CharField(max_length=60)
    scenario = models.JSONField()
    human_governor = models.BooleanField(default=False)
    durations = models.JSONField(default=dict)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        ordering = ("owner", "name")
        constraints = (
            models.UniqueConstraint(fields=["owner", "name"], name="one_preset_name_per_owner"),
        )

    def __str__(self) -> str:
        return f"{self.name} ({self.owner_id})"


class DebriefCache(models.Model):
    """One expensive debrief computation of a game: a cache that the debrief rebuilds on demand.

    ``kind`` says what was computed (the deterrence heatmap's sweep, the simulated classes) and
    ``key`` with which parameters; ``result`` is its JSON document once ``status`` is done.
    """

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    game = models.ForeignKey(Game, on_delete=models.CASCADE, related_name="debrief_cache")
    kind = models.CharField(max_length=20)
    key = models.CharField(max_length=200)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.RUNNING)
    progress = models.FloatField(default=0.0, help_text="Share done, 0 to 1.")
    result = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)
    started_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        constraints = (
            models.UniqueConstraint(
                fields=["game", "kind", "key"], name="one_debrief_cache_per_computation"
            ),
        )

    def __str__(self) -> str:
        return f"{self.game_id} {self.kind} {self.key} ({self.status})"
