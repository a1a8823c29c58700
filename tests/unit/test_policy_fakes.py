"""A small provider catalog with the shape of `tether.catalog`, for policy tests (no tests here)."""

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tether.policy.models import Policy, PolicySet


@dataclass(frozen=True)
class FakeRouteMatch:
    provider: str
    route: str
    params: Mapping[str, str]
    scopes: frozenset[str]
    required: frozenset[str]


@dataclass(frozen=True)
class FakeRoute:
    method: str
    host: str
    template: str
    required: frozenset[str]
    query: str = ""

    def match(self, method: str, host: str, path: str, query: str) -> dict[str, str] | None:
        if method != self.method or host != self.host or (self.query and query != self.query):
            return None
        pattern = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(self.template))
        found = re.fullmatch(pattern, path)
        return found.groupdict() if found else None


@dataclass
class FakeProvider:
    name: str
    hosts: tuple[str, ...]
    implies: dict[str, tuple[str, ...]]  # the vocabulary: scope -> scopes it implies directly
    routes: list[FakeRoute]
    implicit: frozenset[str] = field(default_factory=frozenset)

    def handles_host(self, host: str) -> bool:
        return any(host == h or (h.startswith("*.") and host.endswith(h[1:])) for h in self.hosts)

    def match(self, method: str, host: str, path: str, query: str = "") -> FakeRouteMatch | None:
        for route in self.routes:
            params = route.match(method, host, path, query)
            if params is not None:
                permitted = {s for s in self.implies if self.expand({s}) & route.required}
                return FakeRouteMatch(
                    self.name,
                    f"{route.method} {route.template}",
                    params,
                    frozenset(permitted),
                    route.required,
                )
        return None

    def scope_names(self) -> frozenset[str]:
        return frozenset(self.implies)

    def implicit_scopes(self) -> frozenset[str]:
        return self.implicit

    def expand(self, scopes: Iterable[str]) -> frozenset[str]:
        result, todo = set(), list(scopes)
        while todo:
            scope = todo.pop()
            if scope not in result:
                result.add(scope)
                todo.extend(self.implies.get(scope, ()))
        return frozenset(result)


@dataclass
class FakeCatalog:
    providers: dict[str, FakeProvider]

    def provider_for_host(self, host: str) -> FakeProvider | None:
        return next((p for p in self.providers.values() if p.handles_host(host)), None)


def _req(*scopes: str) -> frozenset[str]:
    return frozenset(scopes)


def fake_catalog() -> FakeCatalog:
    github = FakeProvider(
        name="github",
        hosts=("api.github.com", "github.com"),
        implies={
            "repo:read": (),
            "repo:write": ("repo:read",),
            "issues:read": (),
            "issues:write": ("issues:read",),
            "pull_requests:read": (),
            "pull_requests:write": ("pull_requests:read",),
            "administration:read": (),
            "administration:write": ("administration:read",),
            "metadata:read": (),
        },
        routes=[
            FakeRoute("GET", "api.github.com", "/repos/{owner}/{repo}", _req("metadata:read")),
            FakeRoute("DELETE", "api.github.com", "/repos/{owner}/{repo}", _req("administration:write")),
            FakeRoute(
                "GET",
                "api.github.com",
                "/repos/{owner}/{repo}/pulls/{pull_number}",
                _req("pull_requests:read", "repo:read"),
            ),
            FakeRoute(
                "POST",
                "api.github.com",
                "/repos/{owner}/{repo}/issues/{issue_number}/comments",
                _req("issues:write", "pull_requests:write"),
            ),
            FakeRoute("GET", "api.github.com", "/rate_limit", _req()),
            FakeRoute(
                "GET", "github.com", "/{owner}/{repo}/info/refs", _req("repo:read"), "service=git-upload-pack"
            ),
        ],
        implicit=frozenset({"metadata:read"}),
    )
    slack = FakeProvider(
        name="slack",
        hosts=("slack.com",),
        implies={"chat:write": (), "channels:read": (), "channels:write": ()},
        routes=[
            FakeRoute("POST", "slack.com", "/api/chat.postMessage", _req("chat:write")),
            FakeRoute("GET", "slack.com", "/api/conversations.list", _req("channels:read")),
        ],
    )
    google = FakeProvider(
        name="google",
        hosts=("*.googleapis.com",),
        implies={"storage:read": (), "storage:write": ("storage:read",), "storage:admin": ("storage:write",)},
        routes=[FakeRoute("GET", "storage.googleapis.com", "/storage/v1/b/{bucket}/o", _req("storage:read"))],
    )
    return FakeCatalog({p.name: p for p in (github, slack, google)})


def policy_set(*policies: dict[str, Any]) -> PolicySet:
    return PolicySet(tuple(Policy.model_validate(policy) for policy in policies))
