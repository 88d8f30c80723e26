"""What each audience is sent, in both wire formats: JSON messages and htmx HTML fragments.

``publish`` runs after a service commits: it reads the game once (``selectors.game_screens``),
renders the public part once for the whole room, the governor's part once, and a small
private part per human lab (its own value and results), then hands them to ``realtime.send`` as
one message for the room (``realtime.RoomEvent``).
``snapshot`` renders one seat's whole screen for a socket that (re)connects. The JSON messages
are the protocol of ``docs/protocol.md``; the HTML fragments are the partials of
``templates/permitgame/live.html``, each an element with an id and ``hx-swap-oob``.

Not here: deciding anything (``services``) or choosing what a role may see (``selectors``):
every message is built from one audience's view only, so a lab's messages cannot carry what
its view does not hold.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import close_old_connections
from django.db.models import Count, Exists, OuterRef, Q
from django.template.loader import get_template
from django.urls import reverse
from django.utils.html import escape

from permitgame import bridge, charts, clock, host_selectors, realtime, selectors
from permitgame.host_selectors import ConsoleSeat
from permitgame.models import MOVE_ACTIONS, Connection, Game, Move, RoundRecord, Seat, Status
from permitgame.selectors import (
    AuditResult,
    GameScreens,
    GovernorView,
    LabRound,
    LabView,
    MarketView,
    PublicView,
    SignalRow,
    Standing,
)
from sim_core import Role

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


# ------------------------------------------------------------------------------ JSON messages


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def game_json(public: PublicView, *, listed: bool = True) -> dict[str, Any]:
    """Return the public position of the game (the body of a ``phase`` message).

    ``waiting`` counts the seats the phase waits for (as the players may see them);
    ``waiting_for`` names them, unless ``listed`` is false (a lecture hall's labs, see
    ``phase_message``): then it names only the governor (0), if it is waited for.
    """
    shown = public.waiting_shown()
    return {
        "code": public.code,
        "status": public.status,
        "round": public.round_no,
        "rounds": public.rounds,
        "phase": public.phase or None,
        "started": _iso(public.started) if public.phase else None,
        "deadline": _iso(public.deadline),
        "seconds_left": public.seconds_left,
        "paused_remaining": public.paused_remaining,
        "waiting": len(shown),
        "waiting_for": list(shown) if listed else [player for player in shown if player == 0],
    }


def phase_message(public: PublicView) -> dict[str, Any]:
    """Return the ``phase`` message: the phase, its deadline and whom it waits for.

    One text for the whole room. In a room of more than ``LIST_LIMIT`` seats it names only the
    governor among those waited for, and counts them all: N labs are not each sent a list of N
    at every phase (a lab reads whether it owes a move in its own ``you``).
    """
    return {"type": "phase", **game_json(public, listed=not in_hall(public))}


def players_json(public: PublicView) -> list[dict[str, Any]]:
    """Return the seats as everyone may see them.

    With the bots hidden, only each seat's id and role: no nickname (a bot has none), and
    ``human``, ``program``, ``bot_playing`` and ``connected`` are null (a bot is never online).
    """
    if not public.bots_disclosed:
        hidden = {"nickname": "", "human": None, "program": None}
        return [
            {
                "player_id": row.player_id,
                "role": row.role,
                **hidden,
                "bot_playing": None,
                "connected": None,
            }
            for row in public.players
        ]
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


def market_json(market: MarketView, *, listed: bool = True) -> dict[str, Any]:
    """Return a round's public market result.

    ``listed``: with the holders' ids; else (a lecture hall, ``in_hall``) ``winners`` is null
    and ``permits`` counts them: N labs are not each sent the list of a third of N (a lab reads
    whether it holds one in its own ``you``).
    """
    return {
        "round": market.round_no,
        "price": market.price,
        "permits": market.permits,
        "winners": list(market.winners) if listed else None,
        "announced_high_prob": market.announced_high_prob,
        "p_eff": market.p_eff,
        # MODEL.md §3b: traded permits; price null when nothing traded, winners hold after trading
        **({"trades": market.trades} if market.trades is not None else {}),
    }


def round_results_json(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """Return a round's public results: sim_core's metrics row (aggregates only)."""
    row = dict(metrics)
    return {"round": row.pop("round"), "metrics": row}


def in_hall(public: PublicView) -> bool:
    """Whether the room has more than ``LIST_LIMIT`` seats: a lecture hall, whose labs are sent
    counts and short lists where a class's get the room's lists (N lists of N)."""
    seats = public.counts.seats if public.counts is not None else len(public.players)
    return seats > LIST_LIMIT


def hall_context(public: PublicView) -> dict[str, Any]:
    """Return what the players' templates need to show a lecture hall its counts, not lists:
    ``hall``, the ``standings`` shown, and ``room`` (the seats with a player and online)."""
    hall = in_hall(public)
    room = None
    if hall and public.players:
        room = {
            "joined": sum(row.human for row in public.players),
            "connected": sum(row.connected for row in public.players),
        }
    return {"hall": hall, "standings": shown_standings(public), "room": room}


def shown_standings(public: PublicView) -> Sequence[Standing]:
    """Return the final standings a room's players are sent: all of them, or in a lecture hall
    (``in_hall``) the first ``LIST_LIMIT`` ranks.

    N labs are not each sent a list of N when a lecture hall's game ends (each lab reads its
    own rank and score in its ``you``, and its page says its place); the instructor's debrief
    has the whole leaderboard.
    """
    return public.standings[:LIST_LIMIT] if in_hall(public) else public.standings


def game_over_message(public: PublicView) -> dict[str, Any]:
    """Return the ``game_over`` message with the final standings (``shown_standings``).

    ``labs``: how many labs are ranked (more than the list holds in a lecture hall).
    """
    return {
        "type": "game_over",
        "rounds_played": len(public.results),
        "standings": [
            {
                "rank": s.rank,
                "player_id": s.player_id,
                "nickname": s.nickname if public.bots_disclosed else "",
                "score": s.score,
                "wealth": s.wealth,
            }
            for s in shown_standings(public)
        ],
        "labs": len(public.standings),
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
        "ask_belief": lab.ask_belief,
        "belief": lab.belief,
        **trade_you_json(lab),
    }


def trade_you_json(lab: LabView) -> dict[str, Any]:
    """Return a lab's private trading fields (MODEL.md §3b); none in an auctioned game.

    ``granted``: it holds a granted permit this round (it asks or keeps; the others bid);
    ``ask``/``kept``/``ask_by``: its move; ``bought``/``sold``/``trades``: once the market cleared.
    """
    if lab.granted is None:
        return {}
    return {
        "granted": lab.granted,
        "ask": lab.ask,
        "kept": lab.kept,
        "ask_by": lab.ask_by,
        "bought": lab.bought,
        "sold": lab.sold,
        "trades": lab.trades,
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
        "terms": [
            {"name": term.name, "symbol": term.symbol, "amount": term.amount} for term in row.terms
        ],
        "wealth": row.wealth,
        "score": row.score,
        **(
            {
                "granted": row.granted,
                "bought": row.bought,
                "sold": row.sold,
                "price_received": row.price_received,
            }
            if row.trading
            else {}
        ),
    }


def state_message(screens: GameScreens, seat: Seat) -> dict[str, Any]:
    """Return the ``state`` snapshot for one seat: everything it may see now."""
    lab = screens.labs[seat.pk] if seat.lab_index is not None else None
    return seat_state_message(screens.public, seat, lab=lab, governor=screens.governor)


def seat_state_message(
    public: PublicView, seat: Seat, *, lab: LabView | None, governor: GovernorView | None
) -> dict[str, Any]:
    """Return the ``state`` snapshot of ``seat`` from the public view and the seat's own part.

    ``lab`` for a lab's seat, ``governor`` for the governor's (the other is not read).
    """
    message: dict[str, Any] = {
        "type": "state",
        # A lab of a big room: the counts, as in its phase messages; the governor's keeps all.
        "game": {**game_json(public, listed=public.counts is None), "title": public.title},
        "rules": rules_json(public),
        "players": players_json(public) if public.counts is None else None,
        "market": (
            market_json(public.market, listed=not in_hall(public)) if public.market else None
        ),
        "results": [round_results_json(row) for row in public.results],
        "standings": game_over_message(public)["standings"] if public.standings else None,
    }
    if public.counts is not None:  # a lab of a big room: counts, as its progress has them
        counts = public.counts
        shown = public.bots_disclosed  # counts of people would tell how many seats bots play
        message["room"] = {
            "seats": counts.seats,
            "joined": counts.joined if shown else None,
            "connected": counts.connected if shown else None,
        }
    identity = {"player_id": seat.player_id, "role": seat.role, "nickname": seat.nickname}
    if seat.lab_index is not None:
        assert lab is not None
        you = {key: value for key, value in you_json(lab).items() if key != "type"}
        message["you"] = {**identity, **you}
        message["history"] = [
            {k: v for k, v in your_results_json(row).items() if k != "type"} for row in lab.history
        ]
    else:
        assert governor is not None
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


# ------------------------------------------------------------------------------ HTML fragments


def _render(names: Iterable[str], context: Mapping[str, Any], *, base: str = LIVE) -> str:
    """Return the fragments ``names`` of template ``base`` rendered with ``context``, in order."""
    find = get_template if settings.DEBUG else _fragment
    return "".join(find(f"{base}#{name}").render(dict(context)) for name in names)


@functools.cache
def _fragment(name: str) -> Any:
    """The template of one fragment, found once per process (``_render``, when not DEBUG).

    Finding a fragment through the loaders again for every render was a tenth of a lab card's
    rendering, and a hall renders every lab's card on every event. The templates cannot change
    under a running server that is not in DEBUG (Django's cached loader keeps them for good
    too); in DEBUG each render finds them again, so an edited template shows at once.
    """
    return get_template(name)


def public_html(public: PublicView) -> str:
    """Return the public fragments (rendered once per update for the whole game)."""
    return _render(PUBLIC_FRAGMENTS, {"public": public, **hall_context(public), "oob": True})


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
        # Each seat's "hand to a bot" form posts to its own URL: reversed once here, not twice
        # per row by the template (a third of rendering a hall's seats).
        "hand_url": _SeatUrl("console:hand", public.code),
    }
    if with_charts:
        context["charts"] = charts.round_charts(
            public.results,
            rounds=public.rounds,
            token_cap=rules.token_cap,
            lab_count=rules.lab_count,
            traded=rules.allocation == "grandfathered",
        )
    return context


class _SeatUrl:
    """A console URL that takes the game's code and a seat's id, reversed once for every seat:
    ``{{ hand_url|seat_url:row.seat_id }}`` in the template (``play_format.seat_url``)."""

    _MARK = 987654321  # a seat id no game has: where the real one goes

    def __init__(self, name: str, code: str) -> None:
        self.prefix, self.suffix = reverse(name, args=[code, self._MARK]).split(str(self._MARK))

    def of(self, seat_id: int) -> str:
        return f"{self.prefix}{int(seat_id)}{self.suffix}"


def host_html(public: PublicView, seats: Sequence[ConsoleSeat], *, with_charts: bool) -> str:
    """Return the instructor's fragments; charts only ``with_charts`` (they change per round)."""
    context = {**host_context(public, seats, with_charts=with_charts), "oob": True}
    names = HOST_FRAGMENTS + (("host-charts",) if with_charts else ())
    return _render(names, context, base=HOST)


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
    public = screens.public
    context: dict[str, Any] = {"public": public, **hall_context(public), "seat": seat}
    if seat.lab_index is not None:
        context["lab"] = screens.labs[seat.pk]
    else:
        context["governor"] = screens.governor
    return context


# ------------------------------------------------------------------------------ sending


def _stamp(message: Mapping[str, Any], seq: int) -> str:
    """Return ``message`` as JSON text with its sequence number."""
    return realtime.dumps({**message, "seq": seq})


def seq_html(seq: int, kind: str) -> str:
    """Return the ``#seq`` marker of a message (play.js checks it for gaps).

    ``kind``: ``snapshot`` (the whole screen, seq is where the page now stands), ``event``
    (the next event: seq is one more than the page's) or ``progress`` (seq is the page's).
    """
    return f'<i id="seq" hx-swap-oob="true" data-seq="{int(seq)}" data-kind="{kind}" hidden></i>'


def snapshot(seat: Seat, fmt: str) -> tuple[int, list[str]]:
    """Return (seq, texts) of one seat's full screen in format ``"json"`` or ``"html"``.

    Only this seat's own part is built (``selectors.seat_screen``): the public part is read
    once per version of the game, so a room of N filling up costs O(N), not O(N²).
    """
    game = selectors.game_by_pk(seat.game_id)
    if game is None:
        raise Game.DoesNotExist(f"no game {seat.game_id}")
    # A lab's JSON snapshot of a big room carries counts, as its progress does (the pages keep
    # their list: their templates name the players the market and the phase speak of).
    limit = LIST_LIMIT if fmt == "json" else None
    screen = selectors.seat_screen(game, seat.pk, list_limit=limit)
    public, seat = screen.public, screen.seat
    seq = public.seq
    if fmt == "json":
        message = seat_state_message(public, seat, lab=screen.lab, governor=screen.governor)
        return seq, [_stamp(message, seq)]
    html = public_html(public)
    if screen.lab is not None:
        html += lab_html(public, screen.lab)
    else:
        assert screen.governor is not None
        html += governor_html(public, screen.governor)
    return seq, [html + seq_html(seq, "snapshot")]


def own_html_many(game_id: int, seen: Mapping[int, int]) -> dict[int, str]:
    """Return these seats' own fragments now (browsers' answers to their moves, ``answers``).

    ``seen``: seat id -> the last event its page had been sent when it asked. The game is read
    and its screens built once for all of them, as a phase change's publish does. Left out: a
    seat no longer in the game, and one whose page is behind an event of the game (the move
    ended a phase, say): that event carries the seat's fragments as they stand, and renders
    them for it already.
    """
    game = selectors.game_by_pk(game_id)
    if game is None:
        return {}
    screens = selectors.game_screens(game)
    public, governor = screens.public, screens.governor
    out: dict[int, str] = {}
    for seat_id, seq in seen.items():
        if seq < game.seq:
            continue
        if seat_id == governor.seat_id:
            out[seat_id] = governor_html(public, governor)
        elif seat_id in screens.labs:
            out[seat_id] = lab_html(public, screens.labs[seat_id])
    return out


def _record(screens: GameScreens, round_no: int) -> RoundRecord | None:
    return next((r for r in screens.records if r.round_no == round_no), None)


def publish(
    *,
    game_id: int,
    seq: int,
    events: Sequence[tuple[str, int]],
    seat_ids: Iterable[int] = (),
    committed: Game | None = None,
) -> None:
    """Send every seat and the console one event (an on_commit callback of the services).

    The room gets ONE channel message (``realtime.RoomEvent``, to the processes' hubs): the
    public part (rendered once for the whole game, the same bytes for every seat) and each
    joined seat's own small part (a lab's ``you`` and results; the governor's signals and
    audits), all stamped with the event's ``seq``; each seat's socket is handed the public part
    followed by its own. So a seat's stream holds every event, numbered 1, 2, 3, ...: a client
    that sees a number skipped lost one. HTML fragments are rendered only for seats with a
    browser's socket open.

    Args:
        game_id: the game.
        seq: the event's number (``Game.seq`` as the service committed it; what is sent is the
            current state, which may be newer).
        events: (kind, round) in the order they happened; kinds: phase, market, signals,
            settled, game_over, seats (and progress kinds, which the public ``phase`` covers).
        seat_ids: seats whose private part changed beyond what the events imply (every lab is
            sent its part anyway).
        committed: the game's row as the event's transaction committed it (``services``). If
            this process holds that version's rows (the transaction carried them on), the event
            shows that version, built from them, and the game is not read again on the way of
            every phase change. Otherwise the game as it now stands is read.
    """
    held = committed is not None and bridge.holds_rows(committed)
    game = committed if held else selectors.game_by_pk(game_id)
    if game is None:  # deleted since the event committed: nobody is left to tell
        return
    screens = selectors.game_screens(game)
    public, governor = screens.public, screens.governor
    online = any(row.connected for row in public.players)
    if held and not online and selectors.game_by_pk(game_id) is None:
        return  # deleted since (its sockets' leases with it): nobody is left to tell
    kinds = [kind for kind, _ in events]

    public_json: list[dict[str, Any]] = []
    governor_json: list[dict[str, Any]] = []
    results_for: list[int] = []
    joined = {row.seat_id for row in public.players if row.human}
    to_governor = governor.seat_id in joined  # a bot's seat is sent nothing
    if "seats" in kinds:
        public_json.append({"type": "players", "players": players_json(public)})
    for kind, round_no in events:
        record = _record(screens, round_no)
        if kind == "market":
            market = selectors.record_market(game, record) if record is not None else public.market
            if market is not None:
                listed = not in_hall(public)
                public_json.append({"type": "market", **market_json(market, listed=listed)})
        elif kind == "signals" and to_governor:
            rows = selectors.record_signals(game, record) if record else governor.signals
            if rows is not None:
                governor_json.append(signals_json(round_no, rows, governor))
        elif kind == "settled" and record is not None:
            public_json.append(
                {
                    "type": "round_results",
                    **round_results_json({"round": record.round_no, **record.metrics}),
                    "headline": selectors.headline_of(record).text,
                }
            )
            if to_governor:
                result = next(r for r in governor.history if r.round_no == round_no)
                governor_json.append(audit_json(result))
            results_for.append(round_no)
    # Every event says where the game stands (a seat change may change whom it waits for).
    public_json.append(phase_message(public))
    if "game_over" in kinds:
        public_json.append(game_over_message(public))

    public_texts = tuple(_stamp(m, seq) for m in public_json)
    html_seats = screens.browsers
    shared_html = public_html(public) + seq_html(seq, "event") if html_seats else ""
    parts: dict[int, realtime.SeatPart] = {}
    for seat_id, lab in screens.labs.items():
        if seat_id not in joined:
            continue
        private = [your_results_json(row) for row in lab.history if row.round_no in results_for]
        private.append(you_json(lab))
        html = lab_html(public, lab) if seat_id in html_seats else ""
        parts[seat_id] = realtime.SeatPart(html, tuple(_stamp(m, seq) for m in private))
    if to_governor:
        html = governor_html(public, governor) if governor.seat_id in html_seats else ""
        texts = tuple(_stamp(m, seq) for m in governor_json)
        parts[governor.seat_id] = realtime.SeatPart(html, texts)
    # ONE channel message for the whole room: each process's hub hands its sockets of a seat
    # the public part followed by the seat's own (permitgame.hub).
    event = realtime.RoomEvent(game_id, shared_html, public_texts, parts, settled=bool(results_for))
    try:
        realtime.send(event, seq=seq, version=public.version)
    except Exception:  # the change is committed: a dead channel layer must not undo it
        logger.exception("publishing game %s event %s failed", game_id, seq)
    # Only now that every seat's channel holds the event: a progress carrying this seq may be
    # sent (it counts from this note), so it never overtakes the event it follows.
    note_owed(public)
    _progress_sent(game_id)
    # The console after the players, on a thread of its own (``console_later``).
    console_later(game_id, charts=bool(_HOST_CHART_EVENTS.intersection(kinds)))


#: The thread that renders the console's update of each event (one: the updates in order).
CONSOLE = ThreadPoolExecutor(max_workers=1, thread_name_prefix="console")
#: Seconds the console's update of an event waits before it is rendered.
CONSOLE_DELAY_SECONDS = 0.05


def console_later(game_id: int, *, charts: bool) -> None:
    """Render and send the console's update of an event of the game, a moment from now.

    The console's fragments are the largest the server renders (every seat with its controls:
    at 200 seats about 10 ms and 230 KB). Rendered at once, on the thread that records the
    game's moves, they held up the next batch of moves and shared the process's Python with
    the hub handing the event to the players' sockets, which slowed the phase change itself
    (``bench.load --console``). So they are rendered on a thread of their own, once the event
    has had ``CONSOLE_DELAY_SECONDS`` to reach the players, from the game as it then stands
    (the console drops an update older than one it has: ``HostConsumer``).

    The events of a game that come while its update waits share it (it shows the game as it
    then stands, with the charts if any of them settled a round).
    """
    with _progress_lock:
        waiting = game_id in _console_charts
        _console_charts[game_id] = _console_charts.get(game_id, False) or charts
    if waiting:
        return

    def render() -> None:
        with _progress_lock:
            with_charts = _console_charts.pop(game_id, charts)
        _send_host(game_id, None, charts=with_charts, kind=realtime.SEND)

    _later(CONSOLE, CONSOLE_DELAY_SECONDS, render, f"the console's update of game {game_id}")


def _later(thread: ThreadPoolExecutor, delay: float, work: Callable[[], None], what: str) -> None:
    """Run ``work`` on ``thread`` ``delay`` seconds from now, off an event's way to the players.

    The work queued on one thread runs in order, each after its own delay; one that fails is
    logged (``what`` names it) and the next runs all the same. The thread's database connection
    goes back to the pool after each (as ``answers``).
    """
    due = time.monotonic() + delay

    def run() -> None:
        time.sleep(max(0.0, due - time.monotonic()))
        try:
            work()
        except Exception:
            logger.exception("%s failed", what)
        finally:
            close_old_connections()

    thread.submit(run)


#: Game id -> whether its console update waiting to be rendered has the charts.
_console_charts: dict[int, bool] = {}


def _send_host(
    game: Game | int,
    public: PublicView | None,
    *,
    charts: bool,
    kind: str,
    now: float | None = None,
) -> None:
    """Render and send the console's fragments, if a console is open.

    ``game``: the game, or its id (then it is read here, only when a console is open).
    ``public``: the game's public view if the caller has it (else it is read here, only when a
    console is open: the console's full view is the one progress that resolves the round).
    """
    if not realtime.console_open(game if isinstance(game, int) else game.pk):
        return
    if isinstance(game, int):
        found = selectors.game_by_pk(game)
        if found is None:  # deleted meanwhile: no console to tell
            return
        game = found
    with _progress_lock:
        _last_host[game.pk] = time.monotonic() if now is None else now
        _host_dirty.discard(game.pk)
    try:
        if public is None:
            public = selectors.game_screens(game).public
        rows = host_selectors.console_seats(game)
        host = realtime.HostUpdate(game.pk, host_html(public, rows, with_charts=charts))
        realtime.send(host, seq=public.seq, version=public.version, kind=kind)
    except Exception:
        logger.exception("sending the console of game %s failed", game.pk)


# ------------------------------------------------------------------------------ progress

#: Seconds between two progress messages of a game from one process, at most (the latest
#: state wins: the moves and joins in between are sent as one message).
PROGRESS_SECONDS = 0.3
#: Seconds after which a game with sockets in this process gets a progress message anyway:
#: it carries the game's seq, so a socket that lost the last event (a full channel) notices.
BEACON_SECONDS = 3.0
#: Above this many seats the public progress carries counts, not the player list.
LIST_LIMIT = 40
#: A room above ``LIST_LIMIT`` seats (a lecture hall) gets its progress at most once per this
#: many seconds: every progress is one message per socket, and "57 of 200 have bid" needs no
#: more; a class's room keeps ``PROGRESS_SECONDS``.
HALL_PROGRESS_SECONDS = 1.0
#: A room's progress is one message per seat of the room, in every process that holds its
#: sockets (the hubs hand it out), and this process sends the progress of every room it has
#: sockets of: about this many such messages a second at most, in all. So a server holding
#: 20 classes of 30 sends each class its progress about once a second (and not 1,800 messages
#: a second), one class alone three times a second; with the 20 classes spread over two
#: processes, each process still sends each class's progress once a second (its messages
#: reach the sockets of both).
PROGRESS_MESSAGES_PER_SECOND = 600

#: The console's view of a room (every seat, with its controls) is the largest fragment to
#: render: it is sent with every event, and of the progress at most once per this many seconds.
HOST_PROGRESS_SECONDS = 1.0

_dirty: set[int] = set()
_host_dirty: set[int] = set()
_last_host: dict[int, float] = {}
_last_progress: dict[int, float] = {}
_seats: dict[int, int] = {}  # game id -> its seats as last counted (games followed here)
_progress_lock = threading.Lock()


def progress_changed(game_id: int) -> None:
    """Note that a game's progress changed (a move, a join, a connection): sent coalesced."""
    with _progress_lock:
        _dirty.add(game_id)


def _progress_sent(game_id: int) -> None:
    with _progress_lock:
        _last_progress[game_id] = time.monotonic()


def event_handed_out(game_id: int, *, settled: bool = False) -> None:
    """Note that an event of the game reached this process's sockets (``hub.Hub.deliver``).

    The event says where the room stands, so this process's next progress of the game is due
    an interval after it, as in the process that published the event (``publish``). A lecture
    hall's phases can follow each other within tens of milliseconds (every lab moving at once):
    a process that had not published the last event sent its first progress of the phase to
    every socket of the room in the middle of the phase's last batch and its event, whose way
    to the players it nearly doubled (bench/RESULTS.md, "After c05aa45").

    ``settled``: the event settled a round, so the game's room is built here now, its ledger
    with it (``room_later``).
    """
    _progress_sent(game_id)
    if settled:
        room_later(game_id)


#: The thread that builds a game's room after a round settled (one: they are rare and small).
ROOMS = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rooms")
#: Seconds after a settled round's event reached this process before its room is built.
ROOM_DELAY_SECONDS = 0.1


def room_later(game_id: int) -> None:
    """Build this process's room of the game a moment from now, its settled rounds with it.

    A round is settled by one process (its batch adds the record to its own ledger:
    ``selectors.keep_settled``). Every other process reads that record, and works out each lab's
    standing from it, the first time it builds a room of the game after: at 200 labs about 5 ms
    traced, on the way of a phase change of the next round whenever its last batch was recorded
    here (bench/load/FINDINGS.md). Done here instead, in the results phase, when the
    room is quiet; the room is then the version's, and the moves' rows are carried on.
    """
    _later(
        ROOMS,
        ROOM_DELAY_SECONDS,
        functools.partial(selectors.build_room, game_id),
        f"building the room of game {game_id}",
    )


# ------------------------------------------------------------------------------ who is owed

#: Seconds the seats owing a move at an event are remembered (in the cache, shared by every
#: process through Redis): the room's progress is counted from them until the next event.
OWED_SECONDS = 6 * 3600
#: Seconds a progress waits for the event's own note of who is owed before it resolves the round
#: itself. The process that committed the event writes the note once it has handed the event to
#: the channel layer, so a progress carrying the event's seq (from any process) is sent after
#: the event: it waits while the event is being rendered and sent, however long that takes
#: under load, and only a publish that never came (a process that died) costs this wait.
OWED_WAIT_SECONDS = 10.0
_owed_missing: dict[tuple[int, int], float] = {}


def _owed_key(game_id: int, seq: int) -> str:
    return f"progress-owed-{game_id}-{seq}"


def note_owed(public: PublicView) -> None:
    """Remember which seats the phase waits for at this event (``public.seq``).

    The resolver says it once per event (``publish`` has the views anyway); between two events
    the set only shrinks as those seats move (a seat handed to a bot or back is an event), so a
    progress message needs the moves of the phase, not a resolve.
    """
    from django.core.cache import cache

    seat_of = {row.player_id: row.seat_id for row in public.players}
    owed = {
        "round": public.round_no,
        "phase": public.phase,
        "seats": [seat_of[player_id] for player_id in public.waiting_for if player_id in seat_of],
    }
    try:
        cache.set(_owed_key(public.game_id, public.seq), owed, OWED_SECONDS)
    except Exception:  # a cache that is down costs a resolve per progress, nothing else
        logger.exception("noting who game %s waits for failed", public.game_id)


def _owed(game: Game) -> set[int] | None:
    """Return the seats the current phase waited for at the last event (None: not noted)."""
    if game.status not in (Status.RUNNING, Status.PAUSED):
        return set()
    from django.core.cache import cache

    try:
        owed = cache.get(_owed_key(game.pk, game.seq))
    except Exception:
        logger.exception("reading who game %s waits for failed", game.pk)
        return None
    if owed is None or (owed["round"], owed["phase"]) != (game.round_no, game.phase):
        return None
    return set(owed["seats"])


@dataclass(frozen=True, slots=True)
class RoomProgress:
    """What a progress message says, counted from the rows (no resolve).

    ``players``/``waiting_for`` only for a room of at most ``LIST_LIMIT`` seats (the same rows
    as ``PublicView``'s, so the pages' partials render from it); a bigger room gets counts.
    """

    status: str
    round_no: int
    phase: str
    seq: int
    version: int
    waiting: int
    joined: int
    connected: int
    seats: int
    players: tuple[selectors.PlayerRow, ...] | None
    waiting_for: tuple[int, ...] | None
    #: Whether the players may see which seats bots play (``Game.bots_shown``); if not, only
    #: the governor is named as waited for and the counts of people are left out.
    bots_disclosed: bool = True
    #: Of the seats waited for, the governor's (0) if it is one of them.
    governor_waited: bool = False
    #: Whether a browser's socket is open (in any process): only then are the pages'
    #: fragments rendered.
    browsers: bool = True

    def waiting_shown(self) -> tuple[int, ...]:
        """Whom the phase waits for, as the players may see it (as ``PublicView``'s)."""
        if self.bots_disclosed:
            return self.waiting_for or ()
        return (0,) if self.governor_waited else ()

    def message(self) -> dict[str, Any]:
        """Return the ``progress`` message (docs/protocol.md)."""
        message: dict[str, Any] = {
            "type": "progress",
            "status": self.status,
            "round": self.round_no,
            "phase": self.phase or None,
            "waiting": self.waiting,
            "joined": self.joined,
            "connected": self.connected,
            "seats": self.seats,
        }
        if not self.bots_disclosed:  # counts of people would tell how many seats bots play
            message.update(waiting=1 if self.governor_waited else 0, joined=None, connected=None)
        if self.players is not None:
            message["waiting_for"] = list(self.waiting_shown())
            message["players"] = players_json(self)  # type: ignore[arg-type]
        return message


def room_progress(game: Game, owed: set[int]) -> RoomProgress:
    """Count the room: one query (a big room's aggregate, or a small room's seat rows).

    ``owed``: the seats the phase waited for at the last event (``note_owed``); those of them
    with no move in this phase yet are still waited for.
    """
    now = clock.now()
    since = now - dt.timedelta(seconds=realtime.CONNECTION_LEASE_SECONDS)
    live = Connection.objects.filter(seat=OuterRef("pk"), last_seen__gte=since)
    online = Exists(live)
    moved = Exists(
        Move.objects.filter(
            seat=OuterRef("pk"),
            round_no=game.round_no,
            phase=game.phase,
            action__in=MOVE_ACTIONS,
        )
    )
    seats = Seat.objects.filter(game=game)
    players: tuple[selectors.PlayerRow, ...] | None = None
    waiting_for: tuple[int, ...] | None = None
    if game.lab_count + 1 > LIST_LIMIT:
        counts = seats.aggregate(
            seats=Count("id"),
            joined=Count("id", filter=Q(token__isnull=False)),
            connected=Count("id", filter=Q(online)),
            waiting=Count("id", filter=Q(pk__in=owed or [0]) & ~Q(moved)),
            governor=Count("id", filter=Q(pk__in=owed or [0], role=Role.GOVERNOR) & ~Q(moved)),
            browsers=Count("id", filter=Q(Exists(live.filter(html=True)))),
        )
        if not owed:
            counts["waiting"] = counts["governor"] = 0
    else:
        # A class's room: its list, from the seats and moves kept for the game's version (the
        # batches of moves carry them on) and one read of who is connected.
        held, moved_ids = selectors.seats_and_moved(game)
        connected, browsers = selectors.sockets_open(game, now)
        rows = sorted(held, key=lambda s: (s.role != Role.LAB, s.lab_index or 0))
        playing = game.status in (Status.RUNNING, Status.PAUSED)
        waiting_for = tuple(
            sorted(s.player_id for s in rows if s.pk in owed and s.pk not in moved_ids)
        )
        players = tuple(
            selectors.player_row(s, connected=s.pk in connected, playing=playing) for s in rows
        )
        counts = {
            "seats": len(players),
            "joined": sum(1 for row in players if row.human),
            "connected": sum(1 for row in players if row.connected),
            "waiting": len(waiting_for),
            "governor": int(0 in waiting_for),
            "browsers": int(browsers),
        }
    return RoomProgress(
        status=game.status,
        round_no=game.round_no,
        phase=game.phase,
        seq=game.seq,
        version=game.version,
        waiting=int(counts["waiting"]),
        joined=int(counts["joined"]),
        connected=int(counts["connected"]),
        seats=int(counts["seats"]),
        players=players,
        waiting_for=waiting_for,
        bots_disclosed=game.bots_shown,
        governor_waited=bool(counts["governor"]),
        browsers=bool(counts["browsers"]),
    )


def flush_progress(game_id: int, *, now: float | None = None, beacon: bool = False) -> None:
    """Send a game's progress now: counts to every socket, the full view to the console.

    Counted from the rows (``room_progress``: O(1) queries, no resolve). Right after an event,
    until its publish has sent it and noted who is owed (``note_owed``), the progress waits (a
    beat at a time; after ``OWED_WAIT_SECONDS`` it resolves the round itself, once per event):
    so the progress, which carries the event's seq, never reaches a socket before the event.
    ``beacon``: nothing changed, the message only repeats the game's seq (so a socket that
    lost the last event notices): the pages' fragments and the console are not redrawn.
    ``now``: the ``time.monotonic()`` of the beat (tests pass their own).
    """
    moment = time.monotonic() if now is None else now
    with _progress_lock:
        _dirty.discard(game_id)
        _last_progress[game_id] = moment
    game = selectors.game_by_pk(game_id)
    if game is None:
        return
    if game.status == Status.LOBBY and _lobby_progress(game, now=now, beacon=beacon):
        return
    owed = _owed(game)
    public: PublicView | None = None
    if owed is None:
        key = (game.pk, game.seq)
        with _progress_lock:
            first = _owed_missing.setdefault(key, moment)
            if moment - first < OWED_WAIT_SECONDS:
                _dirty.add(game_id)  # the event's note is on its way: the next beat
                _last_progress.pop(game_id, None)
                return
            _owed_missing.pop(key, None)
        public = selectors.game_screens(game).public
        note_owed(public)
        owed = _owed(game) or set()
    elif _owed_missing:
        with _progress_lock:
            for key in [key for key in _owed_missing if key[0] == game.pk]:
                del _owed_missing[key]
    room = room_progress(game, owed)
    _note_size(game_id, room.seats)
    html = seq_html(room.seq, "progress")
    if not beacon and room.browsers:  # the pages' fragments, only for a page to show them
        names = ("waiting", "players") if room.players is not None else ("waiting",)
        html = _render(names, {"public": room, "oob": True}) + html
    # Through the processes' hubs, as the events go: one channel message per process (each
    # hands it to its own sockets), not one per socket.
    update = realtime.RoomEvent(
        game_id, html, (_stamp(room.message(), room.seq),), {}, everyone=True
    )
    try:
        realtime.send(update, seq=room.seq, version=room.version, kind=realtime.PROGRESS)
    except Exception:
        logger.exception("sending the progress of game %s failed", game_id)
    if beacon:
        return
    with _progress_lock:
        host_due = moment - _last_host.get(game_id, -float("inf")) >= HOST_PROGRESS_SECONDS
        if not host_due:
            _host_dirty.add(game_id)  # the next beat after the interval sends it
    if host_due:
        _send_host(game, public, charts=False, kind=realtime.PROGRESS, now=moment)


def _lobby_progress(game: Game, *, now: float | None, beacon: bool) -> bool:
    """Send a big lobby's progress from counts (a room filling up); return whether it did.

    While a lecture hall joins, the progress changes at every beat: counting the seats is all
    it needs (no resolve, no player list). A small room's progress carries its list instead.
    """
    since = clock.now() - dt.timedelta(seconds=realtime.CONNECTION_LEASE_SECONDS)
    counts = Seat.objects.filter(game=game).aggregate(
        seats=Count("id"), joined=Count("id", filter=Q(token__isnull=False))
    )
    _note_size(game.pk, counts["seats"])
    if counts["seats"] <= LIST_LIMIT:
        return False
    connected = (
        Connection.objects.filter(seat__game=game, last_seen__gte=since)
        .values("seat_id")
        .distinct()
        .count()
    )
    message = {
        "type": "progress",
        "status": game.status,
        "round": game.round_no,
        "phase": game.phase or None,
        "waiting": 0,
        "joined": counts["joined"],
        "connected": connected,
        "seats": counts["seats"],
    }
    if not game.bots_shown:
        message.update(joined=None, connected=None)
    item = realtime.RoomEvent(
        game.pk, seq_html(game.seq, "progress"), (_stamp(message, game.seq),), {}, everyone=True
    )
    try:
        realtime.send(item, seq=game.seq, version=game.version, kind=realtime.PROGRESS)
    except Exception:
        logger.exception("sending the progress of game %s failed", game.pk)
    if not beacon and realtime.console_open(game.pk):
        moment = time.monotonic() if now is None else now
        with _progress_lock:
            due = moment - _last_host.get(game.pk, -float("inf")) >= HOST_PROGRESS_SECONDS
            if not due:
                _host_dirty.add(game.pk)
        if due:
            _send_host(game, None, charts=False, kind=realtime.PROGRESS, now=moment)
    return True


def _interval(game_id: int, reach: int) -> float:
    """Seconds between two progress messages of a game (call holding ``_progress_lock``).

    ``reach``: the seats of all the games this process sends the progress of (each progress
    is one message per seat, ``PROGRESS_MESSAGES_PER_SECOND``).
    """
    room = HALL_PROGRESS_SECONDS if _seats.get(game_id, 0) > LIST_LIMIT else PROGRESS_SECONDS
    return max(room, reach / PROGRESS_MESSAGES_PER_SECOND)


def _note_size(game_id: int, seats: int) -> None:
    with _progress_lock:
        _seats[game_id] = seats


def flush_due(*, now: float | None = None) -> int:
    """Send the progress of every game due for it (the clock loop's beat); return how many.

    Due: changed since its last message and at least ``PROGRESS_SECONDS`` after it
    (``HALL_PROGRESS_SECONDS`` for a room of more than ``LIST_LIMIT`` seats; longer when the
    rooms whose progress this process sends have more seats than
    ``PROGRESS_MESSAGES_PER_SECOND`` reach three times a second), or with a socket open in this
    process and nothing sent for ``BEACON_SECONDS``.
    """
    moment = time.monotonic() if now is None else now
    with _progress_lock:
        local = set(realtime.LOCAL_GAMES.values())
        for game_id in (set(_last_progress) | set(_seats)) - _dirty - local:  # followed no more
            _last_progress.pop(game_id, None)
            _seats.pop(game_id, None)
        reach = sum(_seats.values())
        due = [
            (game_id, game_id not in _dirty)
            for game_id in _dirty | local
            if moment - _last_progress.get(game_id, -float("inf"))
            >= (_interval(game_id, reach) if game_id in _dirty else BEACON_SECONDS)
        ]
    with _progress_lock:
        consoles = [
            game_id
            for game_id in _host_dirty
            if game_id not in _dirty
            and moment - _last_host.get(game_id, -float("inf")) >= HOST_PROGRESS_SECONDS
        ]
    for game_id in consoles:
        try:
            _send_host(game_id, None, charts=False, kind=realtime.PROGRESS, now=moment)
        except Exception:
            logger.exception("console of game %s failed", game_id)
    for game_id, beacon in due:
        try:
            flush_progress(game_id, now=moment, beacon=beacon)
        except Exception:  # one broken game must not stop the progress of the others
            logger.exception("progress of game %s failed", game_id)
    return len(due)
