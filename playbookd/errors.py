"""One error hierarchy; the CLI translates it to exit codes at the edge."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Where:
    """Where a value was written: file, 1-based line and column when known."""

    file: str
    line: int | None
    col: int | None

    def problem(self, message: str) -> Problem:
        return Problem(self.file, self.line, self.col, message)


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with the user's input, located as precisely as we can."""

    file: str
    line: int | None
    col: int | None
    message: str

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.col is not None:
                where += f":{self.col}"
        return f"{where}: {self.message}"


def did_you_mean(word: str, options: Iterable[str], otherwise: str = "") -> str:
    """The hint a message ends with: the closest known name, else `otherwise`."""
    close = difflib.get_close_matches(word, list(options), n=1)
    return f"; did you mean {close[0]!r}?" if close else otherwise


class PlaybookdError(Exception):
    """Base of every error we expect; `exit_code` is what the CLI exits with."""

    exit_code = 1


class UserError(PlaybookdError):
    """Bad input or a bad request: message, no traceback, exit 1."""


class ValidationError(UserError):
    """One or more located problems, all reported at once."""

    def __init__(self, problems: list[Problem], summary: str = "validation failed") -> None:
        self.problems = sorted(problems)
        lines = [summary + f" ({len(self.problems)} problem(s)):"]
        lines += [f"  {p}" for p in self.problems]
        super().__init__("\n".join(lines))


class DependencyError(PlaybookdError):
    """A dependency (database, SMTP server) cannot be reached."""

    exit_code = 3


class ConflictError(UserError):
    """A request that contradicts what is stored, e.g. an event id already used for another account."""
