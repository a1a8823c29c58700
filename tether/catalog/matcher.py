"""Route matching: a segment trie over route templates such as ``/repos/{owner}/{repo}/pulls/{pull_number}``.

One trie per (host, method). A template segment is either a literal (``pulls``) or a parameter
(``{pull_number}``), optionally with a literal tail inside the segment (Google's custom methods:
``{spreadsheetId}:batchUpdate``). Parameters named as greedy (GitHub's ``{path}``, ``{ref}``...) span
one or more segments; every other parameter matches exactly one non-empty segment.

Precedence at each segment: a literal beats a parameter with a tail, which beats a plain parameter,
which beats a greedy one; a greedy parameter takes as few segments as it can. So the most specific
template wins: ``/pulls/comments`` over ``/pulls/{pull_number}``, and ``/commits/{ref}/status`` over
``/commits/{ref}`` for ``/commits/main/status``. Literals compare case-insensitively (a lenient
upstream router must not be able to reach a literal route that tether took for a parameter).
"""

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import parse_qs

MAX_PATH_LENGTH = 8192
MAX_SEGMENTS = 64

_PRINTABLE_ASCII = re.compile(r"[!-~]*")  # no space, no control characters, no non-ASCII
_PERCENT_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_PARAM_SEGMENT = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}([^{}/]*)")
_LITERAL_SEGMENT = re.compile(r"[^{}/]+")

QueryValues = Mapping[str, list[str]]


class TemplateError(ValueError):
    """A route template that cannot be added to the trie."""


def split_path(path: str) -> list[str] | None:
    """The segments of a URL path (without query), or None when the path is not safe to match.

    Percent-escapes of unreserved characters are decoded (RFC 3986 says they are equivalent, so
    ``pull%73`` must not slip past the literal ``pulls``); all other escapes are kept as sent. One
    trailing slash is tolerated. Empty, ``.`` and ``..`` segments, non-printable or non-ASCII
    characters, ``?``, ``#``, backslashes and over-long paths are refused.
    """
    if len(path) > MAX_PATH_LENGTH or not path.startswith("/") or not _PRINTABLE_ASCII.fullmatch(path):
        return None
    if "?" in path or "#" in path or "\\" in path:
        return None
    if path == "/":
        return []
    segments = path[1:].split("/")
    if len(segments) > 1 and segments[-1] == "":
        segments.pop()
    if len(segments) > MAX_SEGMENTS:
        return None
    segments = [_decode_unreserved(segment) if "%" in segment else segment for segment in segments]
    if any(segment in ("", ".", "..") for segment in segments):
        return None
    return segments


def _decode_unreserved(segment: str) -> str:
    def decode(escape: re.Match[str]) -> str:
        char = chr(int(escape.group(1), 16))
        return char if char in _UNRESERVED else escape.group(0)

    return _PERCENT_ESCAPE.sub(decode, segment)


def parse_query(query: str) -> QueryValues:
    return parse_qs(query, keep_blank_values=True) if query else {}


@dataclass(slots=True)
class _Edge[T]:
    name: str
    tail: str  # lower-case literal that ends the segment, "" for none
    greedy: bool
    node: "_Node[T]"


@dataclass(slots=True)
class _Leaf[T]:
    query: tuple[tuple[str, str], ...]  # required query parameters, each with exactly one value
    value: T


@dataclass(slots=True)
class _Node[T]:
    literals: dict[str, "_Node[T]"] = field(default_factory=dict)
    edges: list[_Edge[T]] = field(default_factory=list)
    leaves: list[_Leaf[T]] = field(default_factory=list)

    def edge(self, name: str, tail: str, greedy: bool) -> "_Node[T]":
        for edge in self.edges:
            if (edge.name, edge.tail, edge.greedy) == (name, tail, greedy):
                return edge.node
        created: _Edge[T] = _Edge(name, tail, greedy, _Node())
        self.edges.append(created)
        # Precedence: parameters with a tail (longest first), then plain ones, then greedy ones.
        self.edges.sort(key=lambda e: (e.greedy, -len(e.tail)))
        return created.node


class RouteTrie[T]:
    """Templates of one host and method, matched segment by segment."""

    def __init__(self, greedy_params: frozenset[str]) -> None:
        self._root: _Node[T] = _Node()
        self._greedy_params = greedy_params

    def add(self, template: str, query: Mapping[str, str], value: T) -> None:
        node = self._root
        names: set[str] = set()
        greedy_count = 0
        for segment in _template_segments(template):
            param = _PARAM_SEGMENT.fullmatch(segment)
            if param is None:
                if not _LITERAL_SEGMENT.fullmatch(segment):
                    raise TemplateError(f"bad segment {segment!r} in template {template!r}")
                node = node.literals.setdefault(segment.lower(), _Node())
                continue
            name, tail = param.group(1), param.group(2).lower()
            if name in names:
                raise TemplateError(f"parameter {{{name}}} repeats in template {template!r}")
            names.add(name)
            greedy = name in self._greedy_params and not tail
            greedy_count += greedy
            if greedy_count > 1:  # two greedy spans would make matching quadratic and ambiguous
                raise TemplateError(f"more than one greedy parameter in template {template!r}")
            node = node.edge(name, tail, greedy)
        required = tuple(sorted(query.items()))
        if any(leaf.query == required for leaf in node.leaves):
            raise TemplateError(f"template {template!r} with query {dict(query)} is defined twice")
        node.leaves.append(_Leaf(required, value))
        node.leaves.sort(key=lambda leaf: -len(leaf.query))  # the most constrained variant first

    def find(self, segments: Sequence[str], query: QueryValues) -> tuple[T, dict[str, str]] | None:
        """The value of the most specific matching template and the captured parameters."""
        found = self._find(self._root, segments, 0, query)
        if found is None:
            return None
        value, captured = found
        return value, dict(captured)

    def _find(
        self, node: _Node[T], segments: Sequence[str], index: int, query: QueryValues
    ) -> tuple[T, list[tuple[str, str]]] | None:
        if index == len(segments):
            for leaf in node.leaves:
                if all(query.get(key) == [wanted] for key, wanted in leaf.query):
                    return leaf.value, []
            return None
        segment = segments[index]
        lowered = segment.lower()
        child = node.literals.get(lowered)
        if child is not None:
            found = self._find(child, segments, index + 1, query)
            if found is not None:
                return found
        for edge in node.edges:
            if edge.greedy:
                for end in range(index + 1, len(segments) + 1):
                    found = self._find(edge.node, segments, end, query)
                    if found is not None:
                        found[1].append((edge.name, "/".join(segments[index:end])))
                        return found
                continue
            if edge.tail:
                if len(segment) <= len(edge.tail) or not lowered.endswith(edge.tail):
                    continue
                captured = segment[: -len(edge.tail)]
            else:
                captured = segment
            found = self._find(edge.node, segments, index + 1, query)
            if found is not None:
                found[1].append((edge.name, captured))
                return found
        return None


def _template_segments(template: str) -> list[str]:
    if not template.startswith("/") or (template != "/" and template.endswith("/")):
        raise TemplateError(f"template {template!r} must start with '/' and not end with one")
    return [] if template == "/" else template[1:].split("/")
