"""The instructor's pages: games list, create a game, console, projector, debrief, downloads.

Thin function views. Every view that touches a game first asks ``host_selectors.game_for_host``
(404 for an unknown code, 403 for another instructor's game; staff may run every game), then
hands a control to its service. A control answers an htmx request with the ``#console-flash``
fragment plus the live fragments out of band (the host socket pushes them too), and a plain
form post with a redirect to the console.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Callable
from typing import Any

import segno
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import AuthenticationForm
from django.http import Http404, HttpRequest, HttpResponse
from django.http.request import split_domain_port
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.middleware import HtmxDetails

from permitgame import broadcast, debrief, exports, host_selectors, selectors, services, throttle
from permitgame.console.forms import (
    PRESET_DESCRIPTIONS,
    ExtendForm,
    GameSetupForm,
    GovernorForm,
    HandForm,
    RemoveBotForm,
    initial_from,
)
from permitgame.console.preview import setup_preview
from permitgame.errors import (
    BadRequest,
    GameError,
    GameOver,
    NotYourGame,
    RateLimited,
    UnknownGame,
)
from permitgame.models import DEFAULT_DURATIONS, DebriefCache, Game, Seat, lab_label
from sim_core import PRESETS, load_preset, parse_scenario


class HtmxHttpRequest(HttpRequest):
    """A request as django-htmx's middleware leaves it (for the type checker)."""

    htmx: HtmxDetails


LIVE = "permitgame/console/live.html"
DEBRIEF = "permitgame/console/debrief.html"

CHOOSE_GOVERNOR = "Choose a player or a bot."
EXTEND_BY = "Extend by a whole number of seconds (1 to 3600)."
HAND_HOW = "Say whether the seat goes to a bot or back to its player."
ALREADY_OVER = "The game was already over."

#: Controls without input: action -> (service, what the flash says when it worked).
CONTROLS: dict[str, tuple[Callable[..., Any], str]] = {
    "start": (services.game_start, "The game has started."),
    "pause": (services.game_pause, "Paused: the clock has stopped."),
    "resume": (services.game_resume, "Resumed."),
    "advance": (services.game_advance_now, "Moved on to the next phase."),
    "end": (services.game_end, "The game is over."),
}


def _host_game(request: HttpRequest, code: str) -> Game:
    """Return the game of ``code`` if the user may run it (``refusing`` answers otherwise)."""
    return host_selectors.game_for_host(request.user, code)


View = Callable[..., HttpResponse]


def refusing(view: View) -> View:
    """Answer another instructor's game (403) or anything not found (404) with a page saying so.

    The page names what was refused (Django's own 403 and 404 pages say nothing), and nothing
    has been changed: every refusal happens before a service is called.
    """

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return view(request, *args, **kwargs)
        except (UnknownGame, NotYourGame) as error:
            message, status = error.message, error.status
        except Http404 as error:
            message, status = (str(error.args[0]) if error.args else "Not found."), 404
        return render(
            request,
            "permitgame/console/refused.html",
            {"message": message, "status": status},
            status=status,
        )

    return wrapper


def join_url(request: HttpRequest, game: Game) -> str:
    """Return the address students open (or scan) to join ``game``."""
    return request.build_absolute_uri(reverse("join-code", args=[game.code]))


def join_is_loopback(request: HttpRequest) -> bool:
    """Whether the join address names this machine's loopback, which no phone can open."""
    domain, _ = split_domain_port(request.get_host())
    if domain == "localhost":
        return True
    try:
        return ipaddress.ip_address(domain.strip("[]")).is_loopback
    except ValueError:  # a host name
        return False


def qr_svg(url: str) -> str:
    """Return an inline SVG QR code of ``url`` (drawn on the server, sized by CSS)."""
    return str(
        segno.make(url, error="m").svg_inline(
            scale=1, border=2, omitsize=True, dark="#000000", light="#ffffff", svgclass="qr"
        )
    )


def _live_context(game: Game) -> dict[str, Any]:
    public = selectors.game_screens(game).public
    seats = host_selectors.console_seats(game)
    return broadcast.host_context(public, seats, with_charts=True)


def _answer(
    request: HtmxHttpRequest, game: Game, message: str, *, error: GameError | None = None
) -> HttpResponse:
    """Answer a control: the flash and fresh live fragments (htmx), or a redirect."""
    if not request.htmx:
        if error is not None:
            messages.error(request, message)
        else:
            messages.success(request, message)
        return redirect("console:game", code=game.code)
    game.refresh_from_db()
    public = selectors.game_screens(game).public
    seats = host_selectors.console_seats(game)
    flash = render_to_string(
        f"{LIVE}#console-flash", {"message": message, "error": error is not None}, request
    )
    html = str(flash) + broadcast.host_html(public, seats, with_charts=False)
    return HttpResponse(html, status=error.status if error is not None else 200)


# ------------------------------------------------------------------------------ lists and forms


@login_required
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    games = host_selectors.host_games(request.user)
    return render(
        request,
        "permitgame/console/home.html",
        {
            "games": games,
            "presets": host_selectors.host_presets(request.user),
            "show_owner": request.user.is_staff,
            "nav": "home",
        },
    )


def _form_initial(request: HttpRequest, presets: list[Any]) -> dict[str, Any]:
    """Return the form filled from the chosen preset, keeping a title typed before choosing."""
    initial = _preset_initial(request, presets)
    initial["title"] = request.GET.get("title", "")[:100]
    return initial


def _preset_initial(request: HttpRequest, presets: list[Any]) -> dict[str, Any]:
    choice = request.GET.get("preset", "targeted_audit")
    saved = {f"saved:{p.pk}": p for p in presets}
    if choice in saved:
        preset = saved[choice]
        scenario = parse_scenario(preset.scenario)
        return initial_from(
            scenario,
            human_governor=preset.human_governor,
            durations=preset.durations,
            preset=choice,
        )
    if choice not in PRESETS:
        choice = "targeted_audit"
    return initial_from(
        load_preset(choice),
        human_governor=False,
        durations=dict(DEFAULT_DURATIONS),
        preset=choice,
    )


@login_required
@require_http_methods(["GET", "POST"])
def new_game(request: HtmxHttpRequest) -> HttpResponse:
    presets = host_selectors.host_presets(request.user)
    if request.method == "POST":
        form = GameSetupForm(request.POST, presets=presets)
        saving = request.POST.get("action") == "save"
        if form.is_valid():
            assert form.scenario is not None
            try:
                if saving:
                    preset = services.preset_save(
                        owner=request.user,
                        name=form.cleaned_data.get("save_as"),
                        scenario=form.scenario,
                        human_governor=form.human_governor(),
                        durations=form.durations(),
                    )
                    messages.success(request, f"Saved the preset “{preset.name}”.")
                    return redirect(f"{reverse('console:new')}?preset=saved:{preset.pk}")
                game = services.game_create(
                    scenario=form.scenario,
                    human_labs=form.scenario.labs.count,  # every lab seat is open to students
                    human_governor=form.human_governor(),
                    durations=form.durations(),
                    owner=request.user,
                    title=form.cleaned_data.get("title", ""),
                    coaching=form.coaching_level(),
                    ask_belief=bool(form.cleaned_data.get("ask_belief")),
                    live_standings=bool(form.cleaned_data.get("live_standings")),
                )
            except GameError as error:
                form.add_error("save_as" if saving else None, error.message)
            except ValueError as error:
                form.add_error(None, str(error))
            else:
                return redirect("console:game", code=game.code)
        status = 400
    else:
        form = GameSetupForm(initial=_form_initial(request, presets), presets=presets)
        status = 200
    template = "permitgame/console/new.html"
    if request.htmx and request.method == "GET":
        template += "#setup-form"
    return render(
        request,
        template,
        {
            "form": form,
            "preset_descriptions": PRESET_DESCRIPTIONS,
            "presets": presets,
            "nav": "new",
        },
        status=status,
    )


@login_required
@require_POST
def new_game_preview(request: HttpRequest) -> HttpResponse:
    """The live preview beside the create form: what sim_core expects of these settings.

    Posted by htmx as the fields change; answers the ``#setup-preview`` fragment (the form's
    messages when a value is not allowed yet). Nothing is stored.
    """
    presets = host_selectors.host_presets(request.user)
    form = GameSetupForm(request.POST, presets=presets)
    preview = None
    if form.is_valid():
        assert form.scenario is not None
        preview = setup_preview(form.scenario, human_governor=form.human_governor())
    return render(
        request,
        "permitgame/console/new.html#setup-preview",
        {"form": form, "preview": preview},
    )


@login_required
@require_POST
def preset_delete(request: HttpRequest, preset_id: int) -> HttpResponse:
    if services.preset_delete(owner=request.user, preset_id=preset_id):
        messages.success(request, "Preset deleted.")
    else:
        raise Http404("No such preset of yours.")
    return redirect("console:home")


# ------------------------------------------------------------------------------ console, projector


@login_required
@refusing
@require_GET
def game_console(request: HttpRequest, code: str) -> HttpResponse:
    game = _host_game(request, code)
    context = _live_context(game)
    context.update(
        {
            "game": game,
            "join_url": join_url(request, game),
            "join_loopback": join_is_loopback(request),
            "ws_path": f"/ws/host/{game.code}/",
        }
    )
    return render(request, "permitgame/console/game.html", context)


@login_required
@refusing
@require_GET
def projector(request: HttpRequest, code: str) -> HttpResponse:
    game = _host_game(request, code)
    url = join_url(request, game)
    context = _live_context(game)
    context.update(
        {
            "game": game,
            "join_url": url,
            "join_loopback": join_is_loopback(request),
            "qr": qr_svg(url),
            "ws_path": f"/ws/host/{game.code}/",
        }
    )
    return render(request, "permitgame/console/projector.html", context)


@login_required
@refusing
@require_POST
def control(request: HtmxHttpRequest, code: str, action: str) -> HttpResponse:
    game = _host_game(request, code)
    if action == "extend":
        form = ExtendForm(request.POST)
        if not form.is_valid():
            return _answer(request, game, EXTEND_BY, error=BadRequest(EXTEND_BY))
        seconds = form.cleaned_data["seconds"]
        try:
            services.game_extend(game=game, seconds=seconds)
        except GameError as error:
            return _answer(request, game, error.message, error=error)
        return _answer(request, game, f"The timer has {seconds} s more.")
    if action not in CONTROLS:
        raise Http404(f"No control {action!r}.")
    service, done = CONTROLS[action]
    try:
        after = service(game=game)
    except GameError as error:
        return _answer(request, game, error.message, error=error)
    if after.version == game.version:  # the service found nothing to do (ending an ended game)
        return _answer(request, game, ALREADY_OVER, error=GameOver(ALREADY_OVER))
    return _answer(request, game, done)


def _seat_of(game: Game, seat_id: int | None) -> Seat | None:
    if seat_id is None:
        return None
    seat = Seat.objects.filter(game=game, pk=seat_id).first()
    if seat is None:
        raise Http404("No such seat in this game.")
    return seat


@login_required
@refusing
@require_POST
def add_bot(request: HtmxHttpRequest, code: str) -> HttpResponse:
    game = _host_game(request, code)
    try:
        seat = services.game_add_bot(game=game)
    except GameError as error:
        return _answer(request, game, error.message, error=error)
    return _answer(request, game, f"Added {lab_label(seat.player_id)}, played by a bot.")


@login_required
@refusing
@require_POST
def remove_bot(request: HtmxHttpRequest, code: str) -> HttpResponse:
    game = _host_game(request, code)
    form = RemoveBotForm(request.POST)
    seat_id = form.cleaned_data.get("seat") if form.is_valid() else None
    try:
        services.game_remove_bot(game=game, seat=_seat_of(game, seat_id))
    except GameError as error:
        return _answer(request, game, error.message, error=error)
    return _answer(request, game, "Removed a lab seat.")


@login_required
@refusing
@require_POST
def governor(request: HtmxHttpRequest, code: str) -> HttpResponse:
    game = _host_game(request, code)
    form = GovernorForm(request.POST)
    if not form.is_valid():
        return _answer(request, game, CHOOSE_GOVERNOR, error=BadRequest(CHOOSE_GOVERNOR))
    seat = _seat_of(game, form.cleaned_data["seat"])
    try:
        services.game_set_governor(game=game, seat=seat)
    except GameError as error:
        return _answer(request, game, error.message, error=error)
    if seat is None:
        return _answer(request, game, "A bot governs this game.")
    return _answer(request, game, f"{seat.nickname} is the governor.")


@login_required
@refusing
@require_POST
def hand(request: HtmxHttpRequest, code: str, seat_id: int) -> HttpResponse:
    game = _host_game(request, code)
    seat = _seat_of(game, seat_id)
    assert seat is not None
    form = HandForm(request.POST)
    if not form.is_valid():
        return _answer(request, game, HAND_HOW, error=BadRequest(HAND_HOW))
    to_bot = form.cleaned_data["to_bot"]
    label = selectors.seat_label(seat)
    if seat.has_player and seat.handed_to_bot == to_bot:
        done = (
            f"A bot already plays {label}." if to_bot else f"{seat.nickname} already plays {label}."
        )
        return _answer(request, game, done)
    try:
        services.seat_hand_to_bot(seat=seat, to_bot=to_bot)
    except GameError as error:
        return _answer(request, game, error.message, error=error)
    if to_bot:
        return _answer(request, game, f"A bot plays {label} now.")
    return _answer(request, game, f"{label} goes back to {seat.nickname} from the next phase.")


# ------------------------------------------------------------------------------ the debrief


def _debrief_part_context(
    game: Game, kind: str, cache: DebriefCache, metric: str
) -> dict[str, Any]:
    context: dict[str, Any] = {"game": game, "code": game.code, "kind": kind, "cache": cache}
    if cache.status != DebriefCache.Status.DONE or cache.result is None:
        return context
    if kind == debrief.HEATMAP:
        if metric not in debrief.HEATMAP_METRICS:
            metric = debrief.HEATMAP_METRICS[0]
        seen = debrief.observed(game)
        context.update(
            {
                "chart": debrief.heatmap_chart(game, cache.result, metric),
                "metric": metric,
                "metrics": debrief.HEATMAP_METRICS,
                "metric_labels": debrief.METRIC_LABELS,
                "cell": debrief.heatmap_cell(cache.result, seen.punishment, seen.p_eff),
                "observed": seen,
                "result": cache.result,
            }
        )
    else:
        chart, comparisons = debrief.classes_comparison(game, cache.result)
        context.update({"chart": chart, "comparisons": comparisons, "result": cache.result})
    return context


@login_required
@refusing
@require_GET
def debrief_page(request: HttpRequest, code: str) -> HttpResponse:
    game = _host_game(request, code)
    summary = debrief.debrief_summary(game)
    parts = {}
    if summary.observed.rounds_played:
        for kind in debrief.KINDS:
            cache = debrief.ensure(game, kind)
            context = _debrief_part_context(game, kind, cache, debrief.HEATMAP_METRICS[0])
            parts[kind] = render_to_string(f"{DEBRIEF}#debrief-part", context, request)
    return render(
        request,
        DEBRIEF,
        {"game": game, "code": game.code, "summary": summary, "parts": parts},
    )


@login_required
@refusing
@require_http_methods(["GET", "POST"])
def debrief_part(request: HttpRequest, code: str, kind: str) -> HttpResponse:
    """One expensive part: its result when done, else its progress (polled by htmx)."""
    game = _host_game(request, code)
    if kind not in debrief.KINDS:
        raise Http404(f"No debrief part {kind!r}.")
    cache = debrief.ensure(game, kind, retry=request.method == "POST")
    metric = request.GET.get("metric", debrief.HEATMAP_METRICS[0])
    context = _debrief_part_context(game, kind, cache, metric)
    return render(request, f"{DEBRIEF}#debrief-part", context)


# ------------------------------------------------------------------------------ downloads


def _csv_response(text: str, filename: str) -> HttpResponse:
    response = HttpResponse(text, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def _cached_result(game: Game, kind: str) -> dict[str, Any]:
    cache = DebriefCache.objects.filter(
        game=game,
        kind=kind,
        key=debrief.cache_key(game, kind),
        status=DebriefCache.Status.DONE,
    ).first()
    if cache is None or cache.result is None:
        raise Http404("Not computed yet: open the debrief first.")
    return dict(cache.result)


@login_required
@refusing
@require_GET
def chart_csv(request: HttpRequest, code: str, name: str) -> HttpResponse:
    """The data behind one chart of the console or the debrief."""
    game = _host_game(request, code)
    filename = f"{game.code}-{name}.csv"
    if name.startswith("heatmap"):
        metric = name.removeprefix("heatmap-") if name != "heatmap" else debrief.HEATMAP_METRICS[0]
        if metric not in debrief.HEATMAP_METRICS:
            raise Http404(f"No chart {name!r}.")
        chart = debrief.heatmap_chart(game, _cached_result(game, debrief.HEATMAP), metric)
        return _csv_response(chart.csv, filename)
    if name == "classes":
        return _csv_response(debrief.classes_csv(_cached_result(game, debrief.CLASSES)), filename)
    summary = debrief.debrief_summary(game)
    found = [c for c in summary.charts if c.name == name]
    if name == "classes-compared" and summary.others_chart is not None:
        found = [summary.others_chart]
    if not found:
        raise Http404(f"No chart {name!r}.")
    return _csv_response(found[0].csv, filename)


@login_required
@refusing
@require_GET
def export_csv(request: HttpRequest, code: str, name: str) -> HttpResponse:
    """Whole tables: every round's metrics, the leaderboard, the other classes, and the research
    exports (``labs``: every lab-round with who moved; ``log``: the event log; ``metrics``)."""
    game = _host_game(request, code)
    if name in exports.TABLES:  # the research tables: every lab-round, the log
        return _csv_response(exports.table_csv(game, name), f"{game.code}-{name}.csv")
    summary = debrief.debrief_summary(game)
    if name == "rounds":
        text = exports.csv_text(summary.observed.rows)
    elif name == "leaderboard":
        text = exports.csv_text(
            (
                {"rank": r.rank, "lab": r.label, "nickname": r.nickname, "human": int(r.human),
                 "score": r.score, "wealth": r.wealth}
                for r in summary.leaderboard
            ),
            LEADERBOARD_COLUMNS,
        )  # fmt: skip
    elif name == "classes-compared":
        text = exports.csv_text(
            (
                {"code": o.code, "title": o.title, "date": o.date, "rounds": o.rounds,
                 "compliance_rate": o.compliance_rate, "price": o.price,
                 "violations": o.violations, "caught": o.caught, "this_class": int(o.this)}
                for o in summary.others
            ),
            CLASSES_COLUMNS,
        )  # fmt: skip
    else:
        raise Http404(f"No table {name!r}.")
    return _csv_response(text, f"{game.code}-{name}.csv")


LEADERBOARD_COLUMNS = ("rank", "lab", "nickname", "human", "score", "wealth")
CLASSES_COLUMNS = ("code", "title", "date", "rounds", "compliance_rate", "price", "violations",
                   "caught", "this_class")  # fmt: skip


# ------------------------------------------------------------------------------ login

LOCKED_OUT = (
    "Too many wrong passwords for this username from your network; try again in {minutes} min."
)


class LoginView(auth_views.LoginView):
    """Django's login, with at most ``throttle`` "login" attempts per client address.

    django-axes (settings.py) also locks a username out at one address after a few wrong
    passwords; both answer 429 on this page with ``Retry-After``.
    """

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            throttle.take("login", throttle.client_address(request))
        except RateLimited as error:
            context = self.get_context_data(form=self.get_form(), limited=error.message)
            return throttle.retry_after(self.render_to_response(context, status=429), error)
        return super().post(request, *args, **kwargs)


def login_locked_out(
    request: HttpRequest, response: HttpResponse | None = None, credentials: Any = None
) -> HttpResponse:
    """django-axes' answer to a locked-out login (``AXES_LOCKOUT_CALLABLE``)."""
    from django.conf import settings

    seconds = int(settings.AXES_COOLOFF_TIME.total_seconds())
    message = LOCKED_OUT.format(minutes=max(1, seconds // 60))
    context = {"form": AuthenticationForm(request), "limited": message}
    answer = render(request, "registration/login.html", context, status=429)
    return throttle.retry_after(answer, RateLimited(message, retry_after=seconds))
