"""Template failures as a TemplateError that names the template file, the line and why."""

from __future__ import annotations

import os
import re
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import jinja2
from jinja2.exceptions import SecurityError

from playbookd.errors import PlaybookdError, Problem, UserError


class TemplateError(UserError):
    """A template that cannot be used; `problem` says which file, which line and why."""

    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        super().__init__(str(problem))


def fail(file: str, line: int | None, why: str) -> NoReturn:
    raise TemplateError(Problem(file, line, None, why)) from None


class EmptyValue(PlaybookdError):
    """Printing None would put an empty string (or "None") in a customer's inbox."""


def _line_of(source: str, line: int | None) -> str:
    lines = source.split("\n")
    return lines[line - 1] if line and 0 < line <= len(lines) else ""


def _source_line(file: str, line: int | None) -> str:
    try:
        return _line_of(Path(file).read_text(encoding="utf-8"), line)
    except (OSError, UnicodeDecodeError):
        return ""


def _undefined_why(message: str, text: str) -> str:
    name = re.search(r"'(\w+)' is undefined", message)
    if name:
        return f"undefined variable '{name.group(1)}'"
    attr = re.search(r"has no attribute '(\w+)'", message)
    ref = attr and re.search(rf"[A-Za-z_][\w.]*\.{attr.group(1)}\b", text)
    if ref and ref.group(0).startswith("globals."):
        return f"undefined variable '{ref.group(0)}': config.yaml's template_globals has no such value"
    return f"undefined variable '{ref.group(0)}' ({message})" if ref else f"undefined variable: {message}"


def _why(exc: BaseException, text: str) -> str:
    if isinstance(exc, jinja2.TemplateSyntaxError):
        return f"syntax error: {exc.message}"
    if isinstance(exc, jinja2.UndefinedError):
        return _undefined_why(str(exc), text)
    if isinstance(exc, SecurityError):
        return f"not allowed in a template: {exc}"
    if isinstance(exc, jinja2.TemplateNotFound):
        return f"template '{exc.name}' not found"
    if isinstance(exc, EmptyValue):
        shown = re.findall(r"\{\{-?\s*(.+?)\s*-?\}\}", text)
        what = f"'{shown[0]}' is" if len(shown) == 1 else "a value printed here is"
        return f'{what} empty (None); give it a default, e.g. {{{{ contact.first_name or "there" }}}}'
    return f"{type(exc).__name__}: {exc}"


def _where(exc: BaseException, root: str) -> tuple[str | None, int | None]:
    if isinstance(exc, jinja2.TemplateSyntaxError):
        return exc.filename, exc.lineno
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if f.filename == "<template>" or f.filename.startswith(root + os.sep)]
    return (frames[-1].filename, frames[-1].lineno) if frames else (None, None)


@contextmanager
def located(root: Path, file: str, offset: int | None = None, source: str | None = None) -> Iterator[None]:
    """Turn any failure inside a template into a TemplateError naming the template file and line.

    `offset` is set for a template compiled from a string (a subject): its line 1 is file line offset+1;
    `source` is that string when it is not in a file at all.
    """
    try:
        yield
    except (TemplateError, MemoryError):
        raise  # a MemoryError is the render's limit, which the render worker reports as such
    except Exception as exc:
        where, line = _where(exc, str(root))
        text = _line_of(source, line) if source is not None else ""
        if where in (None, "<template>"):
            where, line = file, (offset + (line or 1) if offset is not None else line)
        text = text or _source_line(where or file, line)
        fail(where or file, line, _why(exc, text))
