"""Seats keep their nickname casefolded, unique per game: a join checks it with one look-up."""

from typing import Any

from django.db import migrations, models


def fill_nickname_keys(apps: Any, schema_editor: Any) -> None:
    """Set the key of every seat that has a player (the join refused a taken key all along)."""
    Seat = apps.get_model("permitgame", "Seat")
    seats = list(Seat.objects.filter(token__isnull=False).only("pk", "nickname"))
    for seat in seats:
        seat.nickname_key = seat.nickname.casefold()
    Seat.objects.bulk_update(seats, ["nickname_key"], batch_size=500)


class Migration(migrations.Migration):
    dependencies = [
        ("permitgame", "0011_study2_bot_disclosure"),
    ]

    operations = [
        migrations.AddField(
            model_name="seat",
            name="nickname_key",
            field=models.CharField(blank=True, editable=False, max_length=72, null=True),
        ),
        migrations.RunPython(fill_nickname_keys, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="seat",
            constraint=models.UniqueConstraint(
                fields=("game", "nickname_key"), name="unique_nickname_per_game"
            ),
        ),
    ]
