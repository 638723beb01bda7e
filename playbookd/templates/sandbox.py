"""The Jinja environment templates run in: sandboxed, strict, and with a size guard on `*` and `**`.

The guard is cheap and in-process: `{{ "a" * 10**9 }}` fails at once with a message saying
why, instead of allocating a gigabyte first. It is not the limit itself (a filter such as
`center(10**9)` or a long loop gets past it); the render worker's memory cap and deadline
are (see templates.render). Intercepting these operators also stops Jinja from folding them
as constants while compiling, which would allocate the gigabyte before any render began.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jinja2
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

from playbookd.templates.errors import EmptyValue
from playbookd.templates.filters import FILTERS
from playbookd.templates.front_matter import front_end

HTML, TEXT = ".html.j2", ".txt.j2"


def is_email(rel: str) -> bool:
    return rel.endswith(HTML) and "/" in rel and not rel.startswith("_")


def _blank_front(source: str) -> str:
    # blank lines instead of removing them keep Jinja's line numbers equal to the file's
    lines = source.split("\n")
    end = front_end(lines)
    return source if end is None else "\n" * (end + 1) + "\n".join(lines[end + 1:])


class _FrontMatterLoader(jinja2.FileSystemLoader):
    def get_source(self, environment: jinja2.Environment,
                   template: str) -> tuple[str, str, Callable[[], bool]]:
        source, filename, uptodate = super().get_source(environment, template)
        return (_blank_front(source) if is_email(template) else source), filename, uptodate


def _size(value: Any) -> int | None:
    return len(value) if isinstance(value, str | bytes | list | tuple) else None


class Environment(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**"})
    max_bytes = 256 * 2**20

    def getattr(self, obj: Any, attribute: str) -> Any:
        # a custom field named like a dict method (items, values, keys) is the field
        if isinstance(obj, Mapping) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            self._check_repeat(left, right)
            self._check_repeat(right, left)
        elif operator == "**":
            self._check_power(left, right)
        return super().call_binop(context, operator, left, right)

    def _check_repeat(self, seq: Any, times: Any) -> None:
        size = _size(seq)
        if size and isinstance(times, int) and size * times > self.max_bytes:
            raise SecurityError(f"repeating a value of {size} item(s) {times} times would take more than "
                                f"limits.render_memory_mb ({self.max_bytes // 2**20} MB)")

    def _check_power(self, base: Any, exponent: Any) -> None:
        numbers = isinstance(base, int) and isinstance(exponent, int) and abs(base) > 1 and exponent > 0
        if numbers and exponent * math.log2(abs(base)) > 8 * self.max_bytes:
            raise SecurityError(f"{base} ** {exponent} would take more than limits.render_memory_mb "
                                f"({self.max_bytes // 2**20} MB)")


def _finalize(value: Any) -> Any:
    if value is None:
        raise EmptyValue()
    if isinstance(value, str) and "\x00" in value:
        # a NUL from data shows nothing in any mail client, SMTP forbids it, and PostgreSQL refuses the
        # whole row holding it: the email would never be queued
        return value.replace("\x00", "")
    return value


def environment(root: Path, max_bytes: int) -> Environment:
    env = Environment(
        loader=_FrontMatterLoader(str(root)), undefined=jinja2.StrictUndefined, finalize=_finalize,
        autoescape=lambda name: name is not None and not name.endswith(TEXT),
        cache_size=-1, auto_reload=False, keep_trailing_newline=True,
    )
    env.max_bytes = max_bytes
    env.filters.update(FILTERS)
    return env
