"""The command line: ``python -m sim_core run|theory|sweep`` (and sub-commands others add).

Here: argument parsing, plain-text tables and JSON output. Invalid input (a bad scenario, an
unknown preset, a bad flag) exits with status 2 and one line naming the problem, never a
traceback. Not here: any rule of the model.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from sim_core.errors import SimCoreError
from sim_core.metrics import METRICS, MetricsRow
from sim_core.presets import PRESETS, load_scenario
from sim_core.sweep import (
    DEFAULT_GRID,
    DEFAULT_P_EFF_RANGE,
    DEFAULT_P_RANGE,
    SweepResult,
    run_sweep,
    sweep_scenario,
)

#: The largest grid side the command line accepts (a 1001 x 1001 map is already 10^6 cells).
MAX_GRID_SIDE = 1001

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


def _format_row(row: MetricsRow, *, trades: bool = False) -> str:
    price = "-" if row.price is None else f"{row.price:.3f}"  # §3b: no trade, no price
    return (
        f"{row.round:>5} {price:>7} {row.permits:>7} {row.violations:>10} "
        f"{row.compliance_rate:>10.3f} {row.deterrence_rate:>10.3f} {row.audits:>6} "
        f"{row.caught:>6} {row.detection_rate:>9.3f} {row.revenue:>8.3f} {row.welfare:>8.3f}"
        + (f" {row.trades:>6}" if trades else "")
    )


_HEADER = (
    f"{'round':>5} {'price':>7} {'permits':>7} {'violations':>10} {'compliance':>10} "
    f"{'deterrence':>10} {'audits':>6} {'caught':>6} {'detection':>9} {'revenue':>8} {'welfare':>8}"
)


def command_run(args: argparse.Namespace) -> int:
    """Run one all-bot game and print its rounds and summary."""
    from sim_core.simulate import run_game  # imported by the commands that use it: a quick start

    scenario = load_scenario(args.scenario)
    game = run_game(scenario, seed=args.seed, rounds=args.rounds)
    if args.json:
        document = {
            "scenario": scenario.name,
            "seed": game.setup.seed,
            "rounds": [row.as_dict() for row in game.rows],
            "summary": game.summary,  # a price of null: no round traded (MODEL.md 3b)
        }
        print(json.dumps(document, indent=2))
        return 0
    trading = scenario.market.grandfathered
    print(f"{scenario.name}: {scenario.labs.count} labs, seed {game.setup.seed}")
    if trading:
        print(f"permits granted free to {scenario.market.grant}, then traded (MODEL.md 3b)")
    print(_HEADER + (f" {'trades':>6}" if trading else ""))
    for row in game.rows:
        print(_format_row(row, trades=trading))
    print("\nmean over rounds:")
    width = max(len(name) for name in METRICS)
    for name in METRICS:
        value = game.summary[name]
        shown = "- (no round traded)" if value is None else f"{value:.4f}"
        print(f"  {name:<{width}}  {shown}")
    return 0


def command_theory(args: argparse.Namespace) -> int:
    """Print the closed-form quantities of a scenario."""
    from sim_core.simulate import theory_summary

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
    if summary.trade is not None:
        labels["expected_price"] = "expected traded price"
    for name, value in summary.as_dict().items():
        if name != "trade":
            print(f"  {labels[name]:<34} {value:.4f}")
    print(f"  governor: {GOVERNOR_NOTES[scenario.governor.policy]}")
    if summary.trade is not None:
        print(f"permits granted free to {scenario.market.grant}, then traded (MODEL.md 3b):")
        for name, value in summary.trade.as_dict().items():
            shown = "- (no trade possible)" if value is None else f"{value:.4f}"
            print(f"  {TRADE_LABELS[name]:<34} {shown}")
        print(f"  coase: {COASE_NOTE}")
    return 0


#: The lines of ``theory`` for a grandfathered scenario (MODEL.md §3b, per round, truthful labs).
TRADE_LABELS = {
    "expected_trade_price": "expected traded price",
    "expected_trades": "expected trades Q(N-Q)/N",
    "value_as_granted": "value of permits as granted",
    "value_after_trading": "value after trading (Coase)",
    "auction_revenue": "government revenue, auction",
    "grandfathered_revenue": "government revenue, granted",
    "incumbents_income": "sellers' income from trades",
}
COASE_NOTE = (
    "trading moves each permit to a lab that values it more, so the permits end with the Q labs "
    "that value them most, as an auction would place them, at about the auction's price; the "
    "money goes to the incumbents who sell instead of to the government"
)


#: What ``theory`` says of each governor policy under its table (MODEL.md §5, §6): p_s, p_eff and
#: π1* above use the scenario's π1 and π0, which only ``policy`` audits with.
GOVERNOR_NOTES = {
    "policy": "policy, audits at the scenario's pi1 and pi0 (the p_s and p_eff above)",
    "optimal": "optimal, audits at pi1* with pi0 = 0; the labs perceive the p_eff so marked",
    "none": "none, no audits; the labs perceive the backcheck alone (p_b)",
}


def grid_shape(text: str) -> tuple[int, int]:
    """Parse ``--grid AxB``: A values of P by B values of p_eff, each at least 1."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if match is None or min(int(match[1]), int(match[2])) < 1:
        raise argparse.ArgumentTypeError(
            f"expected AxB, whole numbers of P and p_eff values >= 1 (e.g. 21x21), got {text!r}"
        )
    if max(int(match[1]), int(match[2])) > MAX_GRID_SIDE:
        raise argparse.ArgumentTypeError(f"at most {MAX_GRID_SIDE} values a side, got {text!r}")
    return int(match[1]), int(match[2])


def value_range(text: str) -> tuple[float, float]:
    """Parse ``lo:hi`` (two finite numbers) for ``--p`` and ``--peff``."""
    parts = text.split(":")
    try:
        lo, hi = (float(part) for part in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected lo:hi, two numbers, got {text!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise argparse.ArgumentTypeError(f"expected finite numbers, got {text!r}")
    return lo, hi


def grid_point(text: str) -> tuple[float, float]:
    """Parse ``--mark P,p_eff``."""
    parts = text.split(",")
    try:
        punishment, detection = (float(part) for part in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected P,p_eff, two numbers, got {text!r}") from None
    if not (math.isfinite(punishment) and punishment >= 0 and 0 <= detection <= 1):
        raise argparse.ArgumentTypeError(f"expected P >= 0 and p_eff in [0, 1], got {text!r}")
    return punishment, detection


def finite_number(text: str) -> float:
    """Parse a finite number (``--threshold``)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


class ProgressBar:
    """A one-line progress bar on standard error, drawn only when it is a terminal."""

    WIDTH = 30

    def __init__(self, label: str) -> None:
        """Prepare a bar headed ``label``; nothing is drawn until the first update."""
        self.label = label
        self.enabled = sys.stderr.isatty()
        self.drawn = -1

    def __call__(self, done: int, total: int) -> None:
        """Redraw the bar at ``done`` of ``total`` (at most once per percent)."""
        percent = 100 * done // max(total, 1)
        if not self.enabled or percent == self.drawn:
            return
        self.drawn = percent
        filled = self.WIDTH * done // max(total, 1)
        bar = "#" * filled + "." * (self.WIDTH - filled)
        sys.stderr.write(f"\r{self.label} [{bar}] {percent:3d}%")
        sys.stderr.flush()

    def close(self) -> None:
        """Erase the bar."""
        if self.enabled and self.drawn >= 0:
            sys.stderr.write("\r" + " " * (len(self.label) + self.WIDTH + 8) + "\r")
            sys.stderr.flush()


def _sweep_table(result: SweepResult) -> str:
    """Return the map as text: one line per p_eff (highest first), one column per P."""
    lines = [f"{result.metric} (rows: p_eff, columns: P)"]
    lines.append("p_eff\\P " + " ".join(f"{value:>6.3g}" for value in result.p.tolist()))
    for row in range(len(result.p_eff) - 1, -1, -1):
        cells = " ".join(f"{value:>6.3f}" for value in result.values[row].tolist())
        lines.append(f"{result.p_eff[row]:>7.3g} {cells}")
    flips = " ".join("     -" if math.isnan(x) else f"{x:>6.3g}" for x in result.flip.tolist())
    theory = " ".join(
        f"{x:>6.3g}" if math.isfinite(x) else "   inf" for x in result.theory.tolist()
    )
    lines.append(f"{'flip':>7} {flips}")
    lines.append(f"{'theory':>7} {theory}")
    return "\n".join(lines)


def command_sweep(args: argparse.Namespace) -> int:
    """Sweep a scenario over a (P, p_eff) grid and write or print the heatmap (MODEL.md §9)."""
    scenario = sweep_scenario(
        load_scenario(args.scenario), labs=args.labs, rounds=args.rounds, token_cap=args.cap
    )
    bar = ProgressBar(f"sweep {scenario.name}")
    try:
        result = run_sweep(
            scenario,
            p_range=args.p,
            p_eff_range=args.peff,
            grid=args.grid,
            replicates=args.replicates,
            metric=args.metric,
            threshold=args.threshold,
            seed=args.seed,
            precision=args.precision,
            workers=args.workers,
            progress=bar,
        )
    finally:
        bar.close()
    written: list[Path] = []
    if args.out is not None:
        directory = Path(args.out)
        try:
            directory.mkdir(parents=True, exist_ok=True)
            (directory / "heatmap.csv").write_text(result.csv_text(), encoding="utf-8")
            (directory / "sweep.json").write_text(
                json.dumps(result.record(), indent=1) + "\n", encoding="utf-8"
            )
        except OSError as exc:
            raise UsageError(f"cannot write to {directory}: {exc.strerror or exc}") from None
        written += [directory / "heatmap.csv", directory / "sweep.json"]
        if not args.no_plot:
            from sim_core.plot import save_heatmap  # matplotlib only when a figure is wanted

            written += save_heatmap(result, directory, mark=args.mark)
    if args.json:
        print(json.dumps(result.document()))
        return 0
    print(_sweep_table(result))
    for path in written:
        print(f"wrote {path}")
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

    sweep = commands.add_parser(
        "sweep",
        help="the deterrence heatmap: every (P, p_eff) cell of a grid, replicated (MODEL.md 9)",
    )
    sweep.add_argument("scenario", help=scenario_help)
    sweep.add_argument(
        "--grid",
        type=grid_shape,
        default=DEFAULT_GRID,
        metavar="AxB",
        help="A values of P by B values of p_eff (default 21x21)",
    )
    sweep.add_argument(
        "--p",
        type=value_range,
        default=DEFAULT_P_RANGE,
        metavar="LO:HI",
        help="range of the punishment P = K + fine + R (default 0.2:0.8)",
    )
    sweep.add_argument(
        "--peff",
        type=value_range,
        default=DEFAULT_P_EFF_RANGE,
        metavar="LO:HI",
        help="range of the detection probability p_eff (default 0.25:0.75)",
    )
    sweep.add_argument(
        "--replicates", type=positive_int, default=20, help="games per cell (default 20)"
    )
    sweep.add_argument("--rounds", type=positive_int, help="rounds per game (default: scenario's)")
    sweep.add_argument(
        "--labs",
        type=positive_int,
        help="number of labs; the cap scales with it unless --cap is given",
    )
    sweep.add_argument("--cap", type=whole_number(0), help="permits per round, Q")
    sweep.add_argument("--seed", type=seed_int, help="the sweep's seed (default: scenario's)")
    sweep.add_argument(
        "--metric",
        choices=METRICS,
        default="compliance_rate",
        help="the metric on the map (default compliance_rate)",
    )
    sweep.add_argument(
        "--threshold",
        type=finite_number,
        default=0.9,
        help="level of the behaviour flip line (default 0.9)",
    )
    sweep.add_argument(
        "--mark",
        type=grid_point,
        metavar="P,P_EFF",
        help="mark a point, e.g. a game's own parameters",
    )
    sweep.add_argument(
        "--out",
        metavar="DIR",
        help="write heatmap.png, heatmap.svg, heatmap.csv and sweep.json here",
    )
    sweep.add_argument(
        "--no-plot",
        action="store_true",
        help="skip the figures (and never load the plotting library)",
    )
    sweep.add_argument(
        "--json",
        action="store_true",
        help="print the map as JSON: p, p_eff, metric, values, stderr, flip, theory",
    )
    sweep.add_argument(
        "--precision",
        choices=("float32", "float64"),
        default="float32",
        help="float32 (default, fast) or float64 (equal to games number for number)",
    )
    sweep.add_argument(
        "--workers", type=positive_int, help="processes to use (default: one per CPU)"
    )
    sweep.set_defaults(handler=command_sweep)

    # The parameter study (docs/studies.md); pyarrow, Dask and the rest load only when it runs.
    from sim_core.study.command import add_parser as add_study

    add_study(commands, positive_int)
    return parser


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
    except MemoryError:
        print(
            "error: not enough memory for this run; use fewer labs, rounds or replicates",
            file=sys.stderr,
        )
        return 2
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
