"""Policy decisions for one request, and the scope grant for a token. Plain Python, no proxy.

Decision order (the first deny wins): no policy for the agent; host neither a granted provider's,
nor in egress, nor named by an allow rule; SSRF guard; deny rules; hours; for provider hosts the
catalog route, repository narrowing and scope. In report mode a deny verdict is still forwarded.
"""

import ipaddress
import zoneinfo
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, time
from types import MappingProxyType
from typing import Literal

from tether.policy.addresses import blocked_destination
from tether.policy.catalog_view import CatalogView, ProviderCatalogView, RouteMatchView
from tether.policy.models import DAYS, Hours, Policy, PolicySet, ProviderGrant, Rule
from tether.policy.patterns import (
    HostPattern,
    PathTemplate,
    canonical_path,
    glob_matches,
    normalize_host,
    parse_host_pattern,
)

_NO_PARAMS: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True)
class RequestFacts:
    agent_name: str
    method: str
    host: str
    port: int
    path: str  # without the query
    query: str
    # per provider, from X-Tether-Scopes or the run; None (or a provider missing) = no ask = full grant
    requested_scopes: Mapping[str, frozenset[str]] | None
    resolved_ips: Sequence[ipaddress.IPv4Address | ipaddress.IPv6Address]  # after DNS, for the SSRF guard
    trusted_destination: bool  # the host has an upstream override: skip the SSRF guard
    now: datetime  # timezone-aware


@dataclass(frozen=True)
class Grant:
    """What a token for (agent, provider) may carry."""

    provider: str
    policy_id: str
    credential: str
    ttl_seconds: int
    tag_upstream: bool
    requested: tuple[str, ...] | None  # the agent's ask, sorted; None = no ask
    granted: tuple[str, ...]  # ask ∩ policy (write implies read), sorted; no ask = the policy's grant
    downscoped: bool  # the ask named something the policy does not grant
    repositories: tuple[str, ...] | None = None  # the policy's `owner/repo` globs, lower-case (GitHub)


@dataclass(frozen=True)
class Decision:
    action: Literal["allow", "deny"]  # the policy's verdict
    forward: bool  # False only for a deny in enforce mode
    mode: Literal["enforce", "report"]
    reason: str | None = None  # "<code>: <text>", e.g. "scope_not_granted: needs issues:write"
    rule: str | None = None  # what decided: a rule name, "egress", "default-deny", "hours", ...
    policy_id: str | None = None
    provider: str | None = None
    route: str | None = None
    params: Mapping[str, str] = field(default_factory=lambda: _NO_PARAMS)
    grant: Grant | None = None
    scope_needed: tuple[str, ...] | None = None  # what the route needs (any one of them)
    downscoped: bool = False  # the policy grants what the call needed, but the agent's ask cut it
    flags: tuple[str, ...] = ()  # e.g. ("off_hours",)


@dataclass(frozen=True)
class _CompiledRule:
    name: str
    methods: frozenset[str] | None  # None = any
    host: HostPattern | None  # None = any
    path: PathTemplate

    @classmethod
    def of(cls, rule: Rule) -> "_CompiledRule":
        methods = None if "*" in rule.methods else frozenset(rule.methods)
        host = parse_host_pattern(rule.host) if rule.host is not None else None
        return cls(rule.name, methods, host, PathTemplate(rule.path))

    def matches(self, method: str, host: str, port: int, path: str) -> bool:
        return (
            (self.methods is None or method in self.methods)
            and (self.host is None or self.host.matches(host, port))
            and self.path.matches(path)
        )


@dataclass(frozen=True)
class _Window:
    days: frozenset[str]
    start: time
    end: time
    timezone: zoneinfo.ZoneInfo
    outside: Literal["deny", "flag"]
    text: str

    @classmethod
    def of(cls, hours: Hours) -> "_Window":
        text = f"{','.join(hours.days)} {hours.start}-{hours.end} {hours.timezone}"
        zone = zoneinfo.ZoneInfo(hours.timezone)
        return cls(frozenset(hours.days), hours.start_time, hours.end_time, zone, hours.outside, text)

    def contains(self, now: datetime) -> bool:
        local = now.astimezone(self.timezone)
        clock = local.time().replace(tzinfo=None)
        today, yesterday = DAYS[local.weekday()], DAYS[(local.weekday() - 1) % 7]
        if self.start < self.end:
            return today in self.days and self.start <= clock < self.end
        # overnight: the part after start belongs to today, the part before end to the day it began
        return (today in self.days and clock >= self.start) or (yesterday in self.days and clock < self.end)


@dataclass(frozen=True)
class _CompiledPolicy:
    policy: Policy
    egress: tuple[HostPattern, ...]
    deny_rules: tuple[_CompiledRule, ...]
    allow_rules: tuple[_CompiledRule, ...]
    window: _Window | None

    @classmethod
    def of(cls, policy: Policy) -> "_CompiledPolicy":
        rules = [_CompiledRule.of(rule) for rule in policy.rules]
        actions = {rule.name: rule.action for rule in policy.rules}
        return cls(
            policy=policy,
            egress=tuple(parse_host_pattern(entry) for entry in policy.egress),
            deny_rules=tuple(rule for rule in rules if actions[rule.name] == "deny"),
            allow_rules=tuple(rule for rule in rules if actions[rule.name] == "allow"),
            window=_Window.of(policy.hours) if policy.hours else None,
        )


class PolicyEngine:
    def __init__(self, policies: PolicySet, catalog: CatalogView) -> None:
        self.policies = policies
        self._catalog = catalog
        self._policies = tuple(_CompiledPolicy.of(policy) for policy in policies.policies)

    def policy_for(self, agent_name: str) -> Policy | None:
        compiled = self._compiled_for(agent_name)
        return compiled.policy if compiled else None

    def grant(self, agent_name: str, provider: str, requested: frozenset[str] | None) -> Grant | None:
        """The scopes a token for `agent_name` at `provider` carries, or None if the policy grants none."""
        policy = self.policy_for(agent_name)
        catalog_provider = self._catalog.providers.get(provider)
        if policy is None or catalog_provider is None or provider not in policy.providers:
            return None
        return _grant(policy, catalog_provider, requested)

    def decide(self, facts: RequestFacts) -> Decision:
        if facts.now.tzinfo is None:
            raise ValueError("RequestFacts.now must be timezone-aware")
        compiled = self._compiled_for(facts.agent_name)
        if compiled is None:
            reason = f"no_policy: no policy applies to agent {facts.agent_name!r}"
            return Decision(action="deny", forward=False, mode="enforce", reason=reason, rule="default-deny")
        policy = compiled.policy
        base = Decision(action="allow", forward=True, mode=policy.mode, policy_id=policy.id)
        method, host, port = facts.method.upper(), normalize_host(facts.host), facts.port
        try:
            path = canonical_path(facts.path)
        except ValueError as error:
            return _deny(base, f"invalid_path: {error}", "default-deny")

        provider = self._catalog.provider_for_host(host)
        if provider is not None and provider.name not in policy.providers:
            provider = None
        allow_rule = _first_match(compiled.allow_rules, method, host, port, path)
        in_egress = any(entry.matches(host, port) for entry in compiled.egress)
        if provider is None and not in_egress and allow_rule is None:
            return _deny(
                base, f"host_not_allowed: {self._host_not_allowed(policy, host, port)}", "default-deny"
            )
        grant, match = None, None
        if provider is not None:  # every decision on a provider host names its grant and route
            requested = facts.requested_scopes.get(provider.name) if facts.requested_scopes else None
            grant = _grant(policy, provider, requested)
            base = replace(base, provider=provider.name, grant=grant)
            match = provider.match(method, host, path, facts.query)
            if match is not None:
                needed = tuple(sorted(match.required))
                base = replace(base, route=match.route, params=match.params, scope_needed=needed)

        named_exactly = any(not entry.wildcard and entry.matches(host, port) for entry in compiled.egress)
        if not facts.trusted_destination and not named_exactly:
            blocked = blocked_destination(host, facts.resolved_ips)
            if blocked is not None:
                # Never forwarded, not even in report mode: reporting does not make a metadata
                # endpoint or an internal service safe to reach.
                return replace(_deny(base, blocked, "ssrf-guard"), forward=False)

        deny_rule = _first_match(compiled.deny_rules, method, host, port, path)
        if deny_rule is not None:
            return _deny(base, f"denied_by_rule: {deny_rule.name}", deny_rule.name)

        window = compiled.window
        if window is not None and not window.contains(facts.now):
            if window.outside == "deny":
                return _deny(base, f"off_hours: outside the policy's hours ({window.text})", "hours")
            base = replace(base, flags=("off_hours",))

        if provider is None or grant is None:
            return replace(base, rule=allow_rule.name if allow_rule else "egress")
        if match is None:
            if allow_rule is not None:
                return replace(base, rule=allow_rule.name)
            reason = f"unknown_route: {method} {path} is not a known {provider.name} route"
            return _deny(base, reason, "default-deny")
        return _check_grant(base, grant, policy.providers[provider.name], provider, match)

    def _compiled_for(self, agent_name: str) -> _CompiledPolicy | None:
        for compiled in self._policies:
            if any(glob_matches(pattern, agent_name) for pattern in compiled.policy.agents):
                return compiled
        return None

    def _host_not_allowed(self, policy: Policy, host: str, port: int) -> str:
        owner = self._catalog.provider_for_host(host)
        if owner is not None:
            return f"{host} belongs to provider {owner.name!r}, which policy {policy.id!r} does not grant"
        return f"{host}:{port} is not in the policy's egress, providers or allow rules"


def _check_grant(
    base: Decision, grant: Grant, section: ProviderGrant, provider: ProviderCatalogView, match: RouteMatchView
) -> Decision:
    """Repository narrowing and scope checks for a catalogued call to a granted provider."""
    rule = f"providers.{provider.name}"

    repository = _repository(match.params)
    if (
        section.repositories is not None
        and repository is not None
        and not any(glob_matches(pattern.lower(), repository) for pattern in section.repositories)
    ):
        text = f"{repository} is not in {rule}.repositories"
        return _deny(base, f"repository_not_allowed: {text}", f"{rule}.repositories")

    # match.scopes lists every scope that permits the call, stronger ones included
    permitted_by, implicit = match.scopes, provider.implicit_scopes()
    if not permitted_by or permitted_by & (frozenset(grant.granted) | implicit):
        return replace(base, rule=rule)
    policy_would_allow = bool(permitted_by & (frozenset(section.scopes) | implicit))
    text = "needs " + " or ".join(base.scope_needed or ())
    return _deny(replace(base, downscoped=policy_would_allow), f"scope_not_granted: {text}", f"{rule}.scopes")


def _grant(policy: Policy, provider: ProviderCatalogView, requested: frozenset[str] | None) -> Grant:
    """granted = (ask ∩ policy) under the catalog's implications: asking for repo:write where the
    policy grants repo:read yields repo:read; never anything the policy's scopes do not imply."""
    section = policy.providers[provider.name]
    if requested is None:
        granted, downscoped = _strongest(provider, section.scopes), False
    else:
        allowed = provider.expand(section.scopes)
        granted = _strongest(provider, provider.expand(requested) & allowed)
        downscoped = not requested <= allowed
    return Grant(
        provider=provider.name,
        policy_id=policy.id,
        credential=section.credential,
        ttl_seconds=section.ttl_seconds,
        tag_upstream=section.tag_upstream,
        requested=tuple(sorted(requested)) if requested is not None else None,
        granted=granted,
        downscoped=downscoped,
        repositories=tuple(sorted({r.lower() for r in section.repositories}))
        if section.repositories is not None
        else None,
    )


def _strongest(provider: ProviderCatalogView, scopes: Iterable[str]) -> tuple[str, ...]:
    """Sorted, without the scopes another member of the set already implies."""
    scopes = frozenset(scopes)
    implied = frozenset().union(*(provider.expand({scope}) - {scope} for scope in scopes))
    return tuple(sorted(scopes - implied))


def _deny(base: Decision, reason: str, rule: str) -> Decision:
    return replace(base, action="deny", forward=base.mode == "report", reason=reason, rule=rule)


def _first_match(
    rules: Iterable[_CompiledRule], method: str, host: str, port: int, path: str
) -> _CompiledRule | None:
    return next((rule for rule in rules if rule.matches(method, host, port, path)), None)


def _repository(params: Mapping[str, str]) -> str | None:
    """`owner/repo` of a GitHub route (git smart HTTP paths carry a `.git` suffix), lower-cased."""
    owner, repo = params.get("owner"), params.get("repo")
    if owner is None or repo is None:
        return None
    return f"{owner}/{repo.removesuffix('.git')}".lower()
