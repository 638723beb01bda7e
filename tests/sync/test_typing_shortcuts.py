"""The typing shortcuts (sync.columns.fixed_value) read every value as F.coerce does, or leave it to it."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from playbookd.model import fields as F
from playbookd.sync.columns import Typer, fixed_value

VALUES = ["", " ", "7", "false", "yes", "no", "True", " true", "NO", "07", "-7", "1.5", "1.", ".5", "1e3",
          "\u0663", "true", "2026-11-24", "2026-11-24 ",
          " 2026-11-24", "2026-13-01", "2026-11-24T09", "2026-11-24T09:00", "2026-11-24 09:00:00",
          "2026-11-24T09:00:00Z", "2026-11-24T09:00:00.5+05:30", "2026-11-24T09:00:00-0000",
          "2026-11-24T09:00:00Zx", "2026-11-24T9:00:00", "20261124T0900", "2026-W48-1",
          "\u0662\u0660\u0662\u0666-\u0661\u0661-\u0662\u0664",  # a date in Arabic-Indic digits
          # the shape of a datetime, not one: F.coerce refuses them
          "2026-11-24T09:+05:00", "2026-11-24 09:-01", "2024-02-29T12:+04:56.7", "2026-11-24T09:00 ",
          # beyond a double's exponent: F.coerce refuses them (float() would make them infinite)
          "9" * 400, "9" * 400 + ".5", "0." + "0" * 400 + "1", "1" * 300, "1" * 299 + ".5"]


def _outcome(read: object, raw: str, kind: str) -> object:
    try:
        return read(raw, kind)  # type: ignore[operator]
    except ValueError:
        return ValueError


@pytest.mark.parametrize("kind", F.TYPES)
def test_each_shortcut_reads_a_value_as_coerce_does(kind: str) -> None:
    assert [_outcome(fixed_value, raw, kind) for raw in VALUES] == [_outcome(F.coerce, raw, kind) for raw in VALUES]


def test_a_row_types_dates_as_stored_when_asked() -> None:
    typer = Typer({"renewal_date": F.DATE, "name": F.STRING}, {})
    row = {"renewal_date": "2026-11-24", "name": "Acme", "seen": "2026-11-24T09:00:00Z", "blank": " "}
    assert typer.row(row, (), dated=True) == (
        {"renewal_date": "2026-11-24", "name": "Acme", "seen": "2026-11-24T09:00:00+00:00", "blank": None}, [])
    typed, errors = typer.row(row, ())
    assert errors == [] and typed["renewal_date"].isoformat() == "2026-11-24"


# an ISO datetime in parts, with a few of them replaced by (or dropped for) characters F.coerce may trip on
_ODD = st.text(alphabet="0123456789-:T +.Zz,W\u0663\u00b2\n", max_size=3)


@st.composite
def _mutated_iso(draw: st.DrawFn) -> str:
    parts = ["2024", "-", "02", "-", "29", draw(st.sampled_from("T ")), "12", ":", "30"]
    if draw(st.booleans()):
        parts += [":", "45"] + ([".123"] if draw(st.booleans()) else [])
    parts.append(draw(st.sampled_from(["", "Z", "+05:30", "-01:00", "-01", "+0456"])))
    for at, odd in draw(st.lists(st.tuples(st.integers(0, len(parts) - 1), _ODD), max_size=3)):
        parts[at] = odd
    return "".join(parts)


@settings(max_examples=1000, deadline=None)
@given(_mutated_iso(), st.sampled_from(sorted(F.TEMPORAL | F.NUMERIC)))
def test_the_shortcuts_read_mutated_iso_values_as_coerce_does(raw: str, kind: str) -> None:
    assert _outcome(fixed_value, raw, kind) == _outcome(F.coerce, raw, kind), raw


@pytest.mark.parametrize("raw", ["\u00b2", "\u2460", "7", "\u0663", "07", "12\u00b2"])
def test_an_inferred_column_types_a_digit_int_cannot_read_as_infer_does(raw: str) -> None:
    """"²" is a digit to str.isdigit, not to int(): text, not a refused row."""
    typed, errors = Typer({}, {}).row({"n": raw}, ())
    assert (typed["n"], errors) == (F.infer(raw)[1], [])
