"""Admin registrations for review: games and seats, and the read-only move log and records."""

from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.http import HttpRequest

from permitgame.models import Connection, Game, Move, RoundRecord, Seat

# Generic in the stubs only: subscripting the classes fails at run time.
if TYPE_CHECKING:
    ModelAdmin = admin.ModelAdmin[Any]
    TabularInline = admin.TabularInline[Any, Any]
else:
    ModelAdmin = admin.ModelAdmin
    TabularInline = admin.TabularInline


class ReadOnlyAdmin(ModelAdmin):
    """Rows that only services write: viewable, never added, changed or deleted here."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class SeatInline(TabularInline):
    model = Seat
    fields = ("role", "lab_index", "kind", "nickname", "fallback_strategy", "controller",
              "standing_in", "handed_to_bot", "last_seen")  # fmt: skip
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Game)
class GameAdmin(ReadOnlyAdmin):
    list_display = ("code", "title", "status", "round_no", "phase", "phase_deadline", "owner",
                    "created_at")  # fmt: skip
    list_filter = ("status",)
    search_fields = ("code", "title")
    inlines = (SeatInline,)


@admin.register(Seat)
class SeatAdmin(ReadOnlyAdmin):
    list_display = ("game", "role", "lab_index", "kind", "nickname", "controller", "standing_in",
                    "handed_to_bot", "last_seen")  # fmt: skip
    list_filter = ("role", "kind", "controller")
    search_fields = ("game__code", "nickname")
    exclude = ("token",)


@admin.register(Move)
class MoveAdmin(ReadOnlyAdmin):
    """The append-only event log."""

    list_display = ("game", "id", "round_no", "phase", "action", "actor", "seat", "payload",
                    "latency_ms", "created_at")  # fmt: skip
    list_filter = ("action", "actor", "phase")
    search_fields = ("game__code",)


@admin.register(RoundRecord)
class RoundRecordAdmin(ReadOnlyAdmin):
    list_display = ("game", "round_no", "price", "created_at")
    search_fields = ("game__code",)


@admin.register(Connection)
class ConnectionAdmin(ReadOnlyAdmin):
    list_display = ("seat", "channel_name", "opened_at", "last_seen")
