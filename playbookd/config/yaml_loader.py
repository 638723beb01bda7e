"""YAML loading that remembers where every value came from (line and column)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from playbookd.errors import Problem

Pos = tuple[int, int]
Key = tuple[str | int, ...]


class Located:
    """A parsed YAML document plus the 1-based position of every node by its path."""

    def __init__(self, file: str, data: Any, positions: dict[Key, Pos]) -> None:
        self.file = file
        self.data = data
        self.positions = positions

    def where(self, path: Key) -> Pos | tuple[None, None]:
        """Position of the node at `path`, else of its nearest located ancestor."""
        for cut in range(len(path), -1, -1):
            pos = self.positions.get(tuple(path[:cut]))
            if pos is not None:
                return pos
        return (None, None)

    def problem(self, path: Key, message: str) -> Problem:
        line, col = self.where(path)
        return Problem(self.file, line, col, message)


class _SafeLoader(yaml.SafeLoader):
    """YAML 1.2 core-schema scalars: only true/false are booleans (`no`, `yes`, `on`, `off` stay text,
    so `usage_fit: {in: [no, investigate]}` means what it says), integers are decimal, 0o octal or 0x
    hex (YAML 1.1 read `010` as 8 and `1:30` as 90), and floats need a digit. No aliases: nine nested
    ones in a few hundred bytes expand to billions of nodes (a "billion laughs" file)."""

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not supported: write the value out",
                                              mark)
        return super().compose_node(parent, index)


_CORE = {
    "tag:yaml.org,2002:bool": (r"^(?:true|True|TRUE|false|False|FALSE)$", list("tTfF")),
    "tag:yaml.org,2002:int": (r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", list("-+0123456789")),
    "tag:yaml.org,2002:float": (r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
                                r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$", list("-+.0123456789")),
}
_SafeLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in _CORE]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
for _tag, (_pattern, _first) in _CORE.items():
    _SafeLoader.add_implicit_resolver(_tag, re.compile(_pattern), _first)


def _core_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    text = str(loader.construct_scalar(node))
    if text.startswith(("0o", "0x")):
        return int(text[2:], 8 if text[1] == "o" else 16)
    return int(text, 10)


def _core_bool(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> bool:
    return str(loader.construct_scalar(node)).lower() == "true"


_SafeLoader.add_constructor("tag:yaml.org,2002:int", _core_int)
_SafeLoader.add_constructor("tag:yaml.org,2002:bool", _core_bool)


def _walk(node: yaml.Node, path: Key, out: dict[Key, Pos]) -> None:
    out[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            out[(*path, key)] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            _walk(value_node, (*path, key), out)
            # the value's own position is more useful for "bad value" messages
            if not isinstance(value_node, (yaml.MappingNode, yaml.SequenceNode)):
                out[(*path, key)] = (value_node.start_mark.line + 1, value_node.start_mark.column + 1)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, (*path, index), out)


def _duplicate_keys(node: yaml.Node, file: str) -> list[Problem]:
    problems: list[Problem] = []
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            if key_node.value in seen:
                mark = key_node.start_mark
                problems.append(
                    Problem(file, mark.line + 1, mark.column + 1, f"duplicate key {key_node.value!r}")
                )
            seen.add(key_node.value)
            problems += _duplicate_keys(value_node, file)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            problems += _duplicate_keys(item, file)
    return problems


def parse_yaml(text: str, file: str) -> tuple[Located | None, list[Problem]]:
    """Parse one YAML document; a syntax error becomes a located Problem."""
    try:
        node = yaml.compose(text, Loader=_SafeLoader)
        data = yaml.load(text, Loader=_SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (None, None)
        return None, [Problem(file, line, col, f"invalid YAML: {exc.problem}")]
    except yaml.YAMLError as exc:
        return None, [Problem(file, None, None, f"invalid YAML: {exc}")]
    positions: dict[Key, Pos] = {}
    if node is not None:
        _walk(node, (), positions)
        dupes = _duplicate_keys(node, file)
        if dupes:
            return None, dupes
    return Located(file, data, positions), []


def load_yaml_file(path: Path) -> tuple[Located | None, list[Problem]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return None, [Problem(str(path), None, None, f"cannot read: {exc}")]
    return parse_yaml(text, str(path))
