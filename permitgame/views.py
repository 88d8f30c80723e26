"""Thin function views: a full page, or a partial when ``request.htmx``.

Pages: home, a minimal join form and a minimal seat screen (the players' pages will replace
them). The JSON API of docs/protocol.md: ``POST /api/games/<code>/join``,
``POST /api/games/<code>/rejoin`` and ``GET /api/games/<code>``.
"""

import json
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from permitgame import broadcast, selectors, services
from permitgame.errors import BadRequest, GameError
from permitgame.forms import JoinForm, form_errors
from permitgame.models import Game, Seat


def home(request: HttpRequest) -> HttpResponse:
    return render(request, "permitgame/home.html")


# ------------------------------------------------------------------------------ JSON API


def _error(error: GameError) -> JsonResponse:
    return JsonResponse(
        {"type": "error", "code": error.code, "message": error.message}, status=error.status
    )


def _json_body(request: HttpRequest) -> dict[str, Any]:
    try:
        body = json.loads(request.body or b"{}")
    except ValueError:
        raise BadRequest("The request body must be a JSON object.") from None
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.")
    return body


def ws_api_url(request: HttpRequest, code: str, token: str) -> str:
    scheme = "wss" if request.is_secure() else "ws"
    return f"{scheme}://{request.get_host()}/ws/api/games/{code}/?token={token}"


def _seat_json(request: HttpRequest, seat: Seat, game: Game) -> dict[str, Any]:
    return {
        "player_id": seat.player_id,
        "token": seat.token,
        "role": seat.role,
        "nickname": seat.nickname,
        "rejoin_code": seat.rejoin_code,
        "game": game.code,
        "status": game.status,
        "ws_url": ws_api_url(request, game.code, seat.token or ""),
    }


@csrf_exempt  # programs authenticate with the token they get here, not with cookies
@require_POST
def api_join(request: HttpRequest, code: str) -> JsonResponse:
    try:
        game = selectors.game_by_code(code)
        form = JoinForm(_json_body(request))
        if not form.is_valid():
            raise BadRequest(form_errors(form))
        seat = services.seat_join(
            game=game,
            nickname=form.cleaned_data["nickname"],
            role=form.cleaned_data["role"] or None,
        )
    except GameError as error:
        return _error(error)
    game.refresh_from_db()
    return JsonResponse(_seat_json(request, seat, game), status=201)


@csrf_exempt
@require_POST
def api_rejoin(request: HttpRequest, code: str) -> JsonResponse:
    try:
        game = selectors.game_by_code(code)
        rejoin_code = _json_body(request).get("rejoin_code")
        if not isinstance(rejoin_code, str):
            raise BadRequest('Send {"rejoin_code": "..."}.')
        seat = selectors.seat_by_rejoin_code(game, rejoin_code)
    except GameError as error:
        return _error(error)
    return JsonResponse(_seat_json(request, seat, game))


@require_GET
def api_game(request: HttpRequest, code: str) -> JsonResponse:
    try:
        game = selectors.game_by_code(code)
    except GameError as error:
        return _error(error)
    public = selectors.game_screens(game).public
    return JsonResponse(
        {
            **broadcast.game_json(public),
            "title": public.title,
            "players": broadcast.players_json(public),
        }
    )


# ------------------------------------------------------------------------------ minimal pages


@require_http_methods(["GET", "POST"])
def join(request: HttpRequest, code: str = "") -> HttpResponse:
    context: dict[str, Any] = {"code": request.GET.get("code", code).upper(), "error": ""}
    if request.method == "POST":
        context["code"] = request.POST.get("code", "").strip().upper()
        context["nickname"] = request.POST.get("nickname", "")
        try:
            game = selectors.game_by_code(context["code"])
            seat = services.seat_join(game=game, nickname=context["nickname"])
        except GameError as error:
            context["error"] = error.message
        else:
            tokens = dict(request.session.get(selectors.SESSION_TOKENS, {}))
            tokens[game.code] = seat.token
            request.session[selectors.SESSION_TOKENS] = tokens
            return redirect(reverse("play", args=[game.code]))
    return render(request, "permitgame/join.html", context, status=400 if context["error"] else 200)


@require_GET
def play(request: HttpRequest, code: str) -> HttpResponse:
    try:
        game = selectors.game_by_code(code)
        seat = selectors.seat_from_session(game, request.session)
    except GameError:
        return redirect(f"{reverse('join')}?code={code.upper()}")
    screens = selectors.game_screens(game)
    context = broadcast.seat_context(screens, seat)
    context["ws_path"] = f"/ws/games/{game.code}/"
    return render(request, "permitgame/play.html", context)
