"""A game notes the version whose commit last changed its seats: a process that caught up with
another's batch of moves compares one number, not every seat's columns."""

from typing import Any

from django.db import migrations, models
from django.db.models import F


def from_now_on(apps: Any, schema_editor: Any) -> None:
    """Every game's seats count as changed at its current version (nothing is taken as kept)."""
    Game = apps.get_model("permitgame", "Game")
    Game.objects.update(seats_version=F("version"))


class Migration(migrations.Migration):
    dependencies = [
        ("permitgame", "0012_halljoin_nickname_key"),
    ]

    operations = [
        migrations.AddField(
            model_name="game",
            name="seats_version",
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.RunPython(from_now_on, migrations.RunPython.noop),
    ]
