"""The experiments' JSON endpoints.

For researchers, authenticated by ``Authorization: Token KEY`` (``manage.py experiment token
USER`` makes a key): ``GET/POST /api/experiments`` (list, create), ``GET
/api/experiments/<code>`` (status), ``GET /api/experiments/<code>/games`` (rooms) and ``GET
/api/experiments/<code>/data.zip`` (every table and the codebook). Each researcher sees only
their own experiments; staff see all.

For participants that are programs: ``POST /api/experiments/<code>/enter`` takes a label, the
consent, the quiz answers and an optional ``client`` declaration, and answers with a seat like
``POST /api/games/<code>/join`` does.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from typing import Any

from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from permitgame import clock, views
from permitgame.errors import GameError
from permitgame.experiments import exports, materials, selectors, services
from permitgame.experiments.design import DesignError
from permitgame.experiments.models import ApiToken, Experiment, Participant

TOKEN_PREFIX = "Token "


def token_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def token_create(user: Any, name: str = "") -> str:
    """Make a new API key for ``user``; return it (only its hash is kept)."""
    key = secrets.token_urlsafe(32)
    ApiToken.objects.create(user=user, key_hash=token_hash(key), name=name, created_at=clock.now())
    return key


def _error(code: str, message: str, status: int, **extra: Any) -> JsonResponse:
    return JsonResponse({"type": "error", "code": code, "message": message, **extra}, status=status)


def _user(request: HttpRequest) -> Any:
    header = request.headers.get("Authorization", "")
    if not header.startswith(TOKEN_PREFIX):
        return None
    token = (
        ApiToken.objects.filter(key_hash=token_hash(header[len(TOKEN_PREFIX) :].strip()))
        .select_related("user")
        .first()
    )
    if token is None or not token.user.is_active:
        return None
    ApiToken.objects.filter(pk=token.pk).update(last_used=clock.now())
    return token.user


def _mine(user: Any) -> QuerySet[Experiment]:
    experiments = Experiment.objects.all()
    return experiments if user.is_staff else experiments.filter(owner=user)


def entry_url(request: HttpRequest, experiment: Experiment) -> str:
    return request.build_absolute_uri(f"/x/{experiment.code}/")


UNAUTHORISED = "Send your API key as the header 'Authorization: Token KEY'."


@csrf_exempt  # token-authenticated, never by cookie
@require_http_methods(["GET", "POST"])
def experiments(request: HttpRequest) -> JsonResponse:
    user = _user(request)
    if user is None:
        return _error("unauthorised", UNAUTHORISED, 401)
    if request.method == "GET":
        return JsonResponse(
            {
                "experiments": [
                    {
                        "code": e.code,
                        "name": e.name,
                        "created_at": e.created_at.isoformat(),
                        "entry_url": entry_url(request, e),
                    }
                    for e in _mine(user)
                ]
            }
        )
    try:
        design = json.loads(request.body or b"null")
    except ValueError:
        return _error("bad_request", "The request body must be a design (a JSON object).", 400)
    try:
        experiment = services.experiment_create(design=design, owner=user)
    except DesignError as error:
        return _error("design", str(error), 400, key=error.key)
    return JsonResponse(
        {"code": experiment.code, "entry_url": entry_url(request, experiment)}, status=201
    )


def _experiment_for(request: HttpRequest, code: str) -> Experiment | JsonResponse:
    user = _user(request)
    if user is None:
        return _error("unauthorised", UNAUTHORISED, 401)
    experiment = _mine(user).filter(code=code.upper()).first()
    if experiment is None:
        return _error("unknown_experiment", f"You have no experiment {code.upper()}.", 404)
    return experiment


@csrf_exempt
@require_GET
def status(request: HttpRequest, code: str) -> JsonResponse:
    experiment = _experiment_for(request, code)
    if isinstance(experiment, JsonResponse):
        return experiment
    return JsonResponse(
        {**selectors.experiment_status(experiment), "entry_url": entry_url(request, experiment)}
    )


@csrf_exempt
@require_GET
def games(request: HttpRequest, code: str) -> JsonResponse:
    experiment = _experiment_for(request, code)
    if isinstance(experiment, JsonResponse):
        return experiment
    return JsonResponse({"games": selectors.room_rows(experiment)})


@csrf_exempt
@require_GET
def data(request: HttpRequest, code: str) -> HttpResponse:
    experiment = _experiment_for(request, code)
    if isinstance(experiment, JsonResponse):
        return experiment
    response = HttpResponse(exports.archive(experiment), content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="{experiment.code}-data.zip"'
    return response


@csrf_exempt  # a participant program authenticates with the seat token it gets here
@require_POST
def enter(request: HttpRequest, code: str) -> JsonResponse:
    """A program takes part: label, consent, quiz answers, then a seat (as the join answers)."""
    experiment = Experiment.objects.filter(code=code.upper()).first()
    if experiment is None:
        return _error("unknown_experiment", f"There is no study {code.upper()}.", 404)
    try:
        body = views.json_body(request)
        client = views.client_of(body)
        label = body.get("label")
        if label is not None and not isinstance(label, str):
            return _error("bad_request", "label: must be a string.", 400)
        participant = services.participant_arrive(experiment=experiment, label=label)
        if participant.consented_at is None:
            if body.get("consent") is not True:
                texts = experiment.design["texts"]
                return _error(
                    "consent",
                    'Send "consent": true after reading the consent text.',
                    400,
                    label=participant.label,
                    welcome=texts["welcome"],
                    consent=texts["consent"],
                )
            participant = services.participant_consent(participant=participant)
        if experiment.design["quiz"]["enabled"] and not participant.quiz_passed:
            quiz_error = _quiz(experiment, participant, body.get("answers"))
            if quiz_error is not None:
                return quiz_error
        participant = services.participant_assign(participant=participant, client=client)
    except GameError as error:
        return _error(error.code, error.message, error.status)
    assert participant.seat is not None
    seat = participant.seat
    return JsonResponse(
        {**views.seat_json(request, seat, seat.game), "label": participant.label}, status=201
    )


def _quiz(experiment: Experiment, participant: Participant, answers: Any) -> JsonResponse | None:
    treatment = services.quiz_treatment(participant)
    questions = materials.quiz(services.participant_scenario(experiment, treatment))
    shown = [{"key": q.key, "text": q.text, "options": list(q.options)} for q in questions]
    limit = experiment.design["quiz"]["max_attempts"]
    if isinstance(answers, dict):
        clean = {str(k): str(v) for k, v in answers.items()}
        wrong = services.participant_answer_quiz(
            participant=participant, answers=clean, treatment=treatment
        )
        if not wrong:
            return None
        participant.refresh_from_db()
        return _error(
            "quiz",
            "Some answers are wrong.",
            400,
            wrong=wrong,
            questions=shown,
            attempts_left=limit - participant.quiz_attempts,
        )
    return _error(
        "quiz",
        'Answer the quiz: send "answers": {key: option}.',
        400,
        questions=shown,
        attempts_left=limit - participant.quiz_attempts,
    )
