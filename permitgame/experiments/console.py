"""The researcher's pages in the console: the experiments list, a design editor with live
validation (upload a file or edit the text), and the monitor of a running experiment with the
console's controls per room and the data download."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from permitgame.console.views import ALREADY_OVER, CONTROLS, HtmxHttpRequest
from permitgame.errors import GameError, GameOver
from permitgame.experiments import exports, selectors, services
from permitgame.experiments.design import DesignError, parse_design_text
from permitgame.experiments.models import Experiment, Room

EXAMPLE = {
    "name": "Permits and audits",
    "seed": 11,
    "treatments": {
        "random": {"scenario": "random_audit", "overrides": {"rounds": 5},
                   "seats": {"human_labs": 3}, "rooms": 2},
        "targeted": {"scenario": "targeted_audit", "overrides": {"rounds": 5},
                     "seats": {"human_labs": 3}, "rooms": 2},
    },
    "lobby_timeout": 120,
    "bot_disclosure": "revealed_at_end",
    "payment": {"currency": "EUR", "show_up_fee": 5.0, "per_point": 2.0, "cap": 30.0},
}  # fmt: skip
DESIGN_MAX = 200_000


def _mine(request: HttpRequest, code: str) -> Experiment:
    experiments = Experiment.objects.all()
    if not request.user.is_staff:
        experiments = experiments.filter(owner=request.user.pk)
    experiment = experiments.filter(code=code.upper()).first()
    if experiment is None:
        raise Http404(f"You have no experiment {code.upper()}.")
    return experiment


def _check(text: str) -> tuple[dict[str, Any] | None, DesignError | None]:
    if len(text) > DESIGN_MAX:
        return None, DesignError("", f"a design has at most {DESIGN_MAX} characters")
    try:
        return parse_design_text(text), None
    except DesignError as error:
        return None, error


@login_required
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    experiments = Experiment.objects.all()
    if not request.user.is_staff:
        experiments = experiments.filter(owner=request.user.pk)
    return render(request, "experiments/console_home.html",
                  {"experiments": experiments, "nav": "experiments"})  # fmt: skip


@login_required
@require_http_methods(["GET", "POST"])
def new(request: HttpRequest) -> HttpResponse:
    """Upload or edit a design; it is checked as you type and created when valid."""
    text = json.dumps(EXAMPLE, indent=2)
    if "from" in request.GET:
        text = json.dumps(_mine(request, request.GET["from"]).design, indent=2)
    error = None
    design = None
    if request.method == "POST":
        upload = request.FILES.get("file")
        text = (
            upload.read().decode("utf-8", "replace") if upload else request.POST.get("design", "")
        )
        design, error = _check(text)
        if design is not None and "create" in request.POST:
            experiment = services.experiment_create(design=design, owner=request.user)
            messages.success(request, f"Experiment {experiment.code} created.")
            return redirect("experiments-console:monitor", code=experiment.code)
    context = {"text": text, "error": error, "design": design, "nav": "experiments"}
    return render(request, "experiments/console_new.html", context, status=400 if error else 200)


@login_required
@require_POST
def validate(request: HttpRequest) -> HttpResponse:
    """The live check of the editor (htmx): the design's summary, or its error with the key."""
    design, error = _check(request.POST.get("design", ""))
    return render(request, "experiments/console_new.html#verdict",
                  {"design": design, "error": error})  # fmt: skip


#: The controls a room offers in each state (the game console's), with their buttons' text.
ROOM_CONTROLS = {
    "lobby": (("start", "Start"), ("end", "End")),
    "running": (("pause", "Pause"), ("advance", "Advance"), ("end", "End")),
    "paused": (("resume", "Resume"), ("end", "End")),
}
#: After a control, the keyboard focus goes to the same control in the fresh row, or else to
#: the one that took its place (Pause <-> Resume), or else to the message saying what happened.
NEXT_FOCUS = {"start": "pause", "pause": "resume", "resume": "pause"}


def _monitor_context(request: HttpRequest, experiment: Experiment) -> dict[str, Any]:
    status = selectors.experiment_status(experiment)
    for room in status["rooms"]:
        room["controls"] = ROOM_CONTROLS.get(room["status"], ())
    return {
        "experiment": experiment,
        "status": status,
        "entry_url": request.build_absolute_uri(f"/x/{experiment.code}/"),
        "nav": "experiments",
    }


@login_required
@require_GET
def monitor(request: HttpRequest, code: str) -> HttpResponse:
    experiment = _mine(request, code)
    template = "experiments/console_monitor.html"
    if request.headers.get("HX-Request"):
        template += "#live"
    return render(request, template, _monitor_context(request, experiment))


def _focus_after(context: dict[str, Any], game: str, action: str) -> tuple[str, str] | str:
    """The control to focus after ``action`` (room code, control), or "flash" (the message)."""
    room = next((r for r in context["status"]["rooms"] if r["game"] == game), None)
    offered = {name for name, _ in room["controls"]} if room else set()
    for name in (action, NEXT_FOCUS.get(action, "")):
        if name in offered:
            return (game, name)
    return "flash"


@login_required
@require_POST
def room_control(request: HtmxHttpRequest, code: str, game: str, action: str) -> HttpResponse:
    """Start, pause, resume, advance or end one room, as the game console does.

    With htmx the answer is the monitor's live part (the rooms as they are now) and the message
    (``#monitor-flash``, out of band); the keyboard focus stays on the control or the one that
    took its place. A refused control answers its status (400, 409, 410) with the message shown
    in the page. Without htmx: the message and back to the monitor.
    """
    experiment = _mine(request, code)
    room = Room.objects.filter(experiment=experiment, game__code=game.upper()).first()
    if room is None or action not in CONTROLS:
        raise Http404("No such room or control.")
    service, done = CONTROLS[action]
    where = f"{room.treatment} room {room.number}"
    error: GameError | None = None
    try:
        after = service(game=room.game)
    except GameError as refused:
        error = refused
    else:
        if after.version == room.game.version:  # nothing to do (ending an ended game)
            error = GameOver(ALREADY_OVER)
    message = f"{where}: {error.message if error is not None else done}"
    if not request.htmx:
        (messages.error if error is not None else messages.success)(request, message)
        return redirect("experiments-console:monitor", code=experiment.code)
    context = _monitor_context(request, experiment)
    context.update(
        message=message,
        error=error is not None,
        focus=_focus_after(context, room.game.code, action),
    )
    flash = render_to_string("experiments/console_monitor.html#flash", {**context, "oob": True})
    live = render_to_string("experiments/console_monitor.html#live", context, request)
    return HttpResponse(live + flash, status=error.status if error is not None else 200)


@login_required
@require_GET
def data(request: HttpRequest, code: str) -> HttpResponse:
    experiment = _mine(request, code)
    response = HttpResponse(exports.archive(experiment), content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="{experiment.code}-data.zip"'
    return response
