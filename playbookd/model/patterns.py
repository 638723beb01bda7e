"""`matches`: regular expressions run by RE2, in time linear in the text, whatever the pattern.

Python's `re` backtracks: `^(a+)+$` against forty a's and a b takes longer than the age of
the universe, and a playbook's pattern meets synced data nobody checked. RE2 has no
backtracking, so it cannot run backreferences or lookaround at all; those patterns, and
ones whose compiled form would be too large, are refused when the playbook is read.
Character classes such as `\\d`, `\\w` and `\\b` are ASCII, as in RE2.

(durable_rules' own `$mt` operator is a DFA, so it does not backtrack either, measured
with `^(a+)+$`; but it matches whole values only and has another syntax, so the rules
engine gets `matches` precomputed by `search` below, as the reference evaluator does.)
"""

from __future__ import annotations

import functools
from typing import Any

import re2

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # RE2 would print every refused pattern to stderr besides raising


class PatternError(ValueError):
    """A pattern RE2 cannot run; the message says why."""


@functools.lru_cache(maxsize=1024)
def compile_pattern(pattern: str) -> Any:
    try:
        return re2.compile(pattern, _OPTIONS)
    except re2.error as exc:
        why = exc.args[0].decode("utf-8", "replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise PatternError(f"{why} (patterns use RE2 syntax: no backreferences or lookaround, "
                           "which can take exponential time, and repetitions up to {1000})") from None


def search(pattern: str, text: str) -> bool:
    """Whether `pattern` occurs in `text`, like re.search; linear in len(text)."""
    return compile_pattern(pattern).search(text) is not None
