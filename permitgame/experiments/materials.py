"""Instructions and the comprehension quiz, written from a scenario's own rules and numbers.

Nothing here is typed by hand per study: each sentence and each quiz answer is computed from the
frozen scenario of the participant's treatment (sim_core's parameters, e.g. ``AuditParams
.punishment`` for what a caught lab loses), so the texts cannot disagree with the game played.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sim_core import parse_scenario


@dataclass(frozen=True, slots=True)
class Question:
    key: str
    text: str
    options: tuple[str, ...]
    answer: str


def _money(value: float) -> str:
    return f"{value:.2f}"


def instructions(
    scenario_doc: Mapping[str, Any],
    *,
    role: str,
    bots: int,
    disclosure: str,
    payment: Mapping[str, Any],
) -> list[str]:
    """Return the instructions' paragraphs for a participant of this treatment."""
    scenario = parse_scenario(scenario_doc)
    labs, market, audit = scenario.labs, scenario.market, scenario.audit
    paragraphs = [
        f"You play {scenario.rounds} rounds with {labs.count} labs. Each lab starts with "
        f"{_money(labs.endowment)} points.",
        f"Each round every lab draws a value of training a model, between "
        f"{_money(labs.gross_value[0])} and {_money(labs.gross_value[1])}; training costs "
        f"{_money(labs.compute_cost)}.",
    ]
    if market.type == "clearing":
        paragraphs.append(
            f"Labs bid for {market.token_cap} permits in a sealed-bid auction; the highest bids "
            "win and every winner pays the same clearing price."
        )
    else:
        paragraphs.append(
            f"Any lab may buy a permit at the fixed price {_money(market.fixed_price)}."
        )
    paragraphs.append(
        "A lab without a permit chooses whether to train anyway. The governor sees noisy signals "
        "and chooses whom to audit. A lab audited and caught training without a permit loses "
        f"{_money(audit.punishment)} points (collateral {_money(audit.collateral)}, fine "
        f"{_money(audit.fine)}, reputation {_money(audit.reputation_penalty)})."
    )
    if role == "governor":
        paragraphs.append(
            "You are the governor: after the market, you see each lab's signal and choose audits."
        )
    if disclosure == "revealed" and bots:
        paragraphs.append(f"{bots} of the {labs.count} labs are played by computer programs.")
    elif disclosure == "revealed_at_end" and bots:
        paragraphs.append("After the game you will learn which labs were played by programs.")
    fee, rate = payment["show_up_fee"], payment["per_point"]
    pay = f"You receive {_money(fee)} {payment['currency']} for taking part"
    if rate:
        pay += f", plus {_money(rate)} per point you earn"
    if payment["cap"] is not None:
        pay += f", at most {_money(payment['cap'])} in all"
    paragraphs.append(pay + ".")
    return paragraphs


def quiz(scenario_doc: Mapping[str, Any]) -> tuple[Question, ...]:
    """Return the comprehension questions of a treatment, with answers from its rules."""
    scenario = parse_scenario(scenario_doc)
    audit, market = scenario.audit, scenario.market
    lose = _money(audit.punishment)
    options = [lose, _money(audit.fine), _money(0.0), _money(audit.punishment + audit.fine + 1)]
    questions = [
        Question(
            "caught",
            "You hold no permit and train anyway; you are audited and caught. What do you lose?",
            _ordered(options),
            lose,
        ),
        Question(
            "rounds",
            "How many rounds does the game last?",
            _ordered([str(n) for n in (scenario.rounds, scenario.rounds + 2, 1, 20)]),
            str(scenario.rounds),
        ),
    ]
    if market.type == "clearing" and market.token_cap is not None:
        cap = market.token_cap
        questions.append(
            Question(
                "permits",
                "How many permits are sold each round?",
                _ordered([str(n) for n in (cap, scenario.labs.count, cap + 1, 0)]),
                str(cap),
            )
        )
    return tuple(questions)


def _ordered(options: list[str]) -> tuple[str, ...]:
    """The distinct options in increasing order (so the answer's place tells nothing)."""
    return tuple(sorted(dict.fromkeys(options), key=float))


def grade(questions: tuple[Question, ...], answers: Mapping[str, str]) -> list[str]:
    """Return the keys of the questions answered wrongly (empty: passed)."""
    return [q.key for q in questions if answers.get(q.key) != q.answer]
