"""Reading csv and jsonl sources: renames, line numbers, unreadable files."""

from __future__ import annotations

import json
from pathlib import Path

import pydantic
import pytest

from playbookd.config.settings import Source
from playbookd.sources.base import Row, SourceError
from playbookd.sources.registry import read_rows, source_columns


def source(path: Path, kind: str = "csv", **extra: object) -> Source:
    return Source.model_validate({"name": "crm", "kind": kind, "entity": "accounts", "path": path, **extra})


def rows(src: Source) -> list[Row]:
    return list(read_rows(src))


def test_csv_rows_carry_physical_line_numbers_across_quoted_newlines(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text('id,note,arr\nA1,"two\nlines",10\nA2,plain,20\n\nA3,"three\r\nline\ncell",30\n')
    got = rows(source(path))
    assert [(r.line, r.values["id"]) for r in got] == [(2, "A1"), (4, "A2"), (6, "A3")]
    assert got[0].values == {"id": "A1", "note": "two\nlines", "arr": "10"}
    assert got[2].values["note"] == "three\r\nline\ncell"


def test_csv_renames_are_ours_from_theirs_and_columns_follow(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("\ufeffaccount_number,annual_revenue,plan\nA1,5,pro\n")
    src = source(path, fields={"id": "account_number", "arr": "annual_revenue"})
    assert source_columns(src) == ["id", "arr", "plan"]
    assert rows(src)[0].values == {"id": "A1", "arr": "5", "plan": "pro"}


def test_csv_short_rows_supply_empty_cells_and_long_rows_are_errors(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("id,name,arr\nA1,Acme\nA2,Beta,3,extra\n")
    short, long = rows(source(path))
    assert short.values == {"id": "A1", "name": "Acme", "arr": ""} and short.error is None
    assert (long.line, long.error) == (3, "row has 4 cells but the header has 3")


@pytest.mark.parametrize(("text", "reason"), [
    ("", "empty file, expected a header row"),
    ("id,,arr\n", "header column 2 has no name"),
    ("id,arr,annual_revenue\n", "header names column 'arr' twice (after renames)"),
])
def test_csv_bad_header_is_a_source_error(tmp_path: Path, text: str, reason: str) -> None:
    path = tmp_path / "a.csv"
    path.write_text(text)
    src = source(path, fields={"arr": "annual_revenue"})
    with pytest.raises(SourceError) as caught:
        rows(src)
    assert str(caught.value) == f"{path}:1: {reason}"
    with pytest.raises(SourceError):
        source_columns(src)


def test_missing_file_and_directory_say_which_file(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"nope\.csv: no such file \(source crm\)"):
        rows(source(tmp_path / "nope.csv"))
    with pytest.raises(SourceError, match="is a directory"):
        rows(source(tmp_path))


def test_csv_that_is_not_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_bytes(b"id,name\nA1,ok\nA2,caf\xe9\n")
    with pytest.raises(SourceError, match="not valid UTF-8"):
        rows(source(path))


def test_jsonl_rows_bad_lines_and_renames(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text('{"acct": "A1", "arr": 5}\n\n{"acct": "A2", oops}\n[1, 2]\n{"acct": "A3", "x": null}\n')
    got = rows(source(path, kind="jsonl", fields={"id": "acct"}))
    assert [(r.line, r.error) for r in got] == [
        (1, None),
        (3, "bad JSON: Expecting property name enclosed in double quotes at column 16"),
        (4, "expected a JSON object, got list"),
        (5, None),
    ]
    assert got[0].values == {"id": "A1", "arr": 5}
    assert got[3].values == {"id": "A3", "x": None}


def test_jsonl_columns_come_from_the_first_hundred_lines(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    lines = [json.dumps({"id": f"A{i}", "a": 1}) for i in range(100)] + ['{"id": "late", "b": 2}']
    path.write_text("\n".join(lines) + "\n")
    assert source_columns(source(path, kind="jsonl")) == ["id", "a"]


def test_csv_source_without_path_is_refused_at_config_load() -> None:
    with pytest.raises(pydantic.ValidationError, match="kind csv needs path"):
        Source.model_validate({"name": "crm", "kind": "csv", "entity": "accounts"})
