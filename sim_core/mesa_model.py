"""The game as a Mesa model (``pip install permitgame[mesa]``), for those who work in Mesa.

Here: ``PermitModel`` (a ``mesa.Model``: one ``step()`` is one round, played by
``resolve_round``), its agents ``LabAgent`` and ``GovernorAgent`` (they hold what the round did
to them; every rule stays in sim_core), and a ``DataCollector`` of the §8 metrics (model
reporters) and of each lab's wealth, permit, run and catch (agent-type reporters). Mesa's
``batch_run`` runs it over parameters; dotted scenario keys are parameters too::

    from mesa import batch_run
    from sim_core.mesa_model import PermitModel

    rows = batch_run(PermitModel, {"scenario": "targeted_audit", "seed": range(5),
                                   "audit.fine": [0.1, 0.3, 0.5]}, max_steps=10)

Randomness: every draw comes from the game's own streams (MODEL.md §11) seeded with ``seed``,
so a model gives exactly what ``run_game(scenario, seed=seed)`` gives; Mesa's own generator
(seeded with the same number) is left to the user's additions. Not imported by ``sim_core``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

try:
    import mesa
except ImportError:  # pragma: no cover - the message is the point
    raise ImportError("the Mesa adapter needs mesa: pip install permitgame[mesa]") from None

from sim_core.metrics import METRICS, MetricsRow
from sim_core.params import Scenario, parse_scenario
from sim_core.presets import load_scenario
from sim_core.round import RoundInputs, resolve_round
from sim_core.state import initial_state, make_setup
from sim_core.study.document import apply_overrides


class LabAgent(mesa.Agent):  # type: ignore[misc]
    """A lab: its strategy (a bot's, from the scenario's mix) and what the last round did.

    Attributes:
        lab: the lab's index (0-based; lab 1 on the players' screens).
        strategy: its strategy name (MODEL.md §5).
        wealth: its wealth after the last round.
        bid: its last bid.
        won: whether it held a permit last round.
        ran: whether it ran without a permit last round.
        caught: whether it was caught last round.
        payoff: its payoff of the last round.
    """

    def __init__(self, model: PermitModel, lab: int) -> None:
        """Seat lab ``lab`` of ``model``'s game."""
        super().__init__(model)
        self.lab = lab
        self.strategy = model.setup.strategy_name(lab)
        self.wealth = float(model.state.wealth[lab])
        self.bid = 0.0
        self.won = False
        self.ran = False
        self.caught = False
        self.payoff = 0.0


class GovernorAgent(mesa.Agent):  # type: ignore[misc]
    """The governor: its audit policy and the labs it audited last round."""

    def __init__(self, model: PermitModel) -> None:
        """Seat the bot governor of ``model``'s game."""
        super().__init__(model)
        self.policy = model.setup.scenario.governor.policy
        self.audited: tuple[int, ...] = ()
        self.high_prob: float | None = model.state.announced_high_prob


def _metric(name: str) -> Any:
    def report(model: PermitModel) -> float | int | None:
        row = model.last_row
        return None if row is None else getattr(row, name)

    return report


class PermitModel(mesa.Model):  # type: ignore[misc]
    """A whole all-bot game as a Mesa model: ``step()`` plays one round through the resolver.

    Args:
        scenario: a preset name, a scenario file, a scenario document or a ``Scenario``.
        seed: the game's seed (the scenario's when None); Mesa's generator gets it too.
        rounds: rounds to play before ``running`` turns False (the scenario's when None).
        **overrides: dotted scenario keys, e.g. ``**{"audit.fine": 0.5}`` (validated).
    """

    def __init__(
        self,
        scenario: str | Scenario | Mapping[str, Any] = "targeted_audit",
        *,
        seed: int | None = None,
        rounds: int | None = None,
        **overrides: Any,
    ) -> None:
        """Set the game up: draw its setup, seat its labs and its governor."""
        if isinstance(scenario, str):
            scenario = load_scenario(scenario)
        elif not isinstance(scenario, Scenario):
            scenario = parse_scenario(scenario)
        if overrides:
            scenario = apply_overrides(scenario, overrides)
        game_seed = scenario.seed if seed is None else seed
        super().__init__(seed=game_seed)
        self.scenario = scenario
        self.rounds = scenario.rounds if rounds is None else rounds
        self.setup = make_setup(scenario, seed=game_seed)
        self.state = initial_state(self.setup)
        self.rows: list[MetricsRow] = []
        self.labs = [LabAgent(self, lab) for lab in range(scenario.labs.count)]
        self.governor = GovernorAgent(self)
        self.datacollector = mesa.DataCollector(
            model_reporters={name: _metric(name) for name in METRICS},
            agenttype_reporters={
                LabAgent: {key: key for key in ("wealth", "bid", "won", "ran", "caught", "payoff")}
            },
        )

    @property
    def last_row(self) -> MetricsRow | None:
        """Return the last round's §8 metrics (None before the first step)."""
        return self.rows[-1] if self.rows else None

    def step(self) -> None:
        """Play the next round with ``resolve_round`` and collect its metrics."""
        progress = resolve_round(self.setup, self.state, RoundInputs())
        assert progress.metrics is not None and progress.next_state is not None
        assert progress.settlement is not None and progress.market is not None
        assert progress.bids is not None and progress.runs is not None
        settlement = progress.settlement
        for agent in self.labs:
            lab = agent.lab
            agent.bid = float(progress.bids[lab])
            agent.won = bool(progress.market.won[lab])
            agent.ran = bool(progress.runs[lab])
            agent.caught = bool(settlement.caught[lab])
            agent.payoff = float(settlement.payoffs[lab])
            agent.wealth = float(settlement.wealth[lab])
        audited = progress.audited
        self.governor.audited = (
            () if audited is None else tuple(int(i) for i in audited.nonzero()[0])
        )
        self.governor.high_prob = progress.announced_high_prob
        self.rows.append(progress.metrics)
        self.state = progress.next_state
        self.datacollector.collect(self)
        if len(self.rows) >= self.rounds:
            self.running = False
