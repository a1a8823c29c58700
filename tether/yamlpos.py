"""YAML loading that remembers where each key came from, for `file:line: message` errors.

Shared by the config and policy loaders. Duplicate keys are reported (YAML would silently keep the
last one, which hides mistakes in a security setting)."""

from __future__ import annotations

from typing import Any

import yaml

Loc = tuple[str | int, ...]
LineMap = dict[Loc, int]


def parse_with_lines(text: str) -> tuple[Any, LineMap, list[tuple[int, str]]]:
    """Parse one YAML document with the safe loader: (data, line of every key/item, duplicate keys).

    Empty documents give (None, {(): 1}, []). Raises yaml.YAMLError."""
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None, {(): 1}, []
        lines: LineMap = {(): root.start_mark.line + 1}
        duplicates: list[tuple[int, str]] = []
        _index_lines(loader, root, (), lines, duplicates, set())
        return loader.construct_document(root), lines, duplicates
    finally:
        loader.dispose()


def line_for(lines: LineMap, loc: Loc) -> int:
    """Line of the deepest part of `loc` present in the file (a missing key maps to its parent)."""
    path: Loc = ()
    for segment in loc:
        if (*path, segment) in lines:
            path = (*path, segment)
    return lines.get(path, 1)


def where(loc: Loc) -> str:
    """`providers.github.scopes[2]`; `the top level` for ()."""
    if not loc:
        return "the top level"
    text = ""
    for segment in loc:
        text += f"[{segment}]" if isinstance(segment, int) else (f".{segment}" if text else str(segment))
    return text


def error_line(error: yaml.YAMLError) -> int | None:
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    return mark.line + 1 if mark else None


def _index_lines(
    loader: yaml.SafeLoader,
    node: yaml.Node,
    path: Loc,
    lines: LineMap,
    duplicates: list[tuple[int, str]],
    active: set[int],
) -> None:
    if id(node) in active:  # a recursive alias; the constructor reports nothing, validation will
        return
    active.add(id(node))
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
                continue
            key = loader.construct_object(key_node)
            child = (*path, key)
            if key in seen:
                duplicates.append((key_node.start_mark.line + 1, f"duplicate key {key!r} in {where(path)}"))
                continue
            seen.add(key)
            lines[child] = key_node.start_mark.line + 1
            _index_lines(loader, value_node, child, lines, duplicates, active)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[(*path, index)] = item.start_mark.line + 1
            _index_lines(loader, item, (*path, index), lines, duplicates, active)
    active.discard(id(node))
