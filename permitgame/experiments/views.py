"""The participants' pages: one entry link per experiment, then welcome and consent,
instructions, the quiz, the room (the game's own play page), and the completion page."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from permitgame import selectors
from permitgame.errors import GameError
from permitgame.experiments import materials, services
from permitgame.experiments.models import Experiment, Participant

SESSION_KEY = "permitgame_participants"


def _experiment(code: str) -> Experiment | None:
    return Experiment.objects.filter(code=code.upper()).first()


def _participant(request: HttpRequest, experiment: Experiment) -> Participant | None:
    ids = request.session.get(SESSION_KEY, {})
    pk = ids.get(experiment.code)
    return Participant.objects.filter(pk=pk, experiment=experiment).first() if pk else None


def _problem(request: HttpRequest, message: str, status: int = 400) -> HttpResponse:
    return render(request, "experiments/message.html", {"message": message}, status=status)


@require_http_methods(["GET"])
def entry(request: HttpRequest, code: str) -> HttpResponse:
    """The persistent entry link: ``/x/<code>/?label=...``; the same label, the same seat."""
    experiment = _experiment(code)
    if experiment is None:
        return _problem(request, "This study link is not known.", 404)
    label = request.GET.get("label")
    current = _participant(request, experiment)
    if current is not None and (label is None or label == current.label):
        return redirect(reverse("experiments:step", args=[experiment.code]))
    try:
        participant = services.participant_arrive(experiment=experiment, label=label)
    except GameError as error:
        return _problem(request, error.message, 403)
    ids = dict(request.session.get(SESSION_KEY, {}))
    ids[experiment.code] = participant.pk
    request.session[SESSION_KEY] = ids
    if participant.seat is not None and participant.seat.token:
        tokens = dict(request.session.get(selectors.SESSION_TOKENS, {}))
        tokens[participant.seat.game.code] = participant.seat.token
        request.session[selectors.SESSION_TOKENS] = tokens
    return redirect(reverse("experiments:step", args=[experiment.code]))


@require_http_methods(["GET", "POST"])
def step(request: HttpRequest, code: str) -> HttpResponse:
    """Whatever the participant does next: consent, instructions and quiz, the room, done."""
    experiment = _experiment(code)
    if experiment is None:
        return _problem(request, "This study link is not known.", 404)
    participant = _participant(request, experiment)
    if participant is None:
        return redirect(reverse("experiments:entry", args=[experiment.code]))
    design = experiment.design
    context: dict[str, Any] = {"experiment": experiment, "participant": participant}
    if participant.seat is not None:
        game = participant.seat.game
        if game.status == "finished":
            return _complete(request, experiment, participant)
        return redirect(reverse("play", args=[game.code]))
    if participant.consented_at is None:
        if request.method == "POST" and request.POST.get("consent") == "yes":
            services.participant_consent(participant=participant)
            return redirect(reverse("experiments:step", args=[experiment.code]))
        context["texts"] = design["texts"]
        return render(request, "experiments/consent.html", context)
    treatment = services.quiz_treatment(participant)
    scenario = services.participant_scenario(experiment, treatment)
    plan = design["treatments"][treatment]
    role = "governor" if plan["seats"]["human_labs"] == 0 else "lab"
    context["instructions"] = materials.instructions(
        scenario,
        role=role,
        bots=services.bots_in(plan),
        disclosure=design["bot_disclosure"],
        payment=design["payment"],
    )
    context["extra"] = design["texts"]["instructions"]
    questions = materials.quiz(scenario) if design["quiz"]["enabled"] else ()
    context["questions"] = questions
    wrong: list[str] = []
    if request.method == "POST":
        try:
            if questions and not participant.quiz_passed:
                answers = {q.key: request.POST.get(q.key, "") for q in questions}
                wrong = services.participant_answer_quiz(
                    participant=participant, answers=answers, treatment=treatment
                )
            if not wrong:
                services.participant_assign(participant=participant)
                participant.refresh_from_db()
                _remember(request, participant)
                return redirect(reverse("experiments:step", args=[experiment.code]))
        except GameError as error:
            context["error"] = error.message
        participant.refresh_from_db()
    context["wrong"] = wrong
    context["locked_out"] = services.quiz_locked_out(participant)
    context["attempts_left"] = design["quiz"]["max_attempts"] - participant.quiz_attempts
    status = 400 if wrong or context.get("error") else 200
    return render(request, "experiments/instructions.html", context, status=status)


def _remember(request: HttpRequest, participant: Participant) -> None:
    assert participant.seat is not None
    tokens = dict(request.session.get(selectors.SESSION_TOKENS, {}))
    tokens[participant.seat.game.code] = participant.seat.token
    request.session[selectors.SESSION_TOKENS] = tokens


def _complete(
    request: HttpRequest, experiment: Experiment, participant: Participant
) -> HttpResponse:
    participant = services.participant_complete(participant=participant)
    points = services.points_of(participant)
    design = experiment.design
    redirect_url = design["completion"]["redirect_url"]
    if redirect_url:
        redirect_url = redirect_url.replace("{code}", participant.completion_code).replace(
            "{label}", participant.label
        )
    assert participant.room is not None
    labs = list(participant.room.game.seats.filter(role="lab"))
    # Disclosed at the end: the labs not played by a person (bots, and declared programs).
    machines = sum(1 for seat in labs if seat.held_by != "human")
    context = {
        "experiment": experiment,
        "participant": participant,
        "points": points,
        "payment": services.payment_of(design, points),
        "currency": design["payment"]["currency"],
        "redirect_url": redirect_url,
        "bots": machines if design["bot_disclosure"] != "hidden" else None,
        "labs": len(labs),
    }
    return render(request, "experiments/complete.html", context)
