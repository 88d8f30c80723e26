"""A page's answer to its own move: the answers a process owes one game render together.

Not timed (``bench.load --pages`` measures the hall): these prove that answers asked for while a
round of rendering runs are rendered in ONE round (one read of the game, one build of its
screens), that each page still gets its own fragments and never another seat's, and that a page
behind an event of the game (which brings its fragments), a seat the game no longer has, or a
round that fails, is answered with the flash alone.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from typing import Any

import pytest

from permitgame import answers, broadcast
from tests.permitgame.test_hall import fresh
from tests.permitgame.test_movequeue import started
from tests.permitgame.wire import Socket, db, html_path


class CountRounds:
    """Wraps ``broadcast.own_html_many`` (one call per round), keeping each round's seats."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.rounds: list[set[int]] = []
        original = broadcast.own_html_many

        def counted(game_id: int, seen: Any) -> dict[int, str]:
            self.rounds.append(set(seen))
            return original(game_id, seen)

        monkeypatch.setattr(broadcast, "own_html_many", counted)


async def held_renderer() -> tuple[threading.Event, asyncio.Future[Any]]:
    """Hold the answers' thread until the event is set (a round of rendering under way)."""
    release = threading.Event()
    held = asyncio.get_running_loop().run_in_executor(answers.RENDERER, release.wait)
    await asyncio.sleep(0.05)
    return release, held


def bid_shown(html: str) -> float | None:
    """The bid a lab's action card says is in ("Your sealed bid of 0.030 is in"), if any."""
    found = re.search(r'Your sealed bid of <span class="num">([\d.]+)</span> is in', html)
    return float(found.group(1)) if found else None


@pytest.mark.django_db(transaction=True)
async def test_the_answers_a_page_owes_while_one_renders_go_together_each_its_own(monkeypatch):
    game, seats = await started(labs=12, humans=9)
    pages = [Socket(html_path(game.code, seat.token), fmt="html") for seat in seats[:8]]
    for page in pages:
        await page.connect()
        await page.drain(quiet=0.05)
    rounds = CountRounds(monkeypatch)
    release, held = await held_renderer()
    loop = asyncio.get_running_loop()

    def bid(index: int) -> str:
        frame = {"type": "bid", "round": "1", "amount": f"0.0{index + 1}", "HEADERS": {}}
        return json.dumps(frame)

    try:
        # The first answer starts a round at once, which waits for the busy thread ...
        await pages[0].communicator.send_to(text_data=bid(0))
        for _ in range(100):
            if answers._waiting.get(loop, {}).get(game.pk) == []:  # taken, under way
                break
            await asyncio.sleep(0.02)
        else:
            raise AssertionError("the first answer's round never began")
        # ... and the answers asked for meanwhile wait for the next one.
        for index, page in enumerate(pages[1:], start=1):
            await page.communicator.send_to(text_data=bid(index))
        await asyncio.sleep(0.5)  # every bid is stored; the answers wait for the renderer
        assert all([await page.communicator.receive_nothing(timeout=0.01) for page in pages])
        assert len(answers._waiting[loop][game.pk]) == 7
        release.set()
        await held
        replies = [await page.next() for page in pages]
        # Each page: the flash, then its own card with its own bid, not another seat's.
        for index, reply in enumerate(replies):
            assert 'id="flash"' in reply and "flash-ok" in reply
            assert bid_shown(reply) == pytest.approx(0.01 * (index + 1))
            assert reply.count('id="lab-action"') == 1
        # One round for the first answer (it began at once, then waited for the thread), one
        # for the seven asked for meanwhile: not one round, one game read, per answer.
        assert [len(r) for r in rounds.rounds] == [1, 7]
        assert set().union(*rounds.rounds) == {seat.pk for seat in seats[:8]}
    finally:
        release.set()
        await asyncio.gather(*(page.close() for page in pages))


@pytest.mark.django_db(transaction=True)
async def test_an_answer_without_fragments_is_the_flash_alone(monkeypatch):
    game, seats = await started(labs=6, humans=3)  # two bids leave one owed: still bidding
    seq = (await db(fresh)(game)).seq
    assert 'id="lab-action"' in await answers.own_html(game.pk, seats[0].pk, seq)
    # A page behind an event of the game (its move ended the phase) is not rendered for: the
    # event, on its way to the page, carries its fragments as they stand.
    assert await answers.own_html(game.pk, seats[0].pk, seq - 1) == ""
    # A seat the game no longer has gets nothing rendered (its page reloads on its next event).
    assert await answers.own_html(game.pk, 10**9, seq) == ""
    assert await answers.own_html(10**9, seats[0].pk, seq) == ""  # nor a game that is gone

    original, failures = broadcast.own_html_many, []

    def fails_once(game_id: int, seen: Any) -> dict[int, str]:
        if not failures:
            failures.append(set(seen))
            raise RuntimeError("a template that fails")
        return original(game_id, seen)

    monkeypatch.setattr(broadcast, "own_html_many", fails_once)
    first, second = (Socket(html_path(game.code, seat.token), fmt="html") for seat in seats[:2])
    for page in (first, second):
        await page.connect()
        await page.drain(quiet=0.05)
    try:
        reply = await first.send({"type": "bid", "round": "1", "amount": "0.1"})
        # The move is stored and said so; the page's card comes with its next event.
        assert "flash-ok" in reply and 'id="lab-action"' not in reply
        assert failures == [{seats[0].pk}]
        # The failed round holds up nothing: the next answer has its card.
        reply = await second.send({"type": "bid", "round": "1", "amount": "0.2"})
        assert "flash-ok" in reply and bid_shown(reply) == pytest.approx(0.2)
    finally:
        await first.close()
        await second.close()
