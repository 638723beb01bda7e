"""Reading csv and jsonl sources: renames, line numbers, unreadable files."""

from __future__ import annotations

import json
import os
import tracemalloc
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


def test_a_byte_that_is_not_utf8_is_a_problem_of_its_own_line_and_column(tmp_path: Path) -> None:
    lines = [f"A{i},Account {i}" for i in range(2, 3001)]
    lines[1499] = "A1501,caf\udce9 et cr\u00e8me"  # line 1501: a Latin-1 é between good UTF-8
    path = tmp_path / "a.csv"
    path.write_bytes(("id,name\n" + "\n".join(lines) + "\n").encode("utf-8", "surrogateescape"))
    got = rows(source(path))
    assert [(r.line, r.error) for r in got if r.error] == [(1501, "not valid UTF-8: byte 0xe9 at column 10")]
    good = [r for r in got if not r.error]
    assert len(good) == 2998 and good[-1].values == {"id": "A3000", "name": "Account 3000"}


def test_a_bad_byte_inside_a_multiline_cell_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_bytes(b'id,note\nA1,"one\ntw\xff\nthree"\nA2,fine\n')
    first, second = rows(source(path))
    assert (first.line, first.error) == (2, "line 3: not valid UTF-8: byte 0xff at column 3")
    assert (second.line, second.values, second.error) == (5, {"id": "A2", "note": "fine"}, None)


def test_a_header_that_is_not_utf8_is_a_source_error(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_bytes(b"id,n\xe4me\nA1,x\n")
    with pytest.raises(SourceError, match=r"a\.csv:1: header: not valid UTF-8: byte 0xe4 at column 5"):
        rows(source(path))


def test_jsonl_bad_byte_is_a_problem_of_its_line(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_bytes(b'{"id": "A1"}\n{"id": "A2", "name": "\xc3"}\n{"id": "A3"}\n')
    got = rows(source(path, kind="jsonl"))
    assert [(r.line, r.error) for r in got] == [(1, None), (2, "not valid UTF-8: byte 0xc3 at column 23"),
                                                (3, None)]


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


def peak_while_reading(src: Source, max_field_bytes: int = 65_536) -> tuple[list[Row], int]:
    tracemalloc.start()
    try:
        got = list(read_rows(src, max_field_bytes))
        return got, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_ten_megabyte_csv_field_is_a_row_problem_read_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    with path.open("w") as out:
        out.write("id,name,note\nA1,Acme,short\n")
        out.write("A2,Beta," + "x" * 10_000_000 + "\n")
        out.write('A3,Gamma,"quoted, with ""quotes"""\n')
    got, peak = peak_while_reading(source(path))
    assert [(r.line, r.values, r.error) for r in got] == [
        (2, {"id": "A1", "name": "Acme", "note": "short"}, None),
        (3, {}, "row longer than 393227 characters, so a value in it is over limits.max_field_bytes (65536); "
                "not read"),
        (4, {"id": "A3", "name": "Gamma", "note": 'quoted, with "quotes"'}, None),
    ]
    assert peak < 2_000_000  # the 10 MB line was never held whole


def test_a_field_over_the_limit_but_within_the_row_bound_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("id,name,note\nA1,Acme," + "é" * 200 + "\nA2,Beta,ok\n")
    first, second = rows(source(path))  # limit 256 below: 200 é are 400 bytes
    got = list(read_rows(source(path), 256))
    assert (got[0].line, got[0].values, got[0].error) == (
        2, {"id": "A1", "name": "Acme"}, "note: 400 bytes, over limits.max_field_bytes (256)")
    assert got[1].error is None and first.error is None and second.error is None


def test_an_oversized_multiline_cell_keeps_the_rows_after_it_in_step(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    body = "\n".join(["A9,Fake,100"] + ["y" * 900] * 5)  # what a misread would take for rows
    path.write_text(f'id,name,note\nA1,Acme,"{body}\n"\nA2,"Beta ""B""",ok\nA3,Gamma,"two\nlines"\n')
    got = list(read_rows(source(path), 256))
    assert [(r.line, r.values.get("id"), r.error is not None) for r in got] == [
        (2, None, True), (9, "A2", False), (10, "A3", False)]
    assert got[1].values["name"] == 'Beta "B"' and got[2].values["note"] == "two\nlines"


def test_a_ten_megabyte_json_value_is_a_row_problem_read_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    with path.open("w") as out:
        out.write(json.dumps({"id": "A1", "name": "Acme"}) + "\n")
        out.write(json.dumps({"id": "A2", "name": "x" * 10_000_000}) + "\n")
        out.write(json.dumps({"id": "A3", "name": "y" * 5000}) + "\n")
        out.write(json.dumps({"id": "A4", "deep": [[[1]]]}) + "\n")
        out.write('{"id": "A5", "n": ' + "9" * 5000 + "}\n")
        out.write('{"id": "A6", "n": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
    got, peak = peak_while_reading(source(path, kind="jsonl"), 4096)
    assert [(r.line, r.values, r.error) for r in got][:4] == [
        (1, {"id": "A1", "name": "Acme"}, None),
        (2, {}, "line longer than 262144 characters (64 values of limits.max_field_bytes, 4096); not read"),
        (3, {"id": "A3"}, "name: 5000 bytes, over limits.max_field_bytes (4096)"),
        (4, {"id": "A4", "deep": [[[1]]]}, None),
    ]
    assert got[4].error is not None and "digits" in got[4].error
    assert got[5].error == "bad JSON: nested too deeply"
    assert peak < 2_000_000  # the 10 MB line was never held whole


@pytest.mark.parametrize("change", ["truncate", "append", "replace", "touch"])
@pytest.mark.parametrize("kind", ["csv", "jsonl"])
def test_a_file_that_changes_while_it_is_read_is_refused(tmp_path: Path, change: str, kind: str) -> None:
    path = tmp_path / f"a.{kind}"
    lines = [json.dumps({"id": f"A{i}"}) if kind == "jsonl" else f"A{i}" for i in range(3000)]
    path.write_text(("" if kind == "jsonl" else "id\n") + "\n".join(lines) + "\n")
    reading = read_rows(source(path, kind=kind))
    assert [next(reading).error for _ in range(1500)] == [None] * 1500
    if change == "truncate":
        os.truncate(path, path.stat().st_size // 2 + 3)  # mid-line: the torn row must not count
    elif change == "append":
        with path.open("a") as out:
            out.write(lines[0] + "\n")
    elif change == "replace":
        (tmp_path / "new").write_text(path.read_text())
        os.replace(tmp_path / "new", path)
    else:
        stat = path.stat()
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    with pytest.raises(SourceError, match=r"changed while being read \(.*\); it is read again at the next sync"):
        list(reading)


def test_an_unchanged_file_read_to_its_end_is_not_refused(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("id\nA1\nA2")  # no line end after the last row: a complete file all the same
    assert [r.values for r in rows(source(path))] == [{"id": "A1"}, {"id": "A2"}]
