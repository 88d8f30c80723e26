"""The shape of what players send, for the JSON protocol and htmx forms alike.

Forms check types and presence only (a number, a round, a list of lab ids); whether a move is
legal is sim_core's call, in the services. JSON sends real numbers and booleans, htmx's
``ws-send`` sends form strings: both pass through the same fields.
"""

from __future__ import annotations

import math
import re
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

#: A player id typed in a form: ASCII digits with an optional sign, nothing else ("--1", "²"
#: and "1e3" are not ids).
_ID_TEXT = re.compile(r"[+-]?[0-9]{1,9}")
#: Player ids are small (a lab's number or 0); anything beyond is not an id.
MAX_ID = 10**9
#: No game has more labs than this many ids in one audit list.
MAX_IDS = 10_000
#: Round numbers beyond this are no round of any game.
MAX_ROUND = 10**6
#: The shortest join key: a key is a random string, so a short one could be guessed.
JOIN_KEY_MIN = 16
JOIN_KEY_MAX = 64
NOT_TEXT = "must be text."
NOT_ID_LIST = "must be a list of player ids (integers)."

TRUE_WORDS = {"true", "1", "yes", "on", "run"}
FALSE_WORDS = {"false", "0", "no", "off", "idle"}


class StrictBooleanField(forms.Field):
    """A required yes/no: JSON true/false, or the words "true"/"false" from a form."""

    def to_python(self, value: Any) -> bool | None:
        if isinstance(value, bool):
            return value
        if isinstance(value, str):
            word = value.strip().lower()
            if word in TRUE_WORDS:
                return True
            if word in FALSE_WORDS:
                return False
        if value in self.empty_values:
            return None
        raise ValidationError("must be true or false.")

    def validate(self, value: Any) -> None:
        if value is None:
            raise ValidationError("is required (true or false).")


class IdListField(forms.Field):
    """A list of player ids: a JSON list of integers, or form values (one or many)."""

    def to_python(self, value: Any) -> list[int]:
        if value is None or value == "":
            return []
        items = value if isinstance(value, list) else [value]
        if len(items) > MAX_IDS:
            raise ValidationError(f"lists at most {MAX_IDS} player ids.")
        ids = []
        for item in items:
            if isinstance(item, bool):
                raise ValidationError(NOT_ID_LIST)
            if isinstance(item, int) and abs(item) <= MAX_ID:
                ids.append(item)
            elif isinstance(item, str) and _ID_TEXT.fullmatch(item.strip()):
                ids.append(int(item.strip()))
            else:
                raise ValidationError(NOT_ID_LIST)
        return ids

    def validate(self, value: Any) -> None:
        """An empty list (no audits) is a valid choice."""


class RoundField(forms.IntegerField):
    def __init__(self) -> None:
        super().__init__(min_value=1, max_value=MAX_ROUND)

    def to_python(self, value: Any) -> int | None:
        if isinstance(value, bool | float | list | dict):
            raise ValidationError("must be a round number.")
        if isinstance(value, int):
            return value
        return super().to_python(value)


class DecimalCommaFloatField(forms.FloatField):
    """A finite number; a form's text may write its decimal point as a comma ("0,25"), as phones do.

    Refused with the field's "invalid" message: booleans, lists and objects, and what no float
    holds (an integer of 400 digits, NaN, infinities).
    """

    def to_python(self, value: Any) -> float | None:  # type: ignore[override]
        if isinstance(value, bool | list | dict):
            raise ValidationError(self.error_messages["invalid"], code="invalid")
        if isinstance(value, str) and value.count(",") == 1 and "." not in value:
            value = value.replace(",", ".")
        if isinstance(value, int):
            try:
                value = float(value)
            except OverflowError:
                raise ValidationError(self.error_messages["invalid"], code="invalid") from None
        number = super().to_python(value)
        if number is not None and not math.isfinite(number):
            raise ValidationError(self.error_messages["invalid"], code="invalid")
        return number


class StrictCharField(forms.CharField):
    """Text that must arrive as text: JSON's 123, true, null-free lists or objects are refused."""

    def to_python(self, value: Any) -> str:
        if value is not None and not isinstance(value, str):
            raise ValidationError(NOT_TEXT, code="invalid")
        return str(super().to_python(value))


class StrictChoiceField(forms.ChoiceField):
    """A choice that must arrive as one of the words: ``[]`` or ``{}`` is not "no choice"."""

    def to_python(self, value: Any) -> str:
        if value is not None and not isinstance(value, str):
            words = ", ".join(f'"{key}"' for key, _ in self.choices if key)  # type: ignore[misc,union-attr]
            raise ValidationError(f"must be one of: {words}.", code="invalid")
        return str(super().to_python(value))


class BidForm(forms.Form):
    round = RoundField()
    amount = DecimalCommaFloatField(
        error_messages={
            "required": "Enter a bid (0 to go without a permit).",
            "invalid": "Enter a number, like 0.25.",
        }
    )

    def clean_amount(self) -> float:
        return float(self.cleaned_data["amount"])


class AskForm(forms.Form):
    """A permit holder's ask in the trading phase (MODEL.md §3b); ``keep`` sends no amount."""

    round = RoundField()
    amount = DecimalCommaFloatField(
        error_messages={
            "required": "Enter an ask (the least you will sell your permit for), or keep it.",
            "invalid": "Enter a number, like 0.25.",
        }
    )

    def clean_amount(self) -> float:
        amount = self.cleaned_data["amount"]
        if isinstance(self.data.get("amount"), bool):
            raise ValidationError("must be a number.")
        return float(amount)


class KeepForm(forms.Form):
    """A permit holder keeps its permit in the trading phase (MODEL.md §3b)."""

    round = RoundField()


class DecideForm(forms.Form):
    round = RoundField()
    run = StrictBooleanField()


class BeliefForm(forms.Form):
    """A lab's answer to "how likely is a violator caught this round?", in whole percent."""

    round = RoundField()
    percent = forms.IntegerField(
        min_value=0,
        max_value=100,
        error_messages={
            "required": "Choose a chance from 0 to 100 %.",
            "invalid": "Choose a chance from 0 to 100 %.",
            "min_value": "Choose a chance from 0 to 100 %.",
            "max_value": "Choose a chance from 0 to 100 %.",
        },
    )


class AuditForm(forms.Form):
    round = RoundField()
    labs = IdListField(required=False)


def _json_round(value: Any) -> int | None:
    return value if type(value) is int and 1 <= value <= MAX_ROUND else None


def _json_amount(value: Any) -> float | None:
    if type(value) is int and abs(value) <= MAX_ID:
        return float(value)
    return value if type(value) is float and math.isfinite(value) else None


def _json_labs(value: Any) -> list[int] | None:
    if value is None:
        return []
    if type(value) is not list or len(value) > MAX_IDS:
        return None
    if all(type(item) is int and abs(item) <= MAX_ID for item in value):
        return list(value)
    return None


def _json_run(value: Any) -> bool | None:
    return value if type(value) is bool else None


def _json_percent(value: Any) -> int | None:
    return value if type(value) is int and 0 <= value <= 100 else None


#: Each command form's fields as a program's JSON sends them when all is well: a reader per
#: field that returns what the form's field cleans the value to, or None for anything else
#: (a missing field is read as None: only the audit list may be left out, as in its form).
_JSON_FIELDS: dict[type[forms.Form], dict[str, Any]] = {
    BidForm: {"round": _json_round, "amount": _json_amount},
    AskForm: {"round": _json_round, "amount": _json_amount},
    KeepForm: {"round": _json_round},
    DecideForm: {"round": _json_round, "run": _json_run},
    BeliefForm: {"round": _json_round, "percent": _json_percent},
    AuditForm: {"round": _json_round, "labs": _json_labs},
}


def clean_json(form_class: type[forms.Form], content: dict[str, Any]) -> dict[str, Any] | None:
    """Return a command's fields as ``form_class`` cleans them, for the plain JSON values of a
    well-formed command (numbers, booleans, lists of ids), without building the form; None for
    anything else (a missing field, a string, a number out of range...), which the form then
    reads, and words the error of.

    A room's moves arrive together on the event loop that every socket of the process shares:
    the form costs about a tenth of a millisecond per move, this a few microseconds.
    """
    readers = _JSON_FIELDS.get(form_class)
    if readers is None:
        return None
    cleaned = {}
    for name, read in readers.items():
        value = read(content.get(name))
        if value is None:
            return None
        cleaned[name] = value
    return cleaned


class JoinForm(forms.Form):
    """The join request's shape: each field must be text (JSON's numbers, booleans, lists and
    objects are refused, as the scenario format refuses them); the nickname's rules are checked
    by the service. A ``join_key`` is a random string of 16 to 64 characters.
    """

    nickname = StrictCharField(required=False, strip=False, max_length=200)
    role = StrictChoiceField(
        required=False,
        choices=[("", "any"), ("lab", "lab"), ("governor", "governor")],
        error_messages={"invalid_choice": 'must be "lab" or "governor", not %(value)s.'},
    )
    join_key = StrictCharField(
        required=False,
        min_length=JOIN_KEY_MIN,
        max_length=JOIN_KEY_MAX,
        error_messages={
            "min_length": f"must be a random string of at least {JOIN_KEY_MIN} characters.",
            "max_length": f"must be at most {JOIN_KEY_MAX} characters.",
        },
    )


#: How an error names the field it is about (the player reads it; a field's name is code).
FIELD_WORDS = {
    "amount": "Your bid",
    "round": "The round",
    "run": "The run-or-idle choice",
    "labs": "The audit list",
    "percent": "The chance",
    "nickname": "The nickname",
    "role": "The role",
    "join_key": "The join key",
}


def form_errors(form: forms.Form) -> str:
    """Return a form's errors as one readable line, in words a player reads.

    A whole sentence ("Enter a number, like 0.25.") stands alone; a predicate ("must be a round
    number.") gets the field's words in front ("The round must be a round number."). A field's
    name (``amount``) is never shown.
    """
    parts = []
    for field, errors in form.errors.items():
        for error in errors:
            text = str(error)
            if field != "__all__" and text[:1].islower():
                text = f"{FIELD_WORDS.get(field, field.replace('_', ' ').capitalize())} {text}"
            parts.append(text)
    return " ".join(parts)
