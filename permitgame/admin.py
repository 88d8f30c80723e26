"""Admin registrations for review: games and seats, and the read-only move log and records.

An admin reviews a game from its page: its seats, a link to its log (every move and phase change,
oldest first) and to its round records, and the "replay" action, which recomputes the game from
its seed and log through sim_core and says whether the stored results agree.
"""

from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.db.models import Count, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from permitgame.models import Connection, Game, Move, RoundRecord, SavedPreset, Seat
from permitgame.replay import replay_game, verify_game_chain

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
    fields = ("role", "lab_index", "kind", "played_by", "nickname", "fallback_strategy",
              "controller", "standing_in", "handed_to_bot", "last_seen")  # fmt: skip
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="played by")
    def played_by(self, seat: Seat) -> str:
        return _played_by(seat)


def _played_by(seat: Seat) -> str:
    """Who holds a seat, as the admin lists it: a declared program is never a student."""
    if seat.is_program:
        name = " ".join(p for p in (seat.client_name, seat.client_version) if p)
        return f"Program ({name})"
    return "Student" if seat.has_player else f"Bot ({seat.fallback_strategy})"


def _filtered_link(model: type[Any], game: Game, text: str) -> str:
    url = reverse(f"admin:permitgame_{model._meta.model_name}_changelist")
    return format_html('<a href="{}?game__id__exact={}">{}</a>', url, game.pk, text)


@admin.register(Game)
class GameAdmin(ReadOnlyAdmin):
    list_display = ("code", "title", "status", "round_no", "phase", "phase_deadline", "owner",
                    "created_at", "log")  # fmt: skip
    list_filter = ("status", "owner")
    search_fields = ("code", "title", "owner__username")
    readonly_fields = ("log", "records", "chain")
    inlines = (SeatInline,)
    actions = ("replay",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Game]:
        games: QuerySet[Game] = super().get_queryset(request)
        return games.annotate(move_count=Count("moves", distinct=True))

    @admin.display(description="log")
    def log(self, game: Game) -> str:
        # move_count: annotated by get_queryset, which the list and the change page both use.
        return _filtered_link(Move, game, f"{game.move_count} entries")  # type: ignore[attr-defined]

    @admin.display(description="round records")
    def records(self, game: Game) -> str:
        return _filtered_link(RoundRecord, game, f"{game.records.count()} rounds")

    @admin.display(description="hash chain")
    def chain(self, game: Game) -> str:
        return verify_game_chain(game).summary()

    @admin.action(
        description="Verify the log's hash chain, replay from the seed and the log, and compare"
    )
    def replay(self, request: HttpRequest, queryset: QuerySet[Game]) -> None:
        for game in queryset:
            chain = verify_game_chain(game)
            report = replay_game(game)
            self.message_user(
                request, chain.summary(), messages.SUCCESS if chain.ok else messages.ERROR
            )
            level = messages.SUCCESS if report.ok else messages.ERROR
            self.message_user(request, report.summary(), level)


@admin.register(Seat)
class SeatAdmin(ReadOnlyAdmin):
    list_display = ("game", "role", "lab_index", "kind", "played_by", "nickname", "controller",
                    "standing_in", "handed_to_bot", "last_seen")  # fmt: skip
    list_filter = ("role", "kind", "client_kind", "controller")
    search_fields = ("game__code", "nickname")
    exclude = ("token",)

    @admin.display(description="played by")
    def played_by(self, seat: Seat) -> str:
        return _played_by(seat)


@admin.register(Move)
class MoveAdmin(ReadOnlyAdmin):
    """The append-only event log."""

    list_display = ("game", "id", "round_no", "phase", "action", "actor", "seat", "payload",
                    "latency_ms", "created_at")  # fmt: skip
    list_filter = ("action", "actor", "phase")
    search_fields = ("game__code", "seat__nickname")
    list_select_related = ("game", "seat")


@admin.register(RoundRecord)
class RoundRecordAdmin(ReadOnlyAdmin):
    list_display = ("game", "round_no", "price", "created_at")
    search_fields = ("game__code",)


@admin.register(Connection)
class ConnectionAdmin(ReadOnlyAdmin):
    list_display = ("seat", "channel_name", "opened_at", "last_seen")


@admin.register(SavedPreset)
class SavedPresetAdmin(ReadOnlyAdmin):
    list_display = ("name", "owner", "human_governor", "updated_at")
    search_fields = ("name", "owner__username")
