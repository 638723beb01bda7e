"""`template_globals:` in config.yaml: values every template sees as `globals.<name>` (the next
webinar date, a survey link), written inline or kept in a YAML file that is re-read on reload."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playbookd.config.settings import Config
from playbookd.config.yaml_loader import Key, Located, load_yaml_file
from playbookd.errors import Problem

FORM = "template_globals is a mapping of names to values, e.g. {next_webinar: 2026-12-10}, or a YAML file of one"


def _located(config: Config) -> tuple[Located | None, Key, list[Problem]]:
    """The document holding the values and where in it they start."""
    value = config.template_globals
    if isinstance(value, Path):
        doc, problems = load_yaml_file(value)
        if problems:
            where = f"template_globals in {config.path}: " if not value.exists() else ""
            return None, (), [Problem(p.file, p.line, p.col, where + p.message) for p in problems]
        return doc, (), []
    doc, problems = load_yaml_file(config.path)
    return doc, ("template_globals",), problems


def load_globals(config: Config) -> tuple[dict[str, Any], list[Problem]]:
    """The values and every problem with them, located in their file."""
    doc, path, problems = _located(config)
    if doc is None:
        return {}, problems
    data: Any = doc.data
    for step in path:
        data = data.get(step) if isinstance(data, dict) else None
    if data is None:
        return {}, []
    if not isinstance(data, dict):
        return {}, [doc.problem(path, FORM)]
    for name in data:
        if not isinstance(name, str) or not name.isidentifier():
            problems.append(doc.problem((*path, name), f"template_globals: {name!r} is not a name a template "
                                        "can use as globals.<name> (letters, digits, _)"))
    if isinstance(config.template_globals, dict):
        data = config.template_globals  # with ${VAR} expanded, as config.yaml is read
    return ({} if problems else dict(data)), problems
