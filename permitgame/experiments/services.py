"""Every write of an experiment: create it, take arrivals, consent, quiz, assign, complete.

Assignment runs with the experiment row locked (one arrival at a time), so the arrival order,
the drawn treatment and the room are one consistent sequence; each step is logged in the
experiment's ``Event`` table with its actor. Rooms are games made by ``permitgame.services``
(autostart, with the design's lobby timeout: empty seats are then filled by bots, which the
game's log records as ``fill``).
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Mapping
from typing import Any

from django.db import transaction

from permitgame import clock, ledger, services
from permitgame.errors import GameError
from permitgame.experiments import assignment, materials
from permitgame.experiments.design import parse_design, room_size
from permitgame.experiments.models import Event, Experiment, Participant, Room
from permitgame.models import BotDisclosure, Seat, Status
from sim_core import Role, parse_scenario

CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"


class ExperimentError(GameError):
    """A participant's request the experiment cannot grant (shown on the page)."""

    code = "experiment"
    status = 400


def _code(length: int) -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(length))


def _event(
    experiment: Experiment,
    action: str,
    actor: str,
    *,
    participant: Participant | None = None,
    **payload: Any,
) -> None:
    Event.objects.create(
        experiment=experiment,
        participant=participant,
        action=action,
        actor=actor,
        payload=payload,
        created_at=clock.now(),
    )


@transaction.atomic
def experiment_create(*, design: Mapping[str, Any], owner: Any = None) -> Experiment:
    """Validate ``design`` and create the experiment (rooms open as participants arrive).

    Raises:
        DesignError: the design is invalid (naming the dotted key).
    """
    complete = parse_design(design)
    code = _code(6)
    while Experiment.objects.filter(code=code).exists():
        code = _code(6)
    experiment = Experiment.objects.create(
        code=code, name=complete["name"], design=complete, owner=owner, created_at=clock.now()
    )
    _event(
        experiment,
        "create",
        "host" if owner is not None else "system",
        treatments=list(complete["treatments"]),
    )
    return experiment


@transaction.atomic
def participant_arrive(*, experiment: Experiment, label: str | None) -> Participant:
    """Return the participant of ``label`` (the same one on every return), or a new one.

    Raises:
        ExperimentError: a label is required, or it is not on the roster.
    """
    experiment = Experiment.objects.select_for_update().get(pk=experiment.pk)
    rules = experiment.design["participants"]
    if label is None:
        if rules["require_label"] or rules["roster"] is not None:
            raise ExperimentError("This study's link needs your participant label (?label=...).")
        label = "anon-" + secrets.token_hex(4)
    label = label.strip()
    if not 1 <= len(label) <= 64 or not label.isprintable():
        raise ExperimentError("A participant label has 1 to 64 printable characters.")
    if rules["roster"] is not None and label not in rules["roster"]:
        raise ExperimentError("This label is not on the study's list of participants.")
    participant = Participant.objects.filter(experiment=experiment, label=label).first()
    if participant is not None:
        _event(experiment, "return", "participant", participant=participant)
        return participant
    participant = Participant.objects.create(
        experiment=experiment, label=label, arrived_at=clock.now()
    )
    _event(experiment, "arrive", "participant", participant=participant)
    return participant


@transaction.atomic
def participant_consent(*, participant: Participant) -> Participant:
    """Record the participant's consent (once) and draw their treatment.

    The treatment is drawn here, with the experiment locked, in order of consent: the
    instructions and the quiz are then about the rules the participant will play, and a
    participant who never reaches a room still counts in the treatment drawn for them (the
    ``assign`` event and the participants table keep them: intention to treat).
    """
    experiment = Experiment.objects.select_for_update().get(pk=participant.experiment_id)
    participant = Participant.objects.select_for_update().get(pk=participant.pk)
    if participant.consented_at is None:
        participant.consented_at = clock.now()
        participant.order = experiment.arrivals
        participant.treatment = _next_treatment(experiment)
        participant.save(update_fields=["consented_at", "order", "treatment"])
        experiment.arrivals += 1
        experiment.save(update_fields=["arrivals"])
        _event(experiment, "consent", "participant", participant=participant)
        _event(
            experiment,
            "assign",
            "system",
            participant=participant,
            order=participant.order,
            treatment=participant.treatment,
        )
    return participant


def participant_scenario(experiment: Experiment, treatment: str) -> dict[str, Any]:
    return dict(experiment.design["treatments"][treatment]["scenario"])


def quiz_treatment(participant: Participant) -> str:
    """The participant's treatment (drawn at consent), whose rules the quiz asks about."""
    if not participant.treatment:
        raise ExperimentError("Please read and accept the consent form first.")
    return participant.treatment


def _next_treatment(experiment: Experiment) -> str:
    design = experiment.design
    method = design["assignment"]
    return assignment.treatment_at(
        experiment.arrivals,
        list(design["treatments"]),
        seed=design["seed"],
        method=method["method"],
        block_size=method["block_size"],
        participants=method["participants"],
    )


@transaction.atomic
def participant_answer_quiz(
    *, participant: Participant, answers: Mapping[str, str], treatment: str
) -> list[str]:
    """Record one attempt at the quiz; return the keys answered wrongly (empty: passed).

    Raises:
        ExperimentError: no attempt is left.
    """
    participant = Participant.objects.select_for_update().get(pk=participant.pk)
    experiment = participant.experiment
    limit = experiment.design["quiz"]["max_attempts"]
    if participant.quiz_passed:
        return []
    if participant.quiz_attempts >= limit:
        raise ExperimentError("You have used every attempt at the quiz.")
    questions = materials.quiz(participant_scenario(experiment, treatment))
    wrong = materials.grade(questions, answers)
    participant.quiz_attempts += 1
    participant.quiz_passed = not wrong
    participant.save(update_fields=["quiz_attempts", "quiz_passed"])
    _event(
        experiment,
        "quiz",
        "participant",
        participant=participant,
        attempt=participant.quiz_attempts,
        wrong=wrong,
        answers=dict(answers),
    )
    return wrong


def quiz_locked_out(participant: Participant) -> bool:
    design = participant.experiment.design
    return (
        design["quiz"]["enabled"]
        and not participant.quiz_passed
        and participant.quiz_attempts >= design["quiz"]["max_attempts"]
    )


def _open_room(experiment: Experiment, name: str) -> Room | None:
    """Return a room of treatment ``name`` still in its lobby with a free human seat, or a new
    one (while the design allows more rooms), else None."""
    treatment = experiment.design["treatments"][name]
    rooms = list(Room.objects.filter(experiment=experiment, treatment=name).select_related("game"))
    for room in rooms:
        game = room.game
        if game.status != Status.LOBBY:
            continue
        free = Seat.objects.filter(game=game, token__isnull=True, kind=Seat.Kind.HUMAN).exists()
        if free:
            return room
    limit = treatment["rooms"]
    if limit is not None and len(rooms) >= limit:
        return None
    seats = treatment["seats"]
    seed = (
        experiment.design["seed"] * 1000
        + len(rooms)
        + 1
        + 100 * list(experiment.design["treatments"]).index(name)
    )
    disclosure = experiment.design["bot_disclosure"]
    human_seats = None
    if disclosure != BotDisclosure.REVEALED:
        # Hidden bots: the people's labs are drawn (seeded by the room), not labs 1..k, which
        # would tell every player that the last labs are bots.
        count = int(treatment["scenario"]["labs"]["count"])
        human_seats = random.Random(seed).sample(range(count), seats["human_labs"])
    game = services.game_create(
        scenario=parse_scenario(treatment["scenario"]),
        human_labs=seats["human_labs"],
        human_governor=seats["governor"] == "human",
        seed=seed,
        bot_disclosure=disclosure,
        human_seats=human_seats,
        durations=treatment["durations"],
        owner=experiment.owner,
        title=f"{experiment.name}: {name} room {len(rooms) + 1}"[:100],
        autostart=True,
        lobby_seconds=experiment.design["lobby_timeout"],
        coaching=treatment["coaching"],
        ask_belief=treatment["ask_belief"],
    )
    room = Room.objects.create(
        experiment=experiment, treatment=name, number=len(rooms) + 1, game=game
    )
    _event(experiment, "open_room", "system", treatment=name, room=room.number, game=game.code)
    return room


@transaction.atomic
def participant_assign(
    *, participant: Participant, client: Mapping[str, str] | None = None
) -> Participant:
    """Seat the participant in a room of their treatment; a returning one keeps their seat.

    ``client``: a program's declaration (the JSON entry), kept on its seat.

    Raises:
        ExperimentError: no consent, the quiz not passed, or every room of the treatment is full.
    """
    experiment = Experiment.objects.select_for_update().get(pk=participant.experiment_id)
    participant = Participant.objects.get(pk=participant.pk)
    if participant.seat_id is not None:
        return participant
    if participant.consented_at is None:
        raise ExperimentError("Please read and accept the consent form first.")
    if experiment.design["quiz"]["enabled"] and not participant.quiz_passed:
        raise ExperimentError("Please answer the comprehension quiz first.")
    name = participant.treatment
    room = _open_room(experiment, name)
    if room is None:
        _event(experiment, "full", "system", participant=participant, treatment=name)
        raise ExperimentError("Every room of this study is full; thank you for your interest.")
    seat = services.seat_join(game=room.game, nickname=participant.label[:24], client=client)
    participant.room = room
    participant.seat = seat
    participant.save(update_fields=["room", "seat"])
    _event(
        experiment,
        "seat",
        "system",
        participant=participant,
        treatment=name,
        room=room.number,
        game=room.game.code,
        player_id=seat.player_id,
    )
    return participant


def points_of(participant: Participant) -> float | None:
    """The participant's points: the sum of their lab's payoffs (None before the game ends)."""
    seat = participant.seat
    if seat is None or participant.room is None:
        return None
    game = participant.room.game
    if game.status != Status.FINISHED:
        return None
    if seat.role != Role.LAB or seat.lab_index is None:
        return 0.0
    lab = seat.lab_index
    return ledger.read(game).scores[lab]


def payment_of(design: Mapping[str, Any], points: float | None) -> float | None:
    """Show-up fee plus money per (non-negative) point, capped; None before the game ends."""
    if points is None:
        return None
    pay = design["payment"]
    amount = float(pay["show_up_fee"]) + float(pay["per_point"]) * max(0.0, points)
    if pay["cap"] is not None:
        amount = min(amount, float(pay["cap"]))
    return round(amount, 2)


@transaction.atomic
def participant_complete(*, participant: Participant) -> Participant:
    """Give a participant whose game is over a completion code (once)."""
    participant = Participant.objects.select_for_update().get(pk=participant.pk)
    if participant.completion_code or points_of(participant) is None:
        return participant
    participant.completion_code = _code(10)
    participant.completed_at = clock.now()
    participant.save(update_fields=["completion_code", "completed_at"])
    _event(
        participant.experiment,
        "complete",
        "participant",
        participant=participant,
        points=points_of(participant),
    )
    return participant


def bots_in(treatment: Mapping[str, Any]) -> int:
    """How many labs of a room of ``treatment`` are planned for bots."""
    return int(treatment["scenario"]["labs"]["count"]) - int(treatment["seats"]["human_labs"])


def room_capacity(treatment: Mapping[str, Any]) -> int:
    return room_size(treatment)
