"""The view records the templates read (``permitgame.templating.Record``).

A record answers the template engine's first lookup (``record[name]``) itself instead of
raising inside it; these prove that the pages read exactly as they did from plain objects, and
that a record is no mapping or sequence beyond that lookup.
"""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace
from typing import Any

import pytest
from django.template import Context, Template
from django.urls import reverse

from permitgame import broadcast, host_selectors, selectors, services
from permitgame.services import MoveCommand
from permitgame.templating import Record
from tests.permitgame.test_hall import fresh, hall


def plainly(value: Any) -> Any:
    """The same view as plain objects (attributes only, no ``__getitem__``), all the way down."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: plainly(getattr(value, f.name)) for f in dataclasses.fields(value)}
        # Its properties and methods, as they read on the record itself.
        extra = {
            name: getattr(value, name)
            for name in dir(type(value))
            if not name.startswith("_") and name not in fields
        }
        return SimpleNamespace(**fields, **extra)
    if isinstance(value, tuple):
        return tuple(plainly(v) for v in value)
    return value


def same_fragments(game: Any, seats: list[Any]) -> None:
    """Every audience's fragments now: the same from the records as from plain objects."""
    screens = selectors.game_screens(fresh(game))
    public, governor = screens.public, screens.governor
    assert isinstance(public, Record) and isinstance(public.rules, Record)
    assert broadcast.public_html(public) == broadcast.public_html(plainly(public))
    assert broadcast.governor_html(public, governor) == broadcast.governor_html(
        plainly(public), plainly(governor)
    )
    for seat in seats:
        lab = screens.labs[seat.pk]
        html = broadcast.lab_html(public, lab)
        assert 'id="lab-action"' in html
        assert html == broadcast.lab_html(plainly(public), plainly(lab))


@pytest.mark.django_db
def test_the_pages_fragments_read_the_same_from_records_as_from_plain_objects():
    game, seats = hall(labs=6, humans=4, rounds=2)
    services.game_start(game=game)
    same_fragments(game, seats)  # bidding
    for round_no in (1, 2):
        bids = [
            MoveCommand(s.pk, "bid", round_no, {"amount": 0.05 * (i + 1)})
            for i, s in enumerate(seats)
        ]
        services.round_submit_moves(game_id=game.pk, commands=bids)
        same_fragments(game, seats)  # compliance: the market cleared, the choices owed
        while fresh(game).phase != "results":  # the labs' defaults; the bot audits
            services.game_advance_now(game=fresh(game))
        same_fragments(game, seats)  # results: the round settled, each lab's history
        services.game_advance_now(game=fresh(game))
    assert fresh(game).status == "finished"
    same_fragments(game, seats)  # the standings, each lab's place


def test_a_record_answers_its_attributes_and_nothing_else():
    @dataclasses.dataclass(frozen=True, slots=True)
    class View(Record):
        value: float
        _hidden: int = 1

        @property
        def doubled(self) -> float:
            return 2 * self.value

    view = View(0.25)
    assert view["value"] == 0.25 and view["doubled"] == 0.5
    for key in ("missing", "_hidden", "__class__", 0):
        with pytest.raises(KeyError):
            view[key]
    with pytest.raises(TypeError, match="a View is a record, not a sequence"):
        list(view)
    # In a template: the attribute, and a missing one is "" as it always was.
    text = Template("{{ view.value }}|{{ view.doubled }}|{{ view.missing }}").render(
        Context({"view": view})
    )
    assert text == "0.25|0.5|"


@pytest.mark.django_db
def test_the_consoles_seat_forms_post_to_each_seats_own_url():
    game, seats = hall(labs=5, humans=3, rounds=2)
    services.game_start(game=game)
    game = fresh(game)
    public = selectors.game_screens(game).public
    rows = host_selectors.console_seats(game)
    html = broadcast.host_html(public, rows, with_charts=False)
    for seat in seats:  # the URL reversed once serves every row, each with its own seat
        url = reverse("console:hand", args=[game.code, seat.pk])
        assert html.count(f'action="{url}" hx-post="{url}"') == 1, url
    assert html.count('name="to_bot"') == len(seats)
