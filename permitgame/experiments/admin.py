"""Read-only admin pages of experiments, their rooms, participants and events."""

from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.http import HttpRequest

from permitgame.experiments.models import ApiToken, Event, Experiment, Participant, Room

if TYPE_CHECKING:
    ModelAdmin = admin.ModelAdmin[Any]
else:
    ModelAdmin = admin.ModelAdmin


class ReadOnly(ModelAdmin):
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Experiment)
class ExperimentAdmin(ReadOnly):
    list_display = ("code", "name", "owner", "arrivals", "created_at")
    search_fields = ("code", "name")


@admin.register(Room)
class RoomAdmin(ReadOnly):
    list_display = ("experiment", "treatment", "number", "game")
    list_filter = ("treatment",)


@admin.register(Participant)
class ParticipantAdmin(ReadOnly):
    list_display = ("experiment", "label", "order", "treatment", "room", "quiz_attempts",
                    "quiz_passed", "completion_code")  # fmt: skip
    search_fields = ("label", "experiment__code")


@admin.register(Event)
class EventAdmin(ReadOnly):
    list_display = ("experiment", "id", "action", "actor", "participant", "payload", "created_at")
    list_filter = ("action", "actor")


@admin.register(ApiToken)
class ApiTokenAdmin(ReadOnly):
    list_display = ("user", "name", "created_at", "last_used")
    exclude = ("key_hash",)
