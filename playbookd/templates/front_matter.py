"""Front matter of an email template: `subject`, `preheader` and `from` between two `---` lines."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from playbookd.config.yaml_loader import parse_yaml
from playbookd.errors import Problem, did_you_mean
from playbookd.model.headers import header_value
from playbookd.model.senders import sender_problem
from playbookd.templates.errors import TemplateError, fail, located

FRONT_KEYS = ("subject", "preheader", "from")


def is_fence(line: str) -> bool:
    return line.strip("\ufeff \t\r") == "---"


def front_end(lines: list[str]) -> int | None:
    """Index of the line closing the front matter, or None without (closed) front matter."""
    if not is_fence(lines[0]):
        return None
    return next((i for i in range(1, len(lines)) if is_fence(lines[i])), None)


@dataclass(frozen=True)
class Part:
    """A front matter value compiled as a template, with the file line it starts on."""

    template: jinja2.Template
    file: str
    line: int

    def render(self, root: Path, context: Mapping[str, Any]) -> str:
        with located(root, self.file, self.line - 1):
            return self.template.render(context)


@dataclass(frozen=True)
class Head:
    subject: Part
    preheader: Part | None
    sender: str | None = None  # `from:`: csm or an address, as written


def front_matter(source: str, file: str) -> tuple[dict[str, Any], dict[str, int]]:
    """The front matter mapping and the file line of each key's value."""
    lines = source.split("\n")
    if not is_fence(lines[0]):
        fail(file, 1, "missing front matter: start the file with a line '---', 'subject: ...', a line '---'")
    end = front_end(lines)
    if end is None:
        fail(file, 1, "front matter is not closed: add a line '---' after it")
    doc, problems = parse_yaml("\n".join(lines[1:end]), file)
    if doc is None:
        first = problems[0]  # the YAML starts on the file's second line
        raise TemplateError(Problem(file, (first.line or 0) + 1, first.col, first.message))
    if doc.data is not None and not isinstance(doc.data, dict):
        fail(file, 2, "front matter must be a mapping such as 'subject: Hello'")
    meta = dict(doc.data or {})
    return meta, {str(k): (doc.where((k,))[0] or 0) + 1 for k in meta}


def check_front(meta: dict[str, Any], lines: dict[str, int], file: str) -> None:
    for key in meta:
        if key not in FRONT_KEYS:
            hint = did_you_mean(str(key), FRONT_KEYS, f"; allowed: {', '.join(FRONT_KEYS)}")
            fail(file, lines[str(key)], f"unknown front matter key '{key}'{hint}")
    if "subject" not in meta:
        fail(file, 1, "front matter has no subject")
    if "from" in meta and (why := sender_problem(meta["from"])):
        fail(file, lines["from"], why)
    for key, value in meta.items():
        text = value is None or isinstance(value, str | int | float)
        if not text or (key == "subject" and value in ("", None)):
            fail(file, lines[key], f"{key} must be a non-empty line of text")


def header_line(text: str, part: Part, what: str, limit: int) -> tuple[str, bool]:
    """A header value: what synced data brings in (a line break in a company name) becomes a space,
    and it is cut at `limit` characters (limits.header_chars), True when it was; nothing left is an
    error of the template."""
    line, cut = header_value(text, limit)
    if not line:
        fail(part.file, part.line, f"{what} must render to one non-empty line, got nothing")
    return line, cut
