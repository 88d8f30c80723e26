"""Reads of an experiment for the monitor page and the REST API: arrivals, counts per
treatment, rooms with their state, dropouts and stand-ins."""

from __future__ import annotations

from typing import Any

from django.db.models import Count, Q

from permitgame.experiments.models import Experiment, Participant, Room
from permitgame.models import Action, Move, Seat


def experiment_status(experiment: Experiment) -> dict[str, Any]:
    """Return the experiment's state as JSON-able data (the monitor and ``GET`` status)."""
    design = experiment.design
    participants = Participant.objects.filter(experiment=experiment)
    per_treatment = {
        name: {"assigned": 0, "seated": 0, "completed": 0, "quiz_failed": 0}
        for name in design["treatments"]
    }
    limit = design["quiz"]["max_attempts"]
    for p in participants:
        if not p.treatment:
            continue
        counts = per_treatment[p.treatment]
        counts["assigned"] += 1
        counts["seated"] += p.seat_id is not None
        counts["completed"] += bool(p.completion_code)
        counts["quiz_failed"] += (not p.quiz_passed) and p.quiz_attempts >= limit
    return {
        "code": experiment.code,
        "name": experiment.name,
        "arrivals": participants.count(),
        "consented": participants.filter(consented_at__isnull=False).count(),
        "treatments": per_treatment,
        "rooms": room_rows(experiment),
    }


def room_rows(experiment: Experiment) -> list[dict[str, Any]]:
    """Every room with its game's state and what its log says about presence."""
    rooms = Room.objects.filter(experiment=experiment).select_related("game")
    events = {
        row["game_id"]: row
        for row in Move.objects.filter(game__room__experiment=experiment)
        .values("game_id")
        .annotate(
            drops=Count("id", filter=Q(action=Action.DROP)),
            stand_ins=Count("id", filter=Q(action=Action.STAND_IN)),
            reclaims=Count("id", filter=Q(action=Action.RECLAIM)),
            fills=Count("id", filter=Q(action=Action.FILL)),
        )
    }
    rows = []
    for room in rooms:
        game = room.game
        seats = Seat.objects.filter(game=game)
        log = events.get(game.pk, {})
        rows.append(
            {
                "treatment": room.treatment,
                "room": room.number,
                "game": game.code,
                "status": game.status,
                "round": game.round_no,
                "rounds": game.rounds,
                "phase": game.phase,
                "players": seats.filter(token__isnull=False).count(),
                "human_seats": seats.filter(kind=Seat.Kind.HUMAN).count(),
                "standing_in": seats.filter(standing_in=True).count(),
                "drops": log.get("drops", 0),
                "stand_ins": log.get("stand_ins", 0),
                "reclaims": log.get("reclaims", 0),
                "lobby_fills": log.get("fills", 0),
            }
        )
    return rows
