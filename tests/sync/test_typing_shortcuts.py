"""The typing shortcuts (sync.columns.fixed_value) read every value as F.coerce does, or leave it to it."""

from __future__ import annotations

import pytest

from playbookd.model import fields as F
from playbookd.sync.columns import Typer, fixed_value

VALUES = ["", " ", "7", "07", "-7", "1.5", "1.", ".5", "1e3", "\u0663", "true", "2026-11-24", "2026-11-24 ",
          " 2026-11-24", "2026-13-01", "2026-11-24T09", "2026-11-24T09:00", "2026-11-24 09:00:00",
          "2026-11-24T09:00:00Z", "2026-11-24T09:00:00.5+05:30", "2026-11-24T09:00:00-0000",
          "2026-11-24T09:00:00Zx", "2026-11-24T9:00:00", "20261124T0900", "2026-W48-1",
          "\u0662\u0660\u0662\u0666-\u0661\u0661-\u0662\u0664"]  # a date in Arabic-Indic digits


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
