"""What each audience is sent, in both wire formats: JSON messages and htmx HTML fragments.

``publish`` runs after a service commits: it reads the game once (``selectors.game_screens``),
renders the public part once for the whole game group, the governor's part once, and a small
private part per human lab (its own value and results), then hands them to ``realtime.send``.
``snapshot`` renders one seat's whole screen for a socket that (re)connects. The JSON messages
are the protocol of ``docs/protocol.md``; the HTML fragments are the partials of
``templates/permitgame/live.html``, each an element with an id and ``hx-swap-oob``.

Not here: deciding anything (``services``) or choosing what a role may see (``selectors``):
every message is built from one audience's view only, so a lab's messages cannot carry what
its view does not hold.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from django.template.loader import render_to_string
from django.utils.html import escape

from permitgame import charts, host_selectors, realtime, selectors
from permitgame.host_selectors import ConsoleSeat
from permitgame.models import Game, RoundRecord, Seat
from permitgame.realtime import Outgoing
from permitgame.selectors import (
    AuditResult,
    GameScreens,
    GovernorView,
    LabRound,
    LabView,
    MarketView,
    PublicView,
    SignalRow,
)

logger = logging.getLogger(__name__)

LIVE = "permitgame/live.html"
#: The instructor's fragments (console and projector pages).
HOST = "permitgame/console/live.html"

#: Fragments (element ids) per audience; each is ``{% partialdef <id> %}`` in ``LIVE``.
PUBLIC_FRAGMENTS = ("phase", "waiting", "players", "market", "round-results", "game-over")
GOVERNOR_FRAGMENTS = ("signals", "governor-action", "audit-results")
LAB_FRAGMENTS = ("you", "lab-action")
HOST_FRAGMENTS = ("host-status", "host-players", "host-seats", "host-standings")
#: Events after which the console's charts change (else they are not sent again).
_HOST_CHART_EVENTS = {"settled", "game_over"}

# Events after which every human lab's private part changes (else only the seats named).
_EVERY_LAB = {"phase", "market", "settled", "game_over"}


# ------------------------------------------------------------------------------ JSON messages


def _dump(message: Mapping[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"), allow_nan=False)


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def game_json(public: PublicView) -> dict[str, Any]:
    """Return the public position of the game (the body of a ``phase`` message)."""
    return {
        "code": public.code,
        "status": public.status,
        "round": public.round_no,
        "rounds": public.rounds,
        "phase": public.phase or None,
        "deadline": _iso(public.deadline),
        "seconds_left": public.seconds_left,
        "paused_remaining": public.paused_remaining,
        "waiting_for": list(public.waiting_for),
    }


def phase_message(public: PublicView) -> dict[str, Any]:
    """Return the ``phase`` message: the phase, its deadline and whom it waits for."""
    return {"type": "phase", **game_json(public)}


def waiting_message(public: PublicView) -> dict[str, Any]:
    """Return the ``waiting`` message: someone acted; whom the phase still waits for."""
    return {
        "type": "waiting",
        "round": public.round_no,
        "phase": public.phase or None,
        "waiting_for": list(public.waiting_for),
    }


def players_json(public: PublicView) -> list[dict[str, Any]]:
    """Return the seats as everyone may see them."""
    return [
        {
            "player_id": row.player_id,
            "role": row.role,
            "nickname": row.nickname,
            "human": row.human and not row.program,
            "program": bool(row.program),
            "bot_playing": row.bot_playing,
            "connected": row.connected,
        }
        for row in public.players
    ]


def rules_json(public: PublicView) -> dict[str, Any]:
    """Return the announced rules (field names as in MODEL.md and the scenario)."""
    rules = public.rules
    return {name: getattr(rules, name) for name in rules.__slots__}


def market_json(market: MarketView) -> dict[str, Any]:
    """Return a round's public market result."""
    return {
        "round": market.round_no,
        "price": market.price,
        "permits": market.permits,
        "winners": list(market.winners),
        "announced_high_prob": market.announced_high_prob,
        "p_eff": market.p_eff,
    }


def round_results_json(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """Return a round's public results: sim_core's metrics row (aggregates only)."""
    row = dict(metrics)
    return {"round": row.pop("round"), "metrics": row}


def game_over_message(public: PublicView) -> dict[str, Any]:
    """Return the ``game_over`` message with the final standings."""
    return {
        "type": "game_over",
        "rounds_played": len(public.results),
        "standings": [
            {
                "rank": s.rank,
                "player_id": s.player_id,
                "nickname": s.nickname,
                "score": s.score,
                "wealth": s.wealth,
            }
            for s in public.standings
        ],
        "governor_score": public.governor_score,
    }


def signals_json(
    round_no: int, rows: Sequence[SignalRow], governor: GovernorView
) -> dict[str, Any]:
    """Return the governor's ``signals`` message for a round."""
    return {
        "type": "signals",
        "round": round_no,
        "labs": [
            {"player_id": row.player_id, "signal": int(row.signal), "permit": row.permit}
            for row in rows
        ],
        "max_audits": governor.max_audits,
        "audit_cost": governor.audit_cost,
        "suggested_high_prob": governor.suggested_high_prob,
    }


def audit_json(result: AuditResult) -> dict[str, Any]:
    """Return the governor's ``audit`` message: whom it audited, whom it caught, welfare."""
    return {
        "type": "audit",
        "round": result.round_no,
        "audited": list(result.audited),
        "caught": list(result.caught),
        "audits": result.audits,
        "welfare": result.welfare,
    }


def you_json(lab: LabView) -> dict[str, Any]:
    """Return a lab's private ``you`` message: its value, wealth, moves of this round."""
    return {
        "type": "you",
        "player_id": lab.player_id,
        "round": lab.round_no,
        "phase": lab.phase or None,
        "value": lab.value,
        "net_value": lab.net_value,
        "risk_profile": lab.risk_profile,
        "wealth": lab.wealth,
        "score": lab.score,
        "rank": lab.rank,
        "p_eff": lab.p_eff,
        "punishment": lab.punishment,
        "expected_penalty": lab.expected_penalty,
        "bid": lab.bid,
        "bid_by": lab.bid_by,
        "won": lab.won,
        "price": lab.price,
        "run": lab.run,
        "run_by": lab.run_by,
        "owes_move": lab.owes_move,
        "bot_playing": lab.bot_playing,
    }


def your_results_json(row: LabRound) -> dict[str, Any]:
    """Return a lab's private results of one settled round."""
    return {
        "type": "your_results",
        "round": row.round_no,
        "value": row.value,
        "bid": row.bid,
        "won": row.won,
        "price_paid": row.price_paid,
        "ran": row.ran,
        "violated": row.violated,
        "audited": row.audited,
        "caught": row.caught,
        "payoff": row.payoff,
        "wealth": row.wealth,
        "score": row.score,
    }


def state_message(screens: GameScreens, seat: Seat) -> dict[str, Any]:
    """Return the ``state`` snapshot for one seat: everything it may see now."""
    public = screens.public
    message: dict[str, Any] = {
        "type": "state",
        "game": {**game_json(public), "title": public.title},
        "rules": rules_json(public),
        "players": players_json(public),
        "market": market_json(public.market) if public.market else None,
        "results": [round_results_json(row) for row in public.results],
        "standings": game_over_message(public)["standings"] if public.standings else None,
    }
    identity = {"player_id": seat.player_id, "role": seat.role, "nickname": seat.nickname}
    if seat.lab_index is not None:
        lab = screens.labs[seat.pk]
        you = {key: value for key, value in you_json(lab).items() if key != "type"}
        message["you"] = {**identity, **you}
        message["history"] = [
            {k: v for k, v in your_results_json(row).items() if k != "type"} for row in lab.history
        ]
    else:
        governor = screens.governor
        message["you"] = {
            **identity,
            "owes_move": governor.owes_move,
            "bot_playing": governor.bot_playing,
            "audits": list(governor.audits) if governor.audits is not None else None,
            "score": governor.score,
        }
        message["signals"] = (
            signals_json(governor.round_no, governor.signals, governor)
            if governor.signals is not None
            else None
        )
        message["audits"] = [audit_json(result) for result in governor.history]
    return message


def host_json(rows: Sequence[ConsoleSeat]) -> dict[str, Any]:
    """Return the console's ``seats`` message (presence and who has acted)."""
    return {
        "type": "seats",
        "seats": [
            {
                "player_id": row.player_id,
                "role": row.role,
                "nickname": row.nickname,
                "controller": row.controller,
                "connected": row.connected,
                "presence": row.presence,
                "acted": row.acted,
                "acted_by": row.acted_by,
                "latency_ms": row.latency_ms,
            }
            for row in rows
        ],
    }


# ------------------------------------------------------------------------------ HTML fragments


def _render(names: Iterable[str], context: Mapping[str, Any]) -> str:
    return "".join(render_to_string(f"{LIVE}#{name}", dict(context)) for name in names)


def public_html(public: PublicView) -> str:
    """Return the public fragments (rendered once per update for the whole game)."""
    return _render(PUBLIC_FRAGMENTS, {"public": public, "oob": True})


def governor_html(public: PublicView, governor: GovernorView) -> str:
    """Return the governor's fragments."""
    return _render(GOVERNOR_FRAGMENTS, {"public": public, "governor": governor, "oob": True})


def lab_html(public: PublicView, lab: LabView) -> str:
    """Return one lab's private fragments (small: its own panel and action)."""
    return _render(LAB_FRAGMENTS, {"public": public, "lab": lab, "oob": True})


def host_context(
    public: PublicView, seats: Sequence[ConsoleSeat], *, with_charts: bool
) -> dict[str, Any]:
    """Return the template context of the instructor's fragments (``HOST``)."""
    rules = public.rules
    context: dict[str, Any] = {
        "public": public,
        "code": public.code,
        "seats": seats,
        "joined": [row for row in seats if row.has_player],
        "joined_labs": sum(
            1 for row in seats if row.has_player and row.role == "lab" and not row.program
        ),
        "program_labs": sum(1 for row in seats if row.program and row.role == "lab"),
        "governor_seat": next((row for row in seats if row.role == "governor"), None),
    }
    if with_charts:
        context["charts"] = charts.round_charts(
            public.results,
            rounds=public.rounds,
            token_cap=rules.token_cap,
            lab_count=rules.lab_count,
        )
    return context


def host_html(public: PublicView, seats: Sequence[ConsoleSeat], *, with_charts: bool) -> str:
    """Return the instructor's fragments; charts only ``with_charts`` (they change per round)."""
    context = {**host_context(public, seats, with_charts=with_charts), "oob": True}
    names = HOST_FRAGMENTS + (("host-charts",) if with_charts else ())
    return "".join(render_to_string(f"{HOST}#{name}", context) for name in names)


def host_snapshot(game_id: int) -> tuple[int, str]:
    """Return (version, html) of the instructor's whole live state (a host socket connects)."""
    game = Game.objects.get(pk=game_id)
    public = selectors.game_screens(game).public
    return public.version, host_html(public, host_selectors.console_seats(game), with_charts=True)


def flash_html(message: str, *, error: bool) -> str:
    """Return the ``#flash`` fragment answering a command."""
    return _render(("flash",), {"message": message, "error": error, "oob": True})


def reload_html(message: str) -> str:
    """Return a ``#flash`` fragment that shows ``message`` and reloads the page (a new role)."""
    return (
        f'<div id="flash" hx-swap-oob="true" role="status" class="flash-ok">{escape(message)}'
        "<script>window.location.reload()</script></div>"
    )


def seat_context(screens: GameScreens, seat: Seat) -> dict[str, Any]:
    """Return the template context of one seat's whole screen."""
    context: dict[str, Any] = {"public": screens.public, "seat": seat}
    if seat.lab_index is not None:
        context["lab"] = screens.labs[seat.pk]
    else:
        context["governor"] = screens.governor
    return context


# ------------------------------------------------------------------------------ sending


def snapshot(seat: Seat, fmt: str) -> tuple[int, list[str]]:
    """Return (version, texts) of one seat's full screen in format ``"json"`` or ``"html"``."""
    game = Game.objects.get(pk=seat.game_id)
    screens = selectors.game_screens(game)
    version = screens.public.version
    if fmt == "json":
        return version, [_dump(state_message(screens, seat))]
    html = public_html(screens.public)
    if seat.lab_index is not None:
        html += lab_html(screens.public, screens.labs[seat.pk])
    else:
        html += governor_html(screens.public, screens.governor)
    return version, [html]


def _record(screens: GameScreens, round_no: int) -> RoundRecord | None:
    return next((r for r in screens.records if r.round_no == round_no), None)


def publish(
    *, game_id: int, version: int, events: Sequence[tuple[str, int]], seat_ids: set[int]
) -> None:
    """Send every audience what changed (an on_commit callback of the services).

    Args:
        game_id: the game.
        version: the version the service committed (the current one may be newer: what is
            sent is always the current state, with the current version).
        events: (kind, round) in the order they happened; kinds: phase, waiting, players,
            market, signals, settled, game_over.
        seat_ids: seats whose private part changed beyond what the events imply.
    """
    game = Game.objects.get(pk=game_id)
    screens = selectors.game_screens(game)
    public, governor = screens.public, screens.governor
    kinds = [kind for kind, _ in events]

    public_json: list[dict[str, Any]] = []
    governor_json: list[dict[str, Any]] = []
    results_for: list[int] = []
    if "players" in kinds:
        public_json.append({"type": "players", "players": players_json(public)})
    for kind, round_no in events:
        record = _record(screens, round_no)
        if kind == "market":
            market = selectors.record_market(game, record) if record is not None else public.market
            if market is not None:
                public_json.append({"type": "market", **market_json(market)})
        elif kind == "signals":
            rows = selectors.record_signals(game, record) if record else governor.signals
            if rows is not None:
                governor_json.append(signals_json(round_no, rows, governor))
        elif kind == "settled" and record is not None:
            public_json.append(
                {
                    "type": "round_results",
                    **round_results_json({"round": record.round_no, **record.metrics}),
                }
            )
            result = next(r for r in governor.history if r.round_no == round_no)
            governor_json.append(audit_json(result))
            results_for.append(round_no)
    if "phase" in kinds:
        public_json.append(phase_message(public))
    elif "waiting" in kinds:
        public_json.append(waiting_message(public))
    if "game_over" in kinds:
        public_json.append(game_over_message(public))

    version = public.version
    host_rows = host_selectors.console_seats(game)
    outgoing = [
        Outgoing(
            realtime.game_group(game_id),
            public_html(public),
            tuple(_dump(m) for m in public_json),
        ),
        Outgoing(
            realtime.governor_group(game_id),
            governor_html(public, governor),
            tuple(_dump(m) for m in governor_json),
        ),
        Outgoing(
            realtime.host_group(game_id),
            host_html(public, host_rows, with_charts=bool(_HOST_CHART_EVENTS.intersection(kinds))),
            (_dump(host_json(host_rows)),),
        ),
    ]
    every_lab = bool(_EVERY_LAB.intersection(kinds))
    human_seats = set(
        Seat.objects.filter(game_id=game_id, token__isnull=False).values_list("pk", flat=True)
    )
    for seat_id, lab in screens.labs.items():
        if seat_id not in human_seats or not (every_lab or seat_id in seat_ids):
            continue
        private = [your_results_json(row) for row in lab.history if row.round_no in results_for]
        private.append(you_json(lab))
        outgoing.append(
            Outgoing(
                realtime.seat_group(seat_id),
                lab_html(public, lab),
                tuple(_dump(m) for m in private),
            )
        )
    try:
        realtime.send(version, outgoing)
    except Exception:  # the change is committed: a dead channel layer must not undo it
        logger.exception("publishing game %s version %s failed", game_id, version)
