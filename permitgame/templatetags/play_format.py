"""Number formatting for the players' pages: presentation only, no rule of the game.

``{{ x|amount }}`` shows money and values with three decimals, ``{{ x|signed }}`` the same with
its sign (payoffs, gains), ``{{ p|percent }}`` a probability as a percentage and
``{{ n|ordinal }}`` a rank ("2nd"), ``{{ player_id|lab_label }}`` a lab's name ("Lab 3", from
``models.lab_label``, as every table and message names it). Every number shown comes from the
selectors.
"""

from __future__ import annotations

from typing import Any

from django import template

from permitgame.models import lab_label as _lab_label

register = template.Library()

MINUS = "\u2212"


@register.filter
def lab_label(player_id: int) -> str:
    """Return a lab's name from its player id (numbered from 1): "Lab 3"."""
    return _lab_label(player_id)


@register.filter
def amount(value: float | None) -> str:
    """Return ``value`` with three decimals ("0.250"), or an em dash for None."""
    if value is None:
        return "\u2014"
    text = f"{float(value):.3f}"
    return MINUS + text[1:] if text.startswith("-") else text


@register.filter
def signed(value: float | None) -> str:
    """Return ``value`` with three decimals and its sign ("+0.125", "−0.080", "0.000")."""
    if value is None:
        return "\u2014"
    text = f"{float(value):.3f}"
    if text.lstrip("-") == "0.000":
        return "0.000"
    return MINUS + text[1:] if text.startswith("-") else "+" + text


@register.filter
def percent(value: float | None) -> str:
    """Return a probability as a percentage: 0.53 → "53%", 0.125 → "12.5%"."""
    if value is None:
        return "\u2014"
    hundred = float(value) * 100
    if abs(hundred - round(hundred)) < 0.05:
        return f"{round(hundred):d}%"
    return f"{hundred:.1f}%"


@register.filter
def ordinal(value: int | None) -> str:
    """Return 1 → "1st", 2 → "2nd", 11 → "11th"."""
    if value is None:
        return ""
    number = int(value)
    if 10 <= number % 100 <= 20:
        suffix = "th"
    else:
        suffix = {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    return f"{number}{suffix}"


@register.filter
def clock(seconds: float | None) -> str:
    """Return a number of seconds as minutes and seconds: 65.2 → "1:06" (rounded up)."""
    if seconds is None:
        return ""
    whole = max(0, int(-(-float(seconds) // 1)))
    return f"{whole // 60}:{whole % 60:02d}"


#: What a payoff term is called on a result card (sim_core's ``PayoffTerm.name``).
TERM_LABELS = {
    "value": "value",
    "compute_cost": "compute cost",
    "racing_value": "racing bonus",
    "price": "permit price",
    "trade": "permit traded",
    "collateral": "collateral K",
    "fine": "fine φ",
    "reputation_penalty": "reputation R",
}


@register.filter
def term_label(name: str) -> str:
    """Return the words for a payoff term: "fine" → "fine φ"."""
    return TERM_LABELS.get(name, name.replace("_", " "))


@register.filter
def magnitude(value: float | None) -> str:
    """Return an amount without its sign, as ``amount`` writes it: −0.3 → "0.300"."""
    return "" if value is None else amount(abs(float(value)))


@register.filter
def split_commas(text: str) -> list[str]:
    """Return "0,10,20" as ["0", "10", "20"] (a template's fixed list of choices)."""
    return [item.strip() for item in text.split(",")]


@register.filter
def seat_url(url: Any, seat_id: int) -> str:
    """Return a console URL of one seat from its URL reversed once for all (``broadcast``)."""
    return str(url.of(seat_id))
