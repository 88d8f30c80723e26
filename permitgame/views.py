"""Thin function views: a full page, or a partial when ``request.htmx``.

Pages: home; the players' pages: join (a code and a nickname), rejoin (move a seat to this
device with its rejoin code) and play (a lab's or the governor's live screen). The JSON API of
docs/protocol.md: ``POST /api/games/<code>/join``, ``POST /api/games/<code>/rejoin`` and
``GET /api/games/<code>``.
"""

import json
import secrets
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from permitgame import broadcast, selectors, services, throttle
from permitgame.errors import (
    BadNickname,
    BadRequest,
    GameError,
    GameFull,
    GameOver,
    RateLimited,
    UnknownGame,
    UnknownPlayer,
    WrongRole,
)
from permitgame.forms import JOIN_KEY_MAX, JOIN_KEY_MIN, JoinForm, form_errors
from permitgame.models import Game, Seat, Status


def home(request: HttpRequest) -> HttpResponse:
    return render(request, "permitgame/home.html")


# ------------------------------------------------------------------------------ JSON API


def _error(error: GameError) -> JsonResponse:
    response = JsonResponse(
        {"type": "error", "code": error.code, "message": error.message}, status=error.status
    )
    if isinstance(error, RateLimited):
        throttle.retry_after(response, error)
    return response


def _lookup_game(request: HttpRequest, code: str) -> Game:
    """Return the game with that join code; codes that name no game are counted per address.

    Raises:
        RateLimited: this address named too many unknown codes lately (permitgame/throttle.py).
        UnknownGame: no such game.
    """
    address = throttle.client_address(request)
    throttle.check("code_miss", address)
    try:
        return selectors.game_by_code(code)
    except UnknownGame:
        throttle.hit("code_miss", address)
        raise


def _rejoin_seat(request: HttpRequest, game: Game, rejoin_code: str) -> Seat:
    """Return the seat with that rejoin code; wrong codes are counted per address and game.

    Raises:
        RateLimited: too many wrong rejoin codes lately, from this address or for this game.
        UnknownPlayer: no seat has that code.
    """
    address = throttle.client_address(request)
    throttle.check("rejoin_miss", address)
    throttle.check("rejoin_miss_game", str(game.pk), message=throttle.TOO_MANY_REJOINS)
    try:
        return selectors.seat_by_rejoin_code(game, rejoin_code)
    except UnknownPlayer:
        throttle.hit("rejoin_miss", address)
        throttle.hit("rejoin_miss_game", str(game.pk))
        raise


def _json_body(request: HttpRequest) -> dict[str, Any]:
    try:
        body = json.loads(request.body or b"{}")
    except (ValueError, RecursionError):
        # RecursionError: JSON nested deeper than the parser goes (no request needs depth).
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


#: The keys of a program's declaration in a JSON join, and their longest lengths.
CLIENT_KEYS = {"kind": 8, "name": 60, "version": 40}
CLIENT_SHAPE = 'Send "client": {"kind": "program", "name": "...", "version": "..."}.'


def _client_of(body: dict[str, Any]) -> dict[str, str] | None:
    """Return the joiner's declaration (``client``), checked strictly, or None without one.

    A program declares itself with ``{"kind": "program", "name": ..., "version": ...}``: every
    key present, each a non-empty printable string, no other key.
    """
    if "client" not in body:
        return None
    client = body["client"]
    if not isinstance(client, dict):
        raise BadRequest(f"client: must be an object. {CLIENT_SHAPE}")
    unknown = sorted(set(client) - set(CLIENT_KEYS))
    if unknown:
        raise BadRequest(f"client.{unknown[0]}: unknown key. {CLIENT_SHAPE}")
    cleaned = {}
    for key, limit in CLIENT_KEYS.items():
        value = client.get(key)
        if not isinstance(value, str) or not value.strip():
            raise BadRequest(f"client.{key}: must be a non-empty string. {CLIENT_SHAPE}")
        value = value.strip()
        if len(value) > limit or not value.isprintable():
            raise BadRequest(f"client.{key}: at most {limit} printable characters.")
        cleaned[key] = value
    if cleaned["kind"] != "program":
        raise BadRequest(f'client.kind: must be "program". {CLIENT_SHAPE}')
    return cleaned


@csrf_exempt  # programs authenticate with the token they get here, not with cookies
@require_POST
def api_join(request: HttpRequest, code: str) -> JsonResponse:
    try:
        game = _lookup_game(request, code)
        throttle.take("join", f"{throttle.client_address(request)}:{game.pk}")
        body = _json_body(request)
        client = _client_of(body)
        form = JoinForm({key: value for key, value in body.items() if key != "client"})
        if not form.is_valid():
            if "nickname" in form.errors:
                raise BadNickname(form_errors(form))
            raise BadRequest(form_errors(form))
        seat = services.seat_join(
            game=game,
            nickname=form.cleaned_data["nickname"],
            role=form.cleaned_data["role"] or None,
            join_key=form.cleaned_data["join_key"] or None,
            client=client,
        )
    except GameError as error:
        return _error(error)
    return JsonResponse(_seat_json(request, seat, seat.game), status=201)


@csrf_exempt
@require_POST
def api_rejoin(request: HttpRequest, code: str) -> JsonResponse:
    try:
        game = _lookup_game(request, code)
        rejoin_code = _json_body(request).get("rejoin_code")
        if not isinstance(rejoin_code, str):
            raise BadRequest('Send {"rejoin_code": "..."}.')
        seat = _rejoin_seat(request, game, rejoin_code)
        services.seat_rejoin(seat=seat, via="api")
    except GameError as error:
        return _error(error)
    return JsonResponse(_seat_json(request, seat, game))


@require_GET
def api_game(request: HttpRequest, code: str) -> JsonResponse:
    try:
        game = _lookup_game(request, code)
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


#: The join's checks, for the experiments' JSON entry (permitgame.experiments.api).
json_body = _json_body
client_of = _client_of
seat_json = _seat_json


# ------------------------------------------------------------------------------ players' pages

#: What the join page says about a game's status, after its code.
JOIN_STATUS = {
    Status.LOBBY: "waiting to start",
    Status.RUNNING: "in progress",
    Status.PAUSED: "paused",
    Status.FINISHED: "over",
}
#: Added when a player may still join a game that has started.
JOIN_LATE = ": you take over a bot's lab"
CODE_MISSING = "Enter the join code shown in class."
JOIN_GAME_OVER = "Game {code} is over; ask for the code of the next game."
JOIN_GAME_FULL = "Every seat of game {code} is taken; ask your instructor for a seat."
REJOIN_MISSING = "Enter the rejoin code shown on your other device."
#: Errors that are about the join code rather than the nickname.
_CODE_ERRORS = (UnknownGame, GameFull, GameOver, WrongRole)


def _remember_seat(request: HttpRequest, game: Game, seat: Seat) -> None:
    """Keep the seat's token in the session: this browser holds the seat from now on."""
    tokens = dict(request.session.get(selectors.SESSION_TOKENS, {}))
    tokens[game.code] = seat.token
    request.session[selectors.SESSION_TOKENS] = tokens


def _session_seat(request: HttpRequest, game: Game) -> Seat | None:
    try:
        return selectors.seat_from_session(game, request.session)
    except GameError:
        return None


def _code_error(error: GameError, code: str) -> str:
    if isinstance(error, GameOver):
        return JOIN_GAME_OVER.format(code=code)
    if isinstance(error, GameFull):
        return JOIN_GAME_FULL.format(code=code)
    return error.message


def _posted_join_key(request: HttpRequest) -> str:
    """Return the join form's key if it is one the form could have made (16 to 64 characters)."""
    key = request.POST.get("join_key", "")
    return key if JOIN_KEY_MIN <= len(key) <= JOIN_KEY_MAX else ""


@require_http_methods(["GET", "POST"])
def join(request: HttpRequest, code: str = "") -> HttpResponse:
    """The join page: a join code (filled in from a link) and a nickname.

    A browser whose session already holds a seat of the game goes straight to its screen.
    """
    source = request.POST if request.method == "POST" else request.GET
    code = source.get("code", code).strip().upper()
    context: dict[str, Any] = {
        "code": code,
        "nickname": request.POST.get("nickname", ""),
        # One key per join form: resending the form (its answer lost on a bad network) finds
        # the seat the first submission took instead of "nickname taken".
        "join_key": _posted_join_key(request) or secrets.token_urlsafe(16),
        "code_error": "",
        "nickname_error": "",
        "rejoin_error": "",
        "game_info": None,
    }
    game = None
    limited: RateLimited | None = None
    if code:
        try:
            game = _lookup_game(request, code)
        except RateLimited as error:
            context["code_error"] = error.message
            limited = error
        except GameError as error:
            context["code_error"] = error.message
    elif request.method == "POST":
        context["code_error"] = CODE_MISSING
    if game is not None:
        if _session_seat(request, game) is not None:
            return redirect(reverse("play", args=[game.code]))
        context["game_info"] = {
            "code": game.code,
            "title": game.title,
            "status": JOIN_STATUS.get(Status(game.status), game.status),
        }
        if game.status == Status.FINISHED:
            context["code_error"] = JOIN_GAME_OVER.format(code=game.code)
        elif request.method == "POST":
            try:
                throttle.take("join", f"{throttle.client_address(request)}:{game.pk}")
                seat = services.seat_join(
                    game=game,
                    nickname=context["nickname"],
                    join_key=context["join_key"],
                )
            except RateLimited as error:
                context["code_error"] = error.message
                limited = error
            except _CODE_ERRORS as error:
                context["code_error"] = _code_error(error, game.code)
            except GameError as error:
                context["nickname_error"] = error.message
            else:
                _remember_seat(request, game, seat)
                return redirect(reverse("play", args=[game.code]))
        if game.status in (Status.RUNNING, Status.PAUSED) and not context["code_error"]:
            context["game_info"]["status"] += JOIN_LATE
    failed = request.method == "POST" and (context["code_error"] or context["nickname_error"])
    if limited is not None:
        response = render(request, "permitgame/join.html", context, status=429)
        return throttle.retry_after(response, limited)
    return render(request, "permitgame/join.html", context, status=400 if failed else 200)


@require_POST
def rejoin(request: HttpRequest) -> HttpResponse:
    """Move a seat to this browser with the game's code and the seat's rejoin code."""
    code = request.POST.get("code", "").strip().upper()
    rejoin_code = request.POST.get("rejoin_code", "").strip().upper()
    context: dict[str, Any] = {
        "code": code,
        "rejoin_code": rejoin_code,
        "rejoin_open": True,
        "game_info": None,
    }
    try:
        if not code:
            raise BadRequest(CODE_MISSING)
        if not rejoin_code:
            raise BadRequest(REJOIN_MISSING)
        game = _lookup_game(request, code)
        seat = _rejoin_seat(request, game, rejoin_code)
        services.seat_rejoin(seat=seat, via="page")
    except GameError as error:
        context["rejoin_error"] = error.message
        limited = isinstance(error, RateLimited)
        response = render(request, "permitgame/join.html", context, status=429 if limited else 400)
        if isinstance(error, RateLimited):
            throttle.retry_after(response, error)
        return response
    _remember_seat(request, game, seat)
    return redirect(reverse("play", args=[game.code]))


@require_GET
def play(request: HttpRequest, code: str) -> HttpResponse:
    """A seat's screen (lab or governor); without a seat in the session, the join page."""
    try:
        game = selectors.game_by_code(code)
        seat = selectors.seat_from_session(game, request.session)
    except GameError:
        return redirect(f"{reverse('join')}?code={code.upper()}")
    screens = selectors.game_screens(game)
    context = broadcast.seat_context(screens, seat)
    context["ws_path"] = f"/ws/games/{game.code}/"
    return render(request, "permitgame/play.html", context)
