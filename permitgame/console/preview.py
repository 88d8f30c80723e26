"""The create form's live preview: what the model expects of the settings being typed.

Every number comes from sim_core: the bots' expected price (rational bids capped by the penalty,
MODEL.md §7) beside the truthful one, π1*, the predicted compliance, the setup warnings, and a
few quick simulated all-bot classes when the game is small enough to play them at once. Nothing
here decides a rule; it only gathers the numbers for the template.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from sim_core import (
    Scenario,
    SetupWarning,
    expected_bot_price,
    expected_clearing_price,
    expected_trade_price,
    expected_trades,
    optimal_high_prob,
    perceived_p_eff,
    setup_warnings,
    simulate_classes,
    theory_summary,
)

#: Quick simulated classes the preview plays, and the largest game (labs × rounds) it plays.
QUICK_CLASSES = 5
QUICK_LIMIT = 400


@dataclass(frozen=True, slots=True, kw_only=True)
class SetupPreview:
    """The model's view of a setup, for the form's side panel."""

    labs: int
    cap: int | None
    fixed_price: float | None
    bot_price: float
    truthful_price: float
    bots: str
    permits_per_lab: float | None
    punishment: float
    p_eff: float
    expected_penalty: float
    optimal_high_prob: float
    predicted_compliance: float
    predicted_violations: float
    simulated_compliance: float | None
    simulated_price: float | None
    simulated_classes: int
    warnings: tuple[SetupWarning, ...]
    #: MODEL.md §3b (permits granted free, then traded): the expected traded price (truthful asks
    #: and bids; None when no trade can happen) and trades a round. None under an auction.
    traded: bool = False
    trade_price: float | None = None
    trades: float | None = None


def _bots(scenario: Scenario) -> str:
    """Name the bots' strategy mix ("rational", "70% rational, 30% reckless")."""
    mix = dict(scenario.labs.strategy)
    if len(mix) == 1:
        return next(iter(mix))
    return ", ".join(f"{share * 100:.0f}% {name}" for name, share in mix.items())


def setup_preview(scenario: Scenario, *, human_governor: bool) -> SetupPreview:
    """Return the preview of ``scenario`` (a student governor: labs expect π1 and π0)."""
    if human_governor:  # labs expect the announced π1 and π0: the bot policy "policy" (§5)
        scenario = scenario.with_changes(governor=replace(scenario.governor, policy="policy"))
    theory = theory_summary(scenario)
    labs, market = scenario.labs, scenario.market
    compliance = theory.predicted_compliance
    simulated_compliance = simulated_price = None
    classes = 0
    if labs.count * scenario.rounds <= QUICK_LIMIT:
        classes = QUICK_CLASSES
        samples = simulate_classes(scenario, classes=classes)
        simulated_compliance = float(np.median(samples["compliance_rate"]))
        simulated_price = float(np.median(samples["price"]))
    cap = market.token_cap if market.type == "clearing" else None
    bot_price = expected_bot_price(scenario)
    audit = scenario.audit
    # π1* and the p_eff labs expect at the price the bots are expected to pay (§7), not at the
    # truthful price: under weak enforcement the two differ a lot.
    best = {
        base: optimal_high_prob(
            price=bot_price,
            racing_value=labs.racing_value,
            punishment=audit.punishment,
            beta=audit.beta,
            base_prob=base,
            backcheck_prob=audit.backcheck_prob,
        )
        for base in (audit.base_prob, 0.0)
    }
    detection = perceived_p_eff(scenario, announced_high_prob=best[0.0], human_governor=False)
    return SetupPreview(
        labs=labs.count,
        cap=cap,
        fixed_price=market.fixed_price if market.type == "fixed_price" else None,
        bot_price=bot_price,
        truthful_price=expected_clearing_price(scenario),
        bots=_bots(scenario),
        permits_per_lab=None if cap is None else cap / labs.count,
        punishment=theory.punishment,
        p_eff=detection,
        expected_penalty=detection * theory.punishment,
        optimal_high_prob=best[audit.base_prob],
        predicted_compliance=compliance,
        predicted_violations=(1 - compliance) * labs.count,
        simulated_compliance=simulated_compliance,
        simulated_price=simulated_price,
        simulated_classes=classes,
        warnings=setup_warnings(scenario, human_governor=human_governor),
        traded=market.grandfathered,
        trade_price=expected_trade_price(scenario) if market.grandfathered else None,
        trades=expected_trades(scenario) if market.grandfathered else None,
    )
