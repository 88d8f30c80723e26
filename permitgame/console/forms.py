"""The instructor's forms: create a game (and save its settings as a preset), controls.

``GameSetupForm`` checks the *shape* of what the instructor typed (numbers, whole numbers,
choices) and builds a scenario document from the chosen preset plus the fields; whether the
values are allowed is sim_core's call (``parse_scenario``), and its message, which names the
dotted scenario key, is shown under the field it concerns. Each field's help text says what it
means in the model (MODEL.md's names and symbols).
"""

from __future__ import annotations

from typing import Any

from django import forms

from permitgame.models import DEFAULT_DURATIONS, Coaching, SavedPreset
from sim_core import (
    POLICIES,
    PRESETS,
    STRATEGY_NAMES,
    Scenario,
    ScenarioError,
    load_preset,
    parse_scenario,
    scenario_to_dict,
    sweep_scenario,
)

PRESET_DESCRIPTIONS = {
    "no_enforcement": "Scenario 1: a cap with no audits at all.",
    "random_audit": "Scenario 2: every lab without a permit is audited at the same rate.",
    "targeted_audit": "Scenario 3: audits follow noisy signals, at the optimal rate π1*.",
    "carbon_tax": "A fixed permit price with unlimited supply (a tax), signal-led audits.",
}

POLICY_CHOICES = [
    ("policy", "policy: π1 and π0 as set"),
    ("optimal", "optimal: π1* each round"),
    ("none", "none: no audits"),
]
assert [name for name, _ in POLICY_CHOICES] == list(POLICIES)

STRATEGY_HELP = {
    "rational": "bids what a permit is worth to it; runs unpermitted iff that pays in expectation",
    "truthful": "bids its full net value; runs unpermitted iff that pays",
    "compliant": "bids its net value; never runs without a permit",
    "reckless": "never bids; always runs",
    "adaptive": "rational, learning the real detection rate from the public news",
    "random": "bids at random; runs unpermitted half of the time",
}

#: Form field -> the scenario key it sets (sim_core's messages name the key).
FIELD_KEYS: dict[str, str] = {
    "rounds": "rounds",
    "labs": "labs.count",
    "market_type": "market.type",
    "token_cap": "market.token_cap",
    "fixed_price": "market.fixed_price",
    "allocation": "market.allocation",
    "grant": "market.grant",
    "fine": "audit.fine",
    "collateral": "audit.collateral",
    "alpha": "audit.alpha",
    "beta": "audit.beta",
    "high_prob": "audit.high_prob",
    "base_prob": "audit.base_prob",
    "backcheck_prob": "audit.backcheck_prob",
    "max_audits": "audit.max_audits",
    "policy": "governor.policy",
    "seed": "seed",
}
SHARE_PREFIX = "share_"
#: How big a game one class's server makes (a guard on the form, not a rule of the model).
MAX_LABS = 1000
MAX_ROUNDS = 100
#: What the form calls scenario keys that no single field sets.
SECTION_LABELS = {"labs.strategy": "Bot strategy", "market": "Market"}
CAP_NEEDED = "Enter a whole number; a cap-and-trade market sells Q permits each round."
PRICE_NEEDED = "Enter a number; a fixed-price market sells every permit at this price."
PHASES = tuple(str(phase) for phase in DEFAULT_DURATIONS)
DURATION_SUFFIX = "_seconds"


def preset_choices(presets: list[SavedPreset]) -> list[tuple[str, Any]]:
    """Return the grouped choices of the preset menu: the shipped presets, then the user's own."""
    shipped = [(name, name.replace("_", " ")) for name in PRESETS]
    choices: list[tuple[str, Any]] = [("Presets", shipped)]
    if presets:
        choices.append(("My presets", [(f"saved:{p.pk}", p.name) for p in presets]))
    return choices


def initial_from(
    scenario: Scenario, *, human_governor: bool, durations: dict[str, Any], preset: str
) -> dict[str, Any]:
    """Return the form's initial values for a scenario and game settings."""
    labs, market, audit = scenario.labs, scenario.market, scenario.audit
    initial: dict[str, Any] = {
        "preset": preset,
        "rounds": scenario.rounds,
        "labs": labs.count,
        "market_type": market.type,
        "token_cap": market.token_cap,
        "fixed_price": market.fixed_price if market.type == "fixed_price" else None,
        "allocation": market.allocation,
        "grant": market.grant,
        "fine": audit.fine,
        "collateral": audit.collateral,
        "alpha": audit.alpha,
        "beta": audit.beta,
        "high_prob": audit.high_prob,
        "base_prob": audit.base_prob,
        "backcheck_prob": audit.backcheck_prob,
        "max_audits": audit.max_audits,
        "governor": "human" if human_governor else "bot",
        "policy": scenario.governor.policy,
        "seed": scenario.seed,
        "auto_cap": market.token_cap,
        "coaching": Coaching.FULL,
    }
    for name in STRATEGY_NAMES:
        initial[SHARE_PREFIX + name] = labs.strategy.get(name, 0.0)
    for phase in PHASES:
        initial[phase + DURATION_SUFFIX] = durations.get(phase, DEFAULT_DURATIONS[phase])
    return initial


def _number(label: str, help_text: str, *, required: bool = True, step: str = "any") -> Any:
    return forms.FloatField(
        label=label,
        help_text=help_text,
        required=required,
        widget=forms.NumberInput(attrs={"step": step, "inputmode": "decimal"}),
    )


def _probability(label: str, help_text: str) -> Any:
    return forms.FloatField(
        label=label,
        help_text=help_text,
        widget=forms.NumberInput(attrs={"step": "0.01", "min": "0", "max": "1"}),
    )


class GameSetupForm(forms.Form):
    """Create a game: a preset, then the parameters that matter in class."""

    preset = forms.ChoiceField(
        label="Start from",
        help_text="A scenario whose values fill this form; every other key keeps its value.",
    )
    title = forms.CharField(
        label="Title",
        required=False,
        max_length=100,
        help_text="For your list of games, e.g. the class and date.",
    )
    rounds = forms.IntegerField(
        label="Rounds",
        max_value=MAX_ROUNDS,
        help_text="How many rounds the game plays.",
        widget=forms.NumberInput(attrs={"min": "1"}),
    )
    labs = forms.IntegerField(
        label="Labs (N)",
        max_value=MAX_LABS,
        help_text="Lab seats. Students take them as they join; bots play every seat left over.",
        widget=forms.NumberInput(attrs={"min": "1"}),
    )
    market_type = forms.ChoiceField(
        label="Market",
        choices=[("clearing", "cap-and-trade"), ("fixed_price", "fixed price (a tax)")],
        help_text=(
            "How permits are sold (MODEL.md §3): cap-and-trade auctions Q permits each round; "
            "a fixed price sells any number of permits at one price."
        ),
    )
    token_cap = forms.IntegerField(
        label="Token cap (Q)",
        required=False,
        help_text=(
            "Permits sold per round (cap-and-trade). The price is the Q-th highest bid. It "
            "scales with the number of labs until you type one."
        ),
    )
    #: The cap the page filled in (the preset's, then scaled with the labs): a cap equal to it
    #: was not typed, so it scales with the number of labs as ``creategame --labs`` does.
    auto_cap = forms.IntegerField(required=False, widget=forms.HiddenInput)
    fixed_price = _number(
        "Fixed price",
        "The price of a permit when the market is a fixed price; leave empty for cap-and-trade.",
        required=False,
    )
    allocation = forms.ChoiceField(
        label="Permits",
        choices=[("auction", "sold at auction"), ("grandfathered", "granted free, then traded")],
        initial="auction",
        required=False,
        help_text=(
            "Cap-and-trade only (MODEL.md §3b): the Q permits are auctioned, or granted free "
            "and traded among the labs (holders ask or keep, the others bid)."
        ),
    )
    grant = forms.ChoiceField(
        label="Granted to",
        choices=[
            ("incumbents", "incumbents (the same labs every round)"),
            ("lottery", "a lottery each round"),
        ],
        initial="incumbents",
        required=False,
        help_text="Who holds the granted permits when they are granted free.",
    )
    fine = _number("Fine (φ)", "Paid by a violator who is caught.")
    collateral = _number(
        "Collateral (K)", "A bond every lab holds each round, forfeited if caught."
    )
    alpha = _probability(
        "False alarms (α)", "Chance that a compliant lab still raises a suspicious signal."
    )
    beta = _probability("Signal strength (β)", "Chance that a violating lab raises a signal.")
    high_prob = _probability(
        "Audit after a signal (π1)", "Chance that the governor audits a lab with a signal."
    )
    base_prob = _probability(
        "Audit without a signal (π0)", "Chance that the governor audits a lab with no signal."
    )
    backcheck_prob = _probability(
        "Backcheck (p_b)", "Chance that an unaudited violator is caught later anyway."
    )
    max_audits = forms.IntegerField(
        label="Audit cap",
        required=False,
        help_text="At most this many audits per round; leave empty for no cap.",
    )
    governor = forms.ChoiceField(
        label="Governor",
        choices=[
            ("bot", "a bot, with the policy below"),
            ("human", "a student (you pick who in the lobby)"),
        ],
        help_text="Who chooses the audits. Labs expect a student governor to follow π1 and π0.",
    )
    policy = forms.ChoiceField(
        label="Bot governor's policy",
        choices=POLICY_CHOICES,
        help_text=(
            "How a bot governor audits (MODEL.md §6): policy audits at π1 after a signal and π0 "
            "otherwise; optimal sets π0 = 0 and the optimal π1* at each round's price; none "
            "never audits (only the backcheck catches). Labs expect this policy."
        ),
    )
    coaching = forms.ChoiceField(
        label="Coaching",
        choices=Coaching.choices,
        initial=Coaching.FULL,
        help_text=(
            "What a lab without a permit is shown before it chooses to run or idle: the "
            "numbers and whether running pays on average (full), the numbers alone (value, "
            "price, detection and penalty), or nothing (none)."
        ),
    )
    ask_belief = forms.BooleanField(
        label="Ask what labs believe",
        required=False,
        help_text=(
            "Before a lab without a permit chooses to run or idle, ask it (optional, one tap) "
            "how likely a violator is caught this round; the debrief plots the answers against "
            "the announced and the realised detection."
        ),
    )
    seed = forms.IntegerField(
        label="Seed",
        required=False,
        help_text="Every random draw derives from it: the same seed replays the same values.",
    )
    live_standings = forms.BooleanField(
        label="Live standings",
        required=False,
        help_text=(
            "Off (the default): each lab sees only its own payoffs while the game runs; places "
            "and scores are shown when the game ends. On: each lab also sees its place among the "
            "labs (“2nd of 12”) after every round, which reveals when other labs' payoffs "
            "moved, e.g. that a lab without a permit ran, or was caught."
        ),
    )
    save_as = forms.CharField(
        label="Preset name",
        required=False,
        max_length=60,
        help_text="To save these settings as one of your presets.",
    )

    def __init__(self, *args: Any, presets: list[SavedPreset] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.presets = {f"saved:{p.pk}": p for p in presets or []}
        preset_field = self.fields["preset"]
        assert isinstance(preset_field, forms.ChoiceField)
        preset_field.choices = preset_choices(list(presets or []))
        for name in STRATEGY_NAMES:
            self.fields[SHARE_PREFIX + name] = forms.FloatField(
                label=name,
                required=False,
                help_text=STRATEGY_HELP[name],
                widget=forms.NumberInput(attrs={"step": "0.05", "min": "0", "max": "1"}),
            )
        for phase in PHASES:
            self.fields[phase + DURATION_SUFFIX] = forms.IntegerField(
                label=phase.capitalize(),
                required=False,
                min_value=0,
                help_text="seconds; empty = no time limit",
                widget=forms.NumberInput(attrs={"step": "1", "min": "0"}),
            )
        self.scenario: Scenario | None = None
        #: The cap the form scaled with the number of labs (None: kept as typed).
        self.scaled_cap: int | None = None

    # -------------------------------------------------------------------------- reading

    def base_scenario(self) -> Scenario:
        """Return the scenario of the chosen preset (a shipped one or the user's own)."""
        choice = self.cleaned_data.get("preset") or "targeted_audit"
        if choice in self.presets:
            return parse_scenario(self.presets[choice].scenario)
        return load_preset(choice)

    def strategy_fields(self) -> list[forms.BoundField]:
        return [self[SHARE_PREFIX + name] for name in STRATEGY_NAMES]

    def duration_fields(self) -> list[forms.BoundField]:
        return [self[phase + DURATION_SUFFIX] for phase in PHASES]

    def durations(self) -> dict[str, int | None]:
        """Return the phase durations typed (None: no time limit)."""
        return {phase: self.cleaned_data.get(phase + DURATION_SUFFIX) for phase in PHASES}

    def human_governor(self) -> bool:
        return self.cleaned_data.get("governor") == "human"

    def scenario_document(self, base: Scenario) -> dict[str, Any]:
        """Return ``base``'s complete document with the typed values in place."""
        data = self.cleaned_data
        document = scenario_to_dict(base)
        document["rounds"] = data.get("rounds")
        document["labs"]["count"] = data.get("labs")
        shares = {
            name: data.get(SHARE_PREFIX + name)
            for name in STRATEGY_NAMES
            if data.get(SHARE_PREFIX + name)
        }
        document["labs"]["strategy"] = shares
        market: dict[str, Any] = {
            "type": data.get("market_type"),
            "reserve_price": document["market"]["reserve_price"],
        }
        if data.get("token_cap") is not None or data.get("market_type") == "clearing":
            market["token_cap"] = data.get("token_cap")
        if data.get("market_type") == "fixed_price" or data.get("fixed_price") is not None:
            market["fixed_price"] = data.get("fixed_price")
        if data.get("allocation") == "grandfathered":  # MODEL.md §3b
            market["allocation"] = "grandfathered"
            market["grant"] = data.get("grant") or "incumbents"
            market["reserve_price"] = 0.0
        document["market"] = market
        for field, key in FIELD_KEYS.items():
            section, _, name = key.partition(".")
            if section in ("audit", "governor") and field in data:
                document[section][name] = data[field]
        if data.get("seed") is not None:
            document["seed"] = data["seed"]
        return document

    def clean(self) -> dict[str, Any]:
        """Build the scenario and let sim_core judge it; put its message under the field."""
        cleaned = super().clean() or {}
        if self.errors:
            return cleaned
        # Shape first: the number the chosen market needs must be there.
        if cleaned.get("market_type") == "clearing" and cleaned.get("token_cap") is None:
            self.add_error("token_cap", CAP_NEEDED)
            return cleaned
        if cleaned.get("market_type") == "fixed_price" and cleaned.get("fixed_price") is None:
            self.add_error("fixed_price", PRICE_NEEDED)
            return cleaned
        base = self.base_scenario()
        self.scale_cap(base, cleaned)
        try:
            self.scenario = parse_scenario(self.scenario_document(base), default_name=base.name)
        except ScenarioError as error:
            field = self.field_of(error.key)
            self.add_error(field, self.error_message(error, field))
        return cleaned

    def scale_cap(self, base: Scenario, cleaned: dict[str, Any]) -> None:
        """Scale a cap the instructor did not type with the labs, as ``creategame`` does.

        A cap equal to ``auto_cap`` (the one the page filled in) was not typed: it becomes the
        preset's cap scaled to the number of labs by sim_core's ``sweep_scenario``.
        """
        labs, cap, auto = cleaned.get("labs"), cleaned.get("token_cap"), cleaned.get("auto_cap")
        if cleaned.get("market_type") != "clearing" or auto is None or cap != auto:
            return
        if base.market.token_cap is None or labs is None or labs < 1:
            return
        scaled = sweep_scenario(base, labs=labs).market.token_cap
        if scaled is not None and scaled != cap:
            cleaned["token_cap"] = scaled
            self.scaled_cap = scaled

    def coaching_level(self) -> str:
        return str(self.cleaned_data.get("coaching") or Coaching.FULL)

    def error_message(self, error: ScenarioError, field: str | None) -> str:
        """Return sim_core's message with the field's label in place of the scenario key."""
        message = str(error)
        key = error.key
        if not key or not message.startswith(key):
            return message
        if field is not None:
            label = str(self.fields[field].label)
        else:
            label = next(
                (name for prefix, name in SECTION_LABELS.items() if key.startswith(prefix)), key
            )
        return f"{label}{message[len(key) :]}"

    def full_clean(self) -> None:
        """Validate, then make every field's message name its field (it is read out alone)."""
        super().full_clean()
        found = self.errors  # set by full_clean: reading it does not validate again
        for name, errors in list(found.items()):
            if name not in self.fields:
                continue
            label = str(self.fields[name].label)
            # The message is read with the field, after its help text.
            self.fields[name].widget.attrs["aria-describedby"] = (
                f"id_{name}_helptext id_{name}_error"
            )
            texts = [str(text) for text in errors]
            found[name] = self.error_class(
                [text if text.startswith(label) else f"{label}: {text}" for text in texts],
                renderer=self.renderer,
            )

    def field_of(self, key: str) -> str | None:
        """Return the form field that sets scenario ``key`` (None: a form-wide error)."""
        for field, field_key in FIELD_KEYS.items():
            if key == field_key or key.startswith(field_key + "["):
                return field
        if key.startswith("labs.strategy."):
            name = key.removeprefix("labs.strategy.")
            if SHARE_PREFIX + name in self.fields:
                return SHARE_PREFIX + name
        return None


class ExtendForm(forms.Form):
    seconds = forms.IntegerField(min_value=1, max_value=3600)


class HandForm(forms.Form):
    """``to_bot``: "1" hands the seat to its bot, "0" gives it back to its player."""

    to_bot = forms.TypedChoiceField(
        choices=[("1", "to a bot"), ("0", "back to the player")], coerce=lambda value: value == "1"
    )


class GovernorForm(forms.Form):
    """``seat``: a seat id, or "bot" for a bot governor."""

    seat = forms.CharField()

    def clean_seat(self) -> int | None:
        value = str(self.cleaned_data["seat"]).strip()
        if value == "bot":
            return None
        # ASCII digits only: str.isdigit() also accepts "²", which int() refuses.
        if not (value.isascii() and value.isdigit()) or len(value) > 18:
            raise forms.ValidationError("Choose a player or a bot.")
        return int(value)


class RemoveBotForm(forms.Form):
    seat = forms.IntegerField(required=False)
