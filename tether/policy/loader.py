"""Load policy files into a PolicySet, reporting every problem as `file:line: message`.

YAML is composed into a node tree first so each key and list item keeps its line; pydantic error
locations and the catalog checks are mapped back to those lines.
"""

import difflib
import sys
import types
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from tether.catalog import load_catalog
from tether.policy.catalog_view import CatalogView
from tether.policy.models import REPOSITORY_NARROWING_PROVIDERS, Policy, PolicyList, PolicySet
from tether.yamlpos import LineMap, Loc, error_line, line_for, parse_with_lines, where


@dataclass(frozen=True)
class PolicyIssue:
    file: str
    line: int | None  # None when the problem is not tied to a line (unreadable file)
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}" if self.line else f"{self.file}: {self.message}"


class PolicyError(Exception):
    def __init__(self, errors: list[PolicyIssue]) -> None:
        super().__init__("\n".join(str(error) for error in errors))
        self.errors = errors


@dataclass(frozen=True)
class PolicySource:
    """A policy file's bytes as read once, so what is hashed (hot reload) is what is parsed."""

    path: Path
    content: bytes | None  # None when the file could not be read
    read_error: str | None = None

    @classmethod
    def read(cls, path: Path) -> "PolicySource":
        try:
            return cls(path, path.read_bytes())
        except OSError as error:
            return cls(path, None, f"cannot read policy file: {error.strerror or error}")


def load_policy_files(paths: Sequence[Path], catalog: CatalogView) -> PolicySet:
    return parse_policy_sources([PolicySource.read(path) for path in paths], catalog)


def parse_policy_sources(sources: Sequence[PolicySource], catalog: CatalogView) -> PolicySet:
    """Validate every source; raise PolicyError listing all problems in all files."""
    issues: list[PolicyIssue] = []
    policies: list[Policy] = []
    origins: dict[str, str] = {}
    for source in sources:
        file = str(source.path)
        parsed = _parse_document(source)
        if isinstance(parsed, PolicyIssue):
            issues.append(parsed)
            continue
        data, lines, file_issues = parsed
        file_policies, validation_issues = _validate(data, catalog)
        file_issues.extend((line_for(lines, loc), message) for loc, message in validation_issues)
        for loc, policy_id in _raw_policy_ids(data):
            line = line_for(lines, loc)
            if policy_id in origins:
                message = f"duplicate policy id {policy_id!r} (first defined at {origins[policy_id]})"
                file_issues.append((line, message))
            else:
                origins[policy_id] = f"{file}:{line}"
        issues.extend(PolicyIssue(file, line, message) for line, message in sorted(file_issues))
        policies.extend(file_policies)
    if issues:
        raise PolicyError(issues)
    return PolicySet(policies=tuple(policies), origins=origins)


def check_files(paths: Sequence[Path], catalog: CatalogView | None = None) -> list[str]:
    """`tether policy check`: the rendered problems, empty when every file is valid."""
    try:
        load_policy_files(paths, catalog or load_catalog())
    except PolicyError as error:
        return [str(issue) for issue in error.errors]
    return []


def main_check(argv_paths: Sequence[str]) -> int:
    """Exit 0 when all files are valid, 1 with `file:line: message` lines on stdout, 2 on usage errors."""
    if not argv_paths:
        print("usage: tether policy check FILE...", file=sys.stderr)
        return 2
    paths = [Path(arg) for arg in argv_paths]
    missing = [path for path in paths if not path.is_file()]
    for path in missing:
        print(f"tether policy check: {path}: no such file", file=sys.stderr)
    if missing:
        return 2
    problems = check_files(paths)
    for problem in problems:
        print(problem)
    if problems:
        return 1
    print(f"{len(paths)} file{'s' if len(paths) != 1 else ''} OK")
    return 0


# --- YAML with line numbers ---------------------------------------------------------------------


def _parse_document(source: PolicySource) -> tuple[Any, LineMap, list[tuple[int, str]]] | PolicyIssue:
    file = str(source.path)
    if source.content is None:
        return PolicyIssue(file, None, source.read_error or "cannot read policy file")
    try:
        text = source.content.decode("utf-8")
    except UnicodeDecodeError as error:
        line = source.content[: error.start].count(b"\n") + 1
        return PolicyIssue(file, line, "file is not valid UTF-8")
    try:
        data, lines, duplicates = parse_with_lines(text)
    except yaml.MarkedYAMLError as error:
        context = f"{error.context}: " if error.context else ""
        return PolicyIssue(file, error_line(error), f"invalid YAML: {context}{error.problem}")
    except yaml.YAMLError as error:
        return PolicyIssue(file, None, f"invalid YAML: {error}")
    if data is None:
        return PolicyIssue(file, 1, "file is empty: expected a policy (id, agents, ...)")
    return data, lines, duplicates


def _validate(data: Any, catalog: CatalogView) -> tuple[list[Policy], list[tuple[Loc, str]]]:
    if not isinstance(data, dict):
        message = (
            "expected a policy (a mapping with id, agents, ...) or a mapping with a 'policies' list "
            f"at the top level, got {_type_name(data)}"
        )
        return [], [((), message)]
    issues: list[tuple[Loc, str]] = []
    policies: list[Policy] = []
    model: type[BaseModel] = PolicyList if "policies" in data else Policy
    try:
        validated = model.model_validate(data)
    except ValidationError as error:
        issues.extend(_pydantic_issues(error, model))
    else:
        policies = list(validated.policies) if isinstance(validated, PolicyList) else [validated]  # type: ignore[list-item]
    for loc, raw in _raw_policies(data):
        issues.extend(_catalog_issues(raw, loc, catalog))
        issues.extend(_duplicate_rule_names(raw, loc))
    return policies, issues


def _pydantic_issues(error: ValidationError, model: type[BaseModel]) -> Iterator[tuple[Loc, str]]:
    details = error.errors()
    # A typo'd key also makes the intended key "missing"; the "did you mean" on the typo says it all.
    meant = {
        (*detail["loc"][:-1], guess)
        for detail in details
        if detail["type"] == "extra_forbidden"
        for guess in _close_matches(str(detail["loc"][-1]), _keys_at(model, tuple(detail["loc"][:-1])))
    }
    for detail in details:
        loc = tuple(detail["loc"])
        if not (detail["type"] == "missing" and loc in meant):
            yield loc, _pydantic_message(detail, model)


def _pydantic_message(detail: ErrorDetails, model: type[BaseModel]) -> str:
    loc = tuple(detail["loc"])
    if detail["type"] == "extra_forbidden":
        key = str(loc[-1])
        return f"unknown key {key!r} in {where(loc[:-1])}{_suggestion(key, _keys_at(model, loc[:-1]))}"
    if detail["type"] == "missing":
        return f"missing required key {loc[-1]!r} in {where(loc[:-1])}"
    message = detail["msg"].removeprefix("Value error, ")
    if detail["type"] != "value_error":
        message += f" (got {_short_repr(detail['input'])})"
    return f"{where(loc)}: {message}"


def _raw_policies(data: dict[Any, Any]) -> Iterator[tuple[Loc, dict[Any, Any]]]:
    if "policies" not in data:
        yield (), data
        return
    items = data["policies"]
    if isinstance(items, list):
        for index, item in enumerate(items):
            if isinstance(item, dict):
                yield ("policies", index), item


def _raw_policy_ids(data: Any) -> Iterator[tuple[Loc, str]]:
    if isinstance(data, dict):
        for loc, raw in _raw_policies(data):
            if isinstance(raw.get("id"), str):
                yield (*loc, "id"), raw["id"]


def _catalog_issues(raw: dict[Any, Any], base: Loc, catalog: CatalogView) -> Iterator[tuple[Loc, str]]:
    """Provider names and scopes are catalog data, so they are checked here rather than in the models."""
    providers = raw.get("providers")
    if not isinstance(providers, dict):
        return
    for name, section in providers.items():
        loc: Loc = (*base, "providers", name)
        provider = catalog.providers.get(name) if isinstance(name, str) else None
        if provider is None:
            known = ", ".join(sorted(catalog.providers))
            suggestion = _suggestion(str(name), catalog.providers)
            yield loc, f"unknown provider {name!r}{suggestion} (known providers: {known})"
            continue
        if not isinstance(section, dict):
            continue
        vocabulary = provider.scope_names() | provider.implicit_scopes()
        scopes = section.get("scopes")
        for index, scope in enumerate(scopes if isinstance(scopes, list) else []):
            if isinstance(scope, str) and scope not in vocabulary:
                message = f"unknown scope {scope!r} for provider {name!r}{_suggestion(scope, vocabulary)}"
                yield (*loc, "scopes", index), message
        if "repositories" in section and name not in REPOSITORY_NARROWING_PROVIDERS:
            supported = ", ".join(sorted(REPOSITORY_NARROWING_PROVIDERS))
            yield (*loc, "repositories"), f"repositories narrowing is only supported for {supported}"


def _duplicate_rule_names(raw: dict[Any, Any], base: Loc) -> Iterator[tuple[Loc, str]]:
    rules = raw.get("rules")
    seen: set[str] = set()
    for index, rule in enumerate(rules if isinstance(rules, list) else []):
        name = rule.get("name") if isinstance(rule, dict) else None
        if isinstance(name, str):
            if name in seen:
                yield (*base, "rules", index, "name"), f"duplicate rule name {name!r}"
            seen.add(name)


def _keys_at(model: type[BaseModel], loc: Loc) -> list[str]:
    """Field names of the model found at `loc` (for "did you mean" hints)."""
    current: Any = model
    for segment in loc:
        current = _without_none(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(segment) if isinstance(segment, str) else None
            if field is None:
                return []
            current = field.annotation
        elif get_origin(current) in (list, dict):
            current = get_args(current)[-1]
        else:
            return []
    current = _without_none(current)
    return list(current.model_fields) if isinstance(current, type) and issubclass(current, BaseModel) else []


def _without_none(annotation: Any) -> Any:
    if get_origin(annotation) in (Union, types.UnionType):
        members = [arg for arg in get_args(annotation) if arg is not type(None)]
        return members[0] if len(members) == 1 else annotation
    return annotation


def _close_matches(word: str, candidates: Iterable[str]) -> list[str]:
    return difflib.get_close_matches(word, sorted(candidates), n=1, cutoff=0.6)


def _suggestion(word: str, candidates: Iterable[str]) -> str:
    close = _close_matches(word, candidates)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _short_repr(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _type_name(value: Any) -> str:
    names = {list: "a list", str: "a string", int: "a number", float: "a number", bool: "a boolean"}
    return "null" if value is None else names.get(type(value), type(value).__name__)
