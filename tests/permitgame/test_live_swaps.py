"""Every page a live socket feeds morphs the fragments in.

The fragments ask for ``hx-swap-oob="morph"``. Without idiomorph's extension on the page, htmx
falls back to an innerHTML swap, which leaves each fragment's own attributes stale (``#phase``'s
``data-phase``, which play.js reads to start the countdown and show the action).
"""

from __future__ import annotations

import re
from pathlib import Path

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"


def test_every_page_with_a_live_socket_loads_the_morph_extension():
    sockets = [
        (page, tag)
        for page in sorted(TEMPLATES.rglob("*.html"))
        for tag in re.findall(r"<[^>]*\bws-connect=[^>]*>", page.read_text())
    ]
    assert {page.name for page, _ in sockets} >= {"play.html", "game.html", "projector.html"}
    for page, tag in sockets:
        ext = re.search(r'\bhx-ext="([^"]*)"', tag)
        assert ext and "morph" in ext.group(1).split(","), f"{page}: {tag}"
    assert "vendor/htmx/idiomorph-ext.min.js" in (TEMPLATES / "base.html").read_text()
