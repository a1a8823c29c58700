"""One provider's catalog: hosts, scope vocabulary, native permissions and request routes.

Loaded from the packaged ``data/<provider>.json`` (format 1, described in ``data/README.md``) and
checked on load: unknown keys, unknown scope names, hosts outside the provider's and malformed
templates are errors.
"""

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from tether.catalog.matcher import QueryValues, RouteTrie, TemplateError, parse_query, split_path

_SCOPE_NAME = re.compile(r"[a-z][a-z0-9_.]*:[a-z][a-z0-9_.]*")
_HOST_NAME = re.compile(r"(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+")
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"})


class CatalogError(ValueError):
    """A catalog data file that is malformed or inconsistent."""


@dataclass(frozen=True, slots=True)
class RouteMatch:
    """The route a request matched.

    ``scopes`` are the tether scopes any ONE of which permits the call, implications expanded (a
    route needing ``issues:read`` lists ``issues:read`` and ``issues:write``). An empty set means the
    route needs no scope (Slack ``auth.test``, GitHub ``/rate_limit``): use ``ProviderCatalog.permits``
    rather than testing the intersection by hand. ``required`` is the same set before expansion,
    i.e. the least scopes that permit the call (for ``scope_requested`` in events).
    """

    provider: str
    route: str  # "GET /repos/{owner}/{repo}/pulls/{pull_number}"; a required query is appended
    params: Mapping[str, str]
    scopes: frozenset[str]
    required: frozenset[str]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _ScopeSpec(_Strict):
    native: dict[str, str]
    implies: list[str] = []


class _RouteSpec(_Strict):
    hosts: list[str]
    methods: list[str]
    path: str
    query: dict[str, str] = {}
    scopes: list[str]
    strip_suffix: dict[str, str] = {}


class _CatalogFile(_Strict):
    format: Literal[1]
    provider: str
    hosts: list[str]
    greedy_params: list[str] = []
    implicit_scopes: list[str] = []
    scopes: dict[str, _ScopeSpec]
    routes: list[_RouteSpec]
    source: dict[str, str] = {}
    notes: list[str] = []


@dataclass(frozen=True, slots=True)
class _Route:
    route: str
    scopes: frozenset[str]
    required: frozenset[str]
    strip_suffix: tuple[tuple[str, str], ...]


class ProviderCatalog:
    """Hosts, scopes and routes of one provider; built by ``ProviderCatalog.from_data``."""

    def __init__(
        self,
        name: str,
        hosts: Iterable[str],
        scopes: Mapping[str, _ScopeSpec],
        implied: Mapping[str, frozenset[str]],
        implicit: Iterable[str],
        tries: Mapping[tuple[str, str], RouteTrie[_Route]],
    ) -> None:
        self.name = name
        self.hosts = tuple(sorted(hosts))  # exact names and "*.domain" wildcards
        self._host_set = _HostSet(self.hosts)
        self._scopes = dict(scopes)
        self._implied = dict(implied)  # scope -> every scope it implies, transitively
        self._implicit = frozenset(implicit)
        self._tries = dict(tries)

    @classmethod
    def from_data(cls, data: Any) -> "ProviderCatalog":
        """Build a catalog from the parsed JSON of a data file; raise CatalogError when it is wrong."""
        try:
            spec = _CatalogFile.model_validate(data)
        except ValidationError as error:
            raise CatalogError(f"catalog data does not match format 1: {error}") from error
        return _build(spec)

    def handles_host(self, host: str) -> bool:
        """True for the provider's exact hosts and subdomains of its ``*.domain`` hosts."""
        return _normalize_host(host) in self._host_set

    def match(self, method: str, host: str, path: str, query: str = "") -> RouteMatch | None:
        """The route of a request, or None when the path is unsafe or no route of this host matches.

        ``path`` is the URL path without the query string, ``query`` the raw query string. HEAD is
        matched against the GET routes when no HEAD route exists (it reads the same resource); the
        match then names the GET route.
        """
        segments = split_path(path)
        if segments is None:
            return None
        host = _normalize_host(host)
        method = method.upper()
        values = parse_query(query)
        match = self._find(method, host, segments, values)
        if match is None and method == "HEAD":
            match = self._find("GET", host, segments, values)
        return match

    def scope_names(self) -> frozenset[str]:
        return frozenset(self._scopes)

    def implicit_scopes(self) -> frozenset[str]:
        """Scopes every grant includes (GitHub always gives installation tokens ``metadata:read``)."""
        return self._implicit

    def expand(self, scopes: Iterable[str]) -> frozenset[str]:
        """The scopes and every scope they imply (``repo:write`` -> also ``repo:read``).

        Names outside the vocabulary imply nothing and are returned as given; validating them is
        the caller's job (``scope_names()``).
        """
        given = frozenset(scopes)
        return given.union(*(self._implied.get(scope, ()) for scope in given))

    def permits(self, match: RouteMatch, granted: Iterable[str]) -> bool:
        """Whether a grant (implicit scopes added) lets the matched call through."""
        if not match.scopes:
            return True
        return not match.scopes.isdisjoint(self._implicit) or not match.scopes.isdisjoint(granted)

    def native(self, scopes: Iterable[str]) -> dict[str, str]:
        """The provider-native permissions for a set of tether scopes, as the minting API takes them.

        Scopes implied by another scope in the set are dropped first, so GitHub gets the highest
        level per permission (``{"contents": "write", "issues": "read"}``). Slack and Google map to
        ``{native_scope: "granted"}``, e.g. ``{"https://www.googleapis.com/auth/drive": "granted"}``.
        """
        wanted = set(scopes)
        unknown = sorted(wanted - self._scopes.keys())
        if unknown:
            raise ValueError(f"unknown {self.name} scope(s): {', '.join(unknown)}")
        strongest = {s for s in wanted if not any(s in self._implied[other] for other in wanted)}
        native: dict[str, str] = {}
        for scope in sorted(strongest):
            native.update(self._scopes[scope].native)
        return native

    def _find(self, method: str, host: str, segments: list[str], query: QueryValues) -> RouteMatch | None:
        trie = self._tries.get((host, method))
        found = trie.find(segments, query) if trie is not None else None
        if found is None:
            return None
        route, params = found
        for name, suffix in route.strip_suffix:
            value = params.get(name, "")
            if value.endswith(suffix) and len(value) > len(suffix):
                params[name] = value[: -len(suffix)]
        return RouteMatch(self.name, route.route, params, route.scopes, route.required)


class _HostSet:
    """Exact host names and ``*.domain`` wildcards (subdomains of domain, not domain itself)."""

    def __init__(self, patterns: Iterable[str]) -> None:
        patterns = tuple(patterns)
        self._exact = frozenset(p for p in patterns if not p.startswith("*."))
        self._suffixes = tuple(p[1:] for p in patterns if p.startswith("*."))  # ".googleapis.com"

    def __contains__(self, host: object) -> bool:
        if not isinstance(host, str):
            return False
        if host in self._exact:
            return True
        return any(host.endswith(suffix) and len(host) > len(suffix) for suffix in self._suffixes)


def _normalize_host(host: str) -> str:
    host = host.lower()
    return host[:-1] if host.endswith(".") else host


def _implication_closure(scopes: Mapping[str, _ScopeSpec]) -> dict[str, frozenset[str]]:
    """For each scope, every scope it implies directly or through others (itself excluded)."""
    closure: dict[str, frozenset[str]] = {}

    def visit(scope: str, trail: tuple[str, ...]) -> frozenset[str]:
        if scope in trail:
            raise CatalogError(f"scope implication cycle: {' -> '.join((*trail, scope))}")
        if scope not in closure:
            implied: set[str] = set()
            for direct in scopes[scope].implies:
                implied |= {direct, *visit(direct, (*trail, scope))}
            closure[scope] = frozenset(implied)
        return closure[scope]

    for scope in scopes:
        visit(scope, ())
    return closure


def _build(spec: _CatalogFile) -> ProviderCatalog:
    where = f"{spec.provider} catalog"
    vocabulary = set(spec.scopes)
    for name, scope in spec.scopes.items():
        if not _SCOPE_NAME.fullmatch(name):
            raise CatalogError(f"{where}: scope {name!r} is not '<resource>:<access>'")
        _require_known(f"{where}: scope {name} implies", scope.implies, vocabulary)
    _require_known(f"{where}: implicit_scopes", spec.implicit_scopes, vocabulary)
    implied = _implication_closure(spec.scopes)
    _check_native_consistency(where, spec.scopes, implied)
    permitted_by = {s: frozenset({s} | {t for t in vocabulary if s in implied[t]}) for s in vocabulary}

    for host in spec.hosts:
        if not _HOST_NAME.fullmatch(host):
            raise CatalogError(f"{where}: bad host {host!r}")
    provider_hosts = _HostSet(spec.hosts)
    greedy = frozenset(spec.greedy_params)
    tries: dict[tuple[str, str], RouteTrie[_Route]] = {}
    for number, route in enumerate(spec.routes):
        at = f"{where}: route {number} ({route.path})"
        _require_known(at, route.scopes, vocabulary)
        required = frozenset(route.scopes)
        expanded = frozenset().union(*(permitted_by[s] for s in required))
        query = "&".join(f"{key}={value}" for key, value in sorted(route.query.items()))
        for host in route.hosts:
            if "*" in host or host not in provider_hosts:
                raise CatalogError(f"{at}: host {host!r} is not one of the provider's hosts")
            for method in route.methods:
                if method not in _METHODS:
                    raise CatalogError(f"{at}: unsupported method {method!r}")
                name = f"{method} {route.path}" + (f"?{query}" if query else "")
                entry = _Route(name, expanded, required, tuple(sorted(route.strip_suffix.items())))
                trie = tries.setdefault((host, method), RouteTrie(greedy))
                try:
                    trie.add(route.path, route.query, entry)
                except TemplateError as error:
                    raise CatalogError(f"{at}: {error}") from error
    return ProviderCatalog(spec.provider, spec.hosts, spec.scopes, implied, spec.implicit_scopes, tries)


def _require_known(where: str, names: Iterable[str], vocabulary: set[str]) -> None:
    unknown = sorted(set(names) - vocabulary)
    if unknown:
        raise CatalogError(f"{where}: unknown scope(s) {', '.join(unknown)}")


def _check_native_consistency(
    where: str, scopes: Mapping[str, _ScopeSpec], implied: Mapping[str, frozenset[str]]
) -> None:
    """Two scopes giving different levels of one native permission must be ordered by implication,
    so that ``native()`` never has to pick between them."""
    by_permission: dict[str, list[tuple[str, str]]] = {}
    for name, scope in scopes.items():
        for permission, level in scope.native.items():
            by_permission.setdefault(permission, []).append((name, level))
    for permission, holders in by_permission.items():
        for first, first_level in holders:
            for second, second_level in holders:
                unordered = first not in implied[second] and second not in implied[first]
                if first < second and first_level != second_level and unordered:
                    raise CatalogError(
                        f"{where}: scopes {first} and {second} give different levels of {permission!r} "
                        "but neither implies the other"
                    )
