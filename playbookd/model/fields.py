"""Field names and types: the well-known account and contact fields, and type inference."""

from __future__ import annotations

import re
import unicodedata
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

STRING, INTEGER, DECIMAL, BOOLEAN, DATE, DATETIME = (
    "string", "integer", "decimal", "boolean", "date", "datetime",
)
TYPES = (STRING, INTEGER, DECIMAL, BOOLEAN, DATE, DATETIME)
NUMERIC = frozenset({INTEGER, DECIMAL})
TEMPORAL = frozenset({DATE, DATETIME})

ACCOUNT_FIELDS: dict[str, str] = {
    "id": STRING,
    "name": STRING,
    "arr": DECIMAL,
    "plan": STRING,
    "lifecycle_stage": STRING,
    "status": STRING,
    "renewal_date": DATE,
    "last_login_at": DATETIME,
    "open_escalations": INTEGER,
    "nps": INTEGER,
    "health": INTEGER,
    "csm_email": STRING,
}
# Maintained by sync from the account's contacts, so playbooks can react to people leaving.
DERIVED_FIELDS: dict[str, str] = {
    "segment": STRING,
    "contacts_active": INTEGER,
    "champion_left_at": DATETIME,
    "admin_left_at": DATETIME,
}
CONTACT_FIELDS: dict[str, str] = {
    "account_id": STRING,
    "email": STRING,
    "first_name": STRING,
    "last_name": STRING,
    "role": STRING,
    "timezone": STRING,
    "status": STRING,
    "is_primary": BOOLEAN,
}
EVENT_FIELDS: dict[str, str] = {"account_id": STRING, "name": STRING, "occurred_at": DATETIME}

_INT = re.compile(r"^[+-]?\d+$")
_DEC = re.compile(r"^[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")
_TRUE, _FALSE = frozenset({"true", "yes"}), frozenset({"false", "no"})


MAX_ID = 200
_CONTROL = ("Cc", "Cf", "Zl", "Zp")  # C0/C1 controls, format characters, line and paragraph separators
SURROGATE = "Cs"  # a lone half of a UTF-16 pair: JSON can spell one ("\\ud800"), UTF-8 cannot encode it


def text_problem(value: str) -> str | None:
    """Why no database can store `value` as text, else None: a lone surrogate, which a JSON source can
    hold and which would fail the whole statement (and every row batched with it) when encoded."""
    if value.isascii():
        return None  # the usual value, without a lookup per character
    try:
        value.encode()
    except UnicodeEncodeError as exc:
        return _surrogate(value[exc.start])
    return None


def _surrogate(char: str) -> str:
    return f"contains an unpaired surrogate (U+{ord(char):04X}), which is not valid Unicode"


def id_problem(value: str) -> str | None:
    """Why `value` cannot identify an account, else None: ids reach email headers, file names and logs,
    where a line break or an invisible character corrupts what is around it."""
    if len(value) > MAX_ID:
        return f"longer than {MAX_ID} characters"
    if value.isascii() and value.isprintable():
        return None  # printable ASCII holds none of them: the usual id, without a lookup per character
    bad = next((c for c in value if unicodedata.category(c) in (*_CONTROL, SURROGATE)), None)
    if bad is None:
        return None
    if unicodedata.category(bad) == SURROGATE:
        return _surrogate(bad)
    return f"contains the control character U+{ord(bad):04X}"


def infer(raw: Any) -> tuple[str | None, Any]:
    """The type and typed value of a value with no declared type: a CSV cell, a JSON scalar, a value a
    playbook sets. Empty is (None, None); JSON and YAML scalars keep their kind; text is inferred."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None, None
    if isinstance(raw, str):
        return _infer_text(raw)
    if isinstance(raw, bool):
        return BOOLEAN, raw
    if isinstance(raw, int):
        return INTEGER, raw
    if isinstance(raw, float | Decimal):
        return DECIMAL, raw
    if isinstance(raw, datetime | date):
        return (DATETIME if isinstance(raw, datetime) else DATE), raw
    raise ValueError(f"expected a single value, got {type(raw).__name__}")


def _infer_text(text: str) -> tuple[str, Any]:
    """Integer, decimal, date, datetime, boolean, else string."""
    value = text.strip()
    lowered = value.lower()
    # only true/false: a yes/no column is often a yes/no/maybe one, and typing its first rows as
    # booleans would turn "yes" into "true" when a "maybe" widens the column to text
    if lowered in ("true", "false"):
        return BOOLEAN, lowered == "true"
    if len(value) > 1 and value[0] == "0" and value.isdigit():
        return STRING, text  # identifiers such as zip codes keep their leading zeros
    for kind in (INTEGER, DECIMAL, DATE, DATETIME):
        try:
            return kind, coerce(value, kind)
        except ValueError:
            continue
    return STRING, text


def coerce(value: Any, kind: str) -> Any:
    """Convert a raw value (CSV text, JSON scalar, YAML scalar) to `kind`; ValueError if it is not one."""
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return None
    return _COERCE[kind](value)


def _to_string(value: Any) -> str:
    if isinstance(value, (dict, list)):
        raise ValueError(f"expected text, got {type(value).__name__}")
    return str(value)


def _to_integer(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("expected an integer, got a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _INT.match(value.strip()):
        return int(value.strip())
    raise ValueError(f"expected an integer, got {value!r}")


MAX_EXPONENT = 308  # a double's: past it a value is no measurement, and as an integer it costs seconds to build


def _to_decimal(value: Any) -> int | float:
    if isinstance(value, bool):
        raise ValueError("expected a number, got a boolean")
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str) and _DEC.match(value.strip()):
        try:
            number = Decimal(value.strip())
        except InvalidOperation as exc:
            raise ValueError(f"expected a number, got {value!r}") from exc
        if not number.is_finite() or abs(number.adjusted()) > MAX_EXPONENT:  # "1e1000000": a 10-byte cell
            raise ValueError(f"number out of range (beyond 1e±{MAX_EXPONENT}): {value.strip()[:40]!r}")
        return int(number) if number == number.to_integral_value() and "." not in value else float(number)
    raise ValueError(f"expected a number, got {value!r}")


def _to_boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise ValueError(f"expected true or false, got {value!r}")


def _to_date(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str) and _DATE.match(value.strip()):
        return date.fromisoformat(value.strip())
    raise ValueError(f"expected a date (YYYY-MM-DD), got {value!r}")


def _to_datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    if isinstance(value, str):
        text = value.strip()
        if _DATETIME.match(text) or _DATE.match(text):
            try:
                return datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError:
                pass
    raise ValueError(f"expected an ISO 8601 datetime, got {value!r}")


_COERCE = {
    STRING: _to_string,
    INTEGER: _to_integer,
    DECIMAL: _to_decimal,
    BOOLEAN: _to_boolean,
    DATE: _to_date,
    DATETIME: _to_datetime,
}


def widen(old: str | None, new: str) -> str:
    """The type that holds both: integers widen to decimals, dates to datetimes, else text."""
    if old is None or old == new:
        return new
    if {old, new} <= NUMERIC:
        return DECIMAL
    if {old, new} <= TEMPORAL:
        return DATETIME
    return STRING
