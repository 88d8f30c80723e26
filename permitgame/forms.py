"""The shape of what players send, for the JSON protocol and htmx forms alike.

Forms check types and presence only (a number, a round, a list of lab ids); whether a move is
legal is sim_core's call, in the services. JSON sends real numbers and booleans, htmx's
``ws-send`` sends form strings: both pass through the same fields.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import ValidationError

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
        ids = []
        for item in items:
            if isinstance(item, bool):
                raise ValidationError("must be a list of player ids (integers).")
            if isinstance(item, int):
                ids.append(item)
            elif isinstance(item, str) and item.strip().lstrip("-").isdigit():
                ids.append(int(item))
            else:
                raise ValidationError("must be a list of player ids (integers).")
        return ids

    def validate(self, value: Any) -> None:
        """An empty list (no audits) is a valid choice."""


class RoundField(forms.IntegerField):
    def __init__(self) -> None:
        super().__init__(min_value=1)

    def to_python(self, value: Any) -> int | None:
        if isinstance(value, bool | float):
            raise ValidationError("must be a round number.")
        return super().to_python(value)


class DecimalCommaFloatField(forms.FloatField):
    """A number; a form's text may write its decimal point as a comma ("0,25"), as phones do."""

    def to_python(self, value: Any) -> float | None:  # type: ignore[override]
        if isinstance(value, str) and value.count(",") == 1 and "." not in value:
            value = value.replace(",", ".")
        return super().to_python(value)


class BidForm(forms.Form):
    round = RoundField()
    amount = DecimalCommaFloatField(
        error_messages={
            "required": "Enter a bid (0 to go without a permit).",
            "invalid": "Enter a number, like 0.25.",
        }
    )

    def clean_amount(self) -> float:
        amount = self.cleaned_data["amount"]
        if isinstance(self.data.get("amount"), bool):
            raise ValidationError("must be a number.")
        return float(amount)


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


class AuditForm(forms.Form):
    round = RoundField()
    labs = IdListField(required=False)


class JoinForm(forms.Form):
    """The join request's shape; the nickname's rules are checked by the service."""

    nickname = forms.CharField(required=False, strip=False, max_length=200)
    role = forms.ChoiceField(
        required=False, choices=[("", "any"), ("lab", "lab"), ("governor", "governor")]
    )
    join_key = forms.CharField(required=False, max_length=64)


def form_errors(form: forms.Form) -> str:
    """Return a form's errors as one readable line: "amount: Enter a number."."""
    parts = []
    for field, errors in form.errors.items():
        for error in errors:
            parts.append(f"{field}: {error}" if field != "__all__" else str(error))
    return " ".join(parts)
