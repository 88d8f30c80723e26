"""An experiment, its participants and its own event log (arrivals, consent, quiz, assignment).

Rooms are ordinary games (``permitgame.Game``): ``Room`` ties one to its experiment and
treatment. The design is stored complete (every default filled), so an export carries the exact
design that ran.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from permitgame.models import Game, Seat


class Experiment(models.Model):
    code = models.CharField(max_length=8, unique=True)
    name = models.CharField(max_length=100)
    design = models.JSONField(help_text="The complete design document (every key).")
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    arrivals = models.PositiveIntegerField(default=0, help_text="Participants assigned so far.")
    created_at = models.DateTimeField()

    class Meta:
        ordering = ("-created_at",)

    def __str__(self) -> str:
        return f"{self.code} {self.name}"


class Room(models.Model):
    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="rooms")
    treatment = models.CharField(max_length=40)
    number = models.PositiveIntegerField(help_text="1, 2, ... within the treatment.")
    game = models.OneToOneField(Game, on_delete=models.CASCADE, related_name="room")

    class Meta:
        ordering = ("experiment", "treatment", "number")
        constraints = (
            models.UniqueConstraint(
                fields=["experiment", "treatment", "number"], name="one_room_number"
            ),
        )

    def __str__(self) -> str:
        return f"{self.experiment.code} {self.treatment} room {self.number}"


class Participant(models.Model):
    experiment = models.ForeignKey(
        Experiment, on_delete=models.CASCADE, related_name="participants"
    )
    label = models.CharField(max_length=64)
    arrived_at = models.DateTimeField()
    consented_at = models.DateTimeField(null=True, blank=True)
    quiz_attempts = models.PositiveIntegerField(default=0)
    quiz_passed = models.BooleanField(default=False)
    order = models.PositiveIntegerField(null=True, blank=True, help_text="Assignment order.")
    treatment = models.CharField(max_length=40, blank=True)
    room = models.ForeignKey(Room, null=True, blank=True, on_delete=models.SET_NULL)
    seat = models.OneToOneField(Seat, null=True, blank=True, on_delete=models.SET_NULL)
    completion_code = models.CharField(max_length=12, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("experiment", "id")
        constraints = (
            models.UniqueConstraint(
                fields=["experiment", "label"], name="one_participant_per_label"
            ),
        )

    def __str__(self) -> str:
        return f"{self.experiment.code} {self.label}"


class Event(models.Model):
    """One entry of an experiment's own log (the games keep theirs)."""

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="events")
    participant = models.ForeignKey(Participant, null=True, blank=True, on_delete=models.CASCADE)
    action = models.CharField(max_length=20)
    actor = models.CharField(max_length=12)
    payload = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ("experiment", "id")

    def __str__(self) -> str:
        return f"{self.experiment_id} {self.action}"


class ApiToken(models.Model):
    """A researcher's key for the experiments' REST API; only its SHA-256 is stored."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    key_hash = models.CharField(max_length=64, unique=True)
    name = models.CharField(max_length=60, blank=True)
    created_at = models.DateTimeField()
    last_used = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.user} {self.name or self.key_hash[:8]}"
