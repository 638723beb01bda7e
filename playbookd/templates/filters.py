"""Jinja filters for email templates.

Filters (each passes None through, so `{{ x | date or "soon" }}` works):
    date        {{ account.renewal_date | date }} -> "March 3, 2026"; | date("%d %b") -> "03 Mar"
    money       {{ account.arr | money }} -> "$12,500"; 99.5 -> "$99.50"; | money("€")
    days_until  {{ account.renewal_date | days_until }} -> 45 (negative once past)
    first_name  {{ csm.name | first_name }} -> "Dana"
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any


def _as_date(value: Any, filter_name: str) -> date:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if not isinstance(value, date):
        raise TypeError(f"{filter_name} needs a date, got {type(value).__name__} {value!r}")
    return value


def date_filter(value: Any, fmt: str | None = None) -> str | None:
    if value is None:
        return None
    day = _as_date(value, "date")
    return day.strftime(fmt) if fmt else f"{day:%B} {day.day}, {day.year}"


def money_filter(value: Any, symbol: str = "$") -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal | str):
        raise TypeError(f"money needs a number, got {type(value).__name__} {value!r}")
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise TypeError(f"money needs a number, got {value!r}") from None
    digits = f"{abs(amount):,.0f}" if amount == amount.to_integral_value() else f"{abs(amount):,.2f}"
    return f"{'-' if amount < 0 else ''}{symbol}{digits}"


def days_until_filter(value: Any) -> int | None:
    if value is None:
        return None
    when = _as_date(value, "days_until")
    if isinstance(when, datetime):
        # an aware timestamp counts days in its own zone, so "tomorrow" means the customer's tomorrow
        return (when.date() - datetime.now(when.tzinfo).date()).days
    return (when - date.today()).days


def first_name_filter(value: Any) -> str | None:
    words = str(value).split() if value is not None else []
    return words[0] if words else None


FILTERS: dict[str, Callable[..., Any]] = {
    "date": date_filter, "money": money_filter,
    "days_until": days_until_filter, "first_name": first_name_filter,
}
