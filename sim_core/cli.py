"""The command line: ``python -m sim_core run|theory`` (and the sub-commands other modules add).

Here: argument parsing, plain-text tables and JSON output. Invalid input (a bad scenario, an
unknown preset, a bad flag) exits with status 2 and one line naming the problem, never a
traceback. Not here: any rule of the model.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from sim_core.errors import SimCoreError
from sim_core.metrics import METRICS, MetricsRow
from sim_core.presets import PRESETS, load_scenario
from sim_core.simulate import run_game, theory_summary

Handler = Callable[[argparse.Namespace], int]


class UsageError(Exception):
    """A bad command line: reported on one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def whole_number(minimum: int) -> Callable[[str], int]:
    """Return an argparse type that parses an integer >= ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


positive_int = whole_number(1)
seed_int = whole_number(0)


def _format_row(row: MetricsRow) -> str:
    return (
        f"{row.round:>5} {row.price:>7.3f} {row.permits:>7} {row.violations:>10} "
        f"{row.compliance_rate:>10.3f} {row.deterrence_rate:>10.3f} {row.audits:>6} "
        f"{row.caught:>6} {row.detection_rate:>9.3f} {row.revenue:>8.3f} {row.welfare:>8.3f}"
    )


_HEADER = (
    f"{'round':>5} {'price':>7} {'permits':>7} {'violations':>10} {'compliance':>10} "
    f"{'deterrence':>10} {'audits':>6} {'caught':>6} {'detection':>9} {'revenue':>8} {'welfare':>8}"
)


def command_run(args: argparse.Namespace) -> int:
    """Run one all-bot game and print its rounds and summary."""
    scenario = load_scenario(args.scenario)
    game = run_game(scenario, seed=args.seed, rounds=args.rounds)
    if args.json:
        document = {
            "scenario": scenario.name,
            "seed": game.setup.seed,
            "rounds": [row.as_dict() for row in game.rows],
            "summary": game.summary,
        }
        print(json.dumps(document, indent=2))
        return 0
    print(f"{scenario.name}: {scenario.labs.count} labs, seed {game.setup.seed}")
    print(_HEADER)
    for row in game.rows:
        print(_format_row(row))
    print("\nmean over rounds:")
    width = max(len(name) for name in METRICS)
    for name in METRICS:
        print(f"  {name:<{width}}  {game.summary[name]:.4f}")
    return 0


def command_theory(args: argparse.Namespace) -> int:
    """Print the closed-form quantities of a scenario."""
    scenario = load_scenario(args.scenario)
    summary = theory_summary(scenario)
    if args.json:
        print(json.dumps({"scenario": scenario.name, **summary.as_dict()}, indent=2))
        return 0
    labels = {
        "punishment": "P = K + fine + R",
        "p_s": "p_s = beta*pi1 + (1-beta)*pi0",
        "p_eff": "p_eff = p_s + (1-p_s)*p_b",
        "expected_penalty": "expected penalty p_eff*P (r = 1)",
        "expected_price": "expected clearing price",
        "marginal_gain": "g* = price + rho",
        "optimal_high_prob": "pi1* at the expected price",
        "perceived_p_eff": "p_eff the labs perceive",
        "predicted_compliance": "predicted compliance",
    }
    print(f"{scenario.name}: {scenario.description}".rstrip(": "))
    for name, value in summary.as_dict().items():
        print(f"  {labels[name]:<34} {value:.4f}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of every sub-command."""
    parser = _Parser(prog="python -m sim_core", description="PermitGame's simulation core.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    scenario_help = f"a preset ({', '.join(PRESETS)}) or a scenario JSON file"

    run = commands.add_parser("run", help="play one all-bot game and print its metrics")
    run.add_argument("scenario", help=scenario_help)
    run.add_argument("--seed", type=seed_int, help="override the scenario's seed")
    run.add_argument("--rounds", type=positive_int, help="override the number of rounds")
    run.add_argument("--json", action="store_true", help="print JSON instead of a table")
    run.set_defaults(handler=command_run)

    theory = commands.add_parser("theory", help="print p_s, p_eff, pi1* and predicted compliance")
    theory.add_argument("scenario", help=scenario_help)
    theory.add_argument("--json", action="store_true", help="print JSON instead of text")
    theory.set_defaults(handler=command_theory)

    for register in EXTRA_COMMANDS:
        register(commands)
    return parser


#: Functions that add sub-commands (e.g. the sweep); each receives the sub-parsers object.
EXTRA_COMMANDS: list[Callable[[Any], None]] = []


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    try:
        args = build_parser().parse_args(argv)
        handler: Handler = args.handler
        return handler(args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except SimCoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
