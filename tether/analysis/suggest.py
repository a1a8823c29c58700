"""`tether policy suggest`: a least-privilege policy from what an agent actually did.

From the calls tether forwarded in the agent's recent runs (`api.request`; in report mode that
includes calls enforce mode would have denied), it grants:

- per provider, the fewest scopes that cover every catalogued call (for a route that any one of
  several scopes permits, one already chosen is reused, else the first in name order) and, for
  GitHub, only the repositories called;
- `egress` for the exact non-provider hosts called;
- an exact allow rule (method + host + path) for each provider call outside the catalog;

each with comments that give the evidence: routes, call counts and run ids. Calls tether refused
are listed in a comment and not granted. The result is a normal policy file: `tether policy check`
it, try it in `mode: report`, then enforce it.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from tether.catalog import Catalog
from tether.ledger.store import Ledger
from tether.ledger.timeline import printable
from tether.policy.patterns import PathTemplate

MAX_RUN_IDS = 5


@dataclass
class _Evidence:
    calls: Counter[str] = field(default_factory=Counter)  # route or call -> count
    runs: dict[str, None] = field(default_factory=dict)  # run ids in order

    def add(self, what: str, run_id: str) -> None:
        self.calls[what] += 1
        self.runs.setdefault(run_id)

    def comment(self, indent: str) -> list[str]:
        lines = [f"{indent}#   {count:>5} x {_clean(what)}" for what, count in self.calls.most_common()]
        runs = list(self.runs)
        shown = ", ".join(_clean(run) for run in runs[:MAX_RUN_IDS])
        more = f" and {len(runs) - MAX_RUN_IDS} more" if len(runs) > MAX_RUN_IDS else ""
        return [*lines, f"{indent}#   in {len(runs)} run(s): {shown}{more}"]


@dataclass
class _Provider:
    credential: str | None = None
    ttl_seconds: int | None = None
    scopes: dict[str, _Evidence] = field(default_factory=dict)
    unscoped: _Evidence = field(default_factory=_Evidence)  # calls that need no scope
    repositories: dict[str, _Evidence] = field(default_factory=dict)


@dataclass
class Suggestion:
    agent: str
    runs: list[str]
    calls: int
    providers: dict[str, _Provider] = field(default_factory=dict)
    egress: dict[str, _Evidence] = field(default_factory=dict)
    rules: dict[tuple[str, str, str], _Evidence] = field(default_factory=dict)  # (method, host, path)
    denied: _Evidence = field(default_factory=_Evidence)
    skipped: _Evidence = field(default_factory=_Evidence)  # calls no policy line can express


def _clean(text: str) -> str:
    """One comment line: no line breaks or control characters from attacker-influenced fields."""
    return printable(text)[:200]


def _literal_path(path: str) -> bool:
    """Whether a rule path of `path` matches exactly that path (no {param} or ** wildcard in it)."""
    if any(char in path for char in "{}*"):
        return False
    try:
        PathTemplate(path)
    except ValueError:
        return False
    return True


def _q(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid double-quoted YAML scalar


def suggest(
    events: Iterable[dict[str, Any]], catalog: Catalog, agent: str, runs: int | None = None
) -> Suggestion:
    """The evidence for a policy from `events` of `agent` (its last `runs` runs with calls)."""
    by_run: dict[str, list[dict[str, Any]]] = defaultdict(list)
    tokens: dict[str, dict[str, Any]] = {}
    for event in events:
        if event.get("agent_name") != agent or not event.get("run_id"):
            continue
        if event["event_type"] == "token.minted" and event.get("provider"):
            tokens[event["provider"]] = event
        elif event["event_type"] in ("api.request", "api.denied"):
            by_run[event["run_id"]].append(event)
    chosen = list(by_run)[-runs:] if runs else list(by_run)
    result = Suggestion(agent=agent, runs=chosen, calls=sum(len(by_run[run]) for run in chosen))
    forwarded: list[tuple[dict[str, Any], str]] = []
    for run_id in chosen:
        for event in by_run[run_id]:
            request = event.get("request") or {}
            target = f"{request.get('method')} {request.get('host')}{request.get('path')}"
            if event["event_type"] == "api.denied":
                reason = (event.get("decision") or {}).get("reason") or "denied"
                result.denied.add(f"{target}: {reason}", run_id)
            else:
                forwarded.append((event, run_id))
    # Most used routes first, so the scopes they pick are reused by the rarer ones.
    routes = Counter((e.get("request") or {}).get("route") for e, _ in forwarded)
    forwarded.sort(key=lambda item: -routes[(item[0].get("request") or {}).get("route")])
    for event, run_id in forwarded:
        _add_call(result, catalog, event, run_id, tokens)
    return result


def _credential_name(detail: dict[str, Any]) -> str | None:
    """The tether.yaml credential a token came from (ledgers before `credential_name`: static ones)."""
    name = detail.get("credential_name")
    if isinstance(name, str) and name:
        return name
    source = str(detail.get("credential") or "")
    return source.removeprefix("static:") or None if source.startswith("static:") else None


def _add_call(
    result: Suggestion,
    catalog: Catalog,
    event: dict[str, Any],
    run_id: str,
    tokens: dict[str, dict[str, Any]],
) -> None:
    request = event.get("request") or {}
    method, host, path = request.get("method") or "", request.get("host") or "", request.get("path") or ""
    provider = catalog.provider_for_host(host)
    if provider is None:
        result.egress.setdefault(host, _Evidence()).add(f"{method} {host}{path}", run_id)
        return
    section = result.providers.setdefault(provider.name, _Provider())
    minted = tokens.get(provider.name) or {}
    section.credential = section.credential or _credential_name(minted.get("detail") or {})
    section.ttl_seconds = section.ttl_seconds or minted.get("ttl_seconds")
    match = provider.match(method, host, path)
    if match is None:
        if not _literal_path(path):
            result.skipped.add(
                f"{method} {host}{path} (not a route tether knows; path not expressible)", run_id
            )
            return
        result.rules.setdefault((method, host, path), _Evidence()).add(f"{method} {host}{path}", run_id)
        return
    owner, repo = match.params.get("owner"), match.params.get("repo")
    if owner and repo and provider.name == "github":
        name = f"{owner}/{repo.removesuffix('.git')}".lower()
        section.repositories.setdefault(name, _Evidence()).add(match.route, run_id)
    if not match.scopes or match.scopes & provider.implicit_scopes():
        section.unscoped.add(match.route, run_id)
        return
    covering = [scope for scope in section.scopes if scope in match.scopes]
    scope = covering[0] if covering else sorted(match.required)[0]
    section.scopes.setdefault(scope, _Evidence()).add(match.route, run_id)


def render(result: Suggestion, catalog: Catalog, generated_at: str) -> str:
    """The suggestion as a policy YAML file with the evidence in comments."""
    agent = result.agent
    lines = [
        f"# Suggested by `tether policy suggest --agent {_clean(agent)}` at {generated_at}:",
        f"# least privilege for what {_clean(agent)} did in {len(result.runs)} run(s), "
        f"{result.calls} call(s).",
        "# Check it (`tether policy check`), run it in `mode: report` for a while, then enforce it.",
        f"id: {_q('pol_' + agent + '-suggested')}",
        f"agents: [{_q(agent)}]",
        "mode: enforce",
    ]
    if result.egress:
        lines.append("egress:")
        for host, evidence in result.egress.items():
            lines += ["  # evidence:", *evidence.comment("  "), f"  - {_q(host)}"]
    if result.providers:
        lines.append("providers:")
    for name, section in result.providers.items():
        provider = catalog.providers[name]
        implied = frozenset().union(*(provider.expand({s}) - {s} for s in section.scopes))
        scopes = [scope for scope in section.scopes if scope not in implied]
        lines.append(f"  {name}:")
        credential = section.credential or name
        note = "" if section.credential else "  # no token was recorded: name the credential from tether.yaml"
        lines.append(f"    credential: {_q(credential)}{note}")
        for scope, evidence in section.scopes.items():
            lines += [f"    # {scope}:", *evidence.comment("    ")]
        if section.unscoped.calls:
            lines += ["    # calls no scope is needed for:", *section.unscoped.comment("    ")]
        lines.append(f"    scopes: [{', '.join(_q(scope) for scope in sorted(scopes))}]")
        if section.ttl_seconds:
            lines.append(f"    ttl_seconds: {int(section.ttl_seconds)}")
        if section.repositories:
            for repository, evidence in section.repositories.items():
                lines += [f"    # {_clean(repository)}:", *evidence.comment("    ")]
            lines.append(f"    repositories: [{', '.join(_q(r) for r in sorted(section.repositories))}]")
    if result.rules:
        lines.append("rules:")
        for index, ((method, host, path), evidence) in enumerate(result.rules.items(), 1):
            lines += [
                "  # a provider call outside tether's catalog, allowed exactly:",
                *evidence.comment("  "),
            ]
            lines += [
                f"  - name: observed-{index}",
                "    action: allow",
                f"    methods: [{_q(method)}]",
                f"    host: {_q(host)}",
                f"    path: {_q(path)}",
            ]
    if result.denied.calls:
        lines += ["# Denied in these runs and not granted here:", *result.denied.comment("")]
    if result.skipped.calls:
        lines += [
            "# Forwarded but not expressible as a policy line (review by hand):",
            *result.skipped.comment(""),
        ]
    if not result.providers and not result.egress and not result.rules:
        lines.append("# No forwarded calls in these runs: this policy allows nothing.")
        lines.append("providers: {}")
    return "\n".join(lines) + "\n"


def suggest_from_ledger(ledger: Ledger, catalog: Catalog, agent: str, runs: int | None) -> Suggestion:
    types = ("api.request", "api.denied", "token.minted")
    return suggest(ledger.iter_events(agent=agent, event_types=types), catalog, agent, runs)
