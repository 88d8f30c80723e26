"""The instructor's console: accounts, creating games, the lobby and projector, controls, debrief.

``views`` (pages and controls, each checked with ``host_selectors.game_for_host``), ``forms``
(the create-a-game form, validated through sim_core), ``consumers`` (the host socket) and
``urls`` (mounted at ``/console/``, and the login pages at ``/accounts/``). Rules stay in
sim_core, writes in ``permitgame.services``, expensive debrief parts in ``permitgame.debrief``.
"""
