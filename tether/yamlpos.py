"""YAML loading that remembers where each value came from, for `file:line: message` errors."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml


class LineMap:
    """Maps a path of keys/indexes (a pydantic error `loc`) to the 1-based line that holds it."""

    def __init__(self, lines: dict[tuple[str | int, ...], int] | None = None) -> None:
        self._lines = lines or {}

    def line_for(self, loc: Sequence[int | str]) -> int:
        """The line of the deepest known prefix of `loc` (unknown keys point at their parent)."""
        path = tuple(loc)
        while path:
            if path in self._lines:
                return self._lines[path]
            path = path[:-1]
        return self._lines.get((), 1)


def compose_with_lines(text: str) -> tuple[Any, LineMap]:
    """Parse one YAML document with the safe loader; return the data and where each key sits."""
    node = yaml.compose(text, Loader=yaml.SafeLoader)
    if node is None:
        return None, LineMap()
    lines: dict[tuple[str | int, ...], int] = {}
    _walk(node, (), lines)
    return yaml.safe_load(text), LineMap(lines)


def _walk(node: yaml.Node, path: tuple[str | int, ...], lines: dict[tuple[str | int, ...], int]) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node.start_mark)
            lines[(*path, key)] = key_node.start_mark.line + 1
            _walk(value_node, (*path, key), lines)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[(*path, index)] = item.start_mark.line + 1
            _walk(item, (*path, index), lines)
