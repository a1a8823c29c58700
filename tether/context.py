"""Run context: which run, task and human a call belongs to.

Priority (DESIGN.md contract): request headers `X-Tether-Run`, `X-Tether-Task`, `X-Tether-Triggered-By`
→ the run opened with `POST /v1/runs` → env `TETHER_RUN_ID`, `TETHER_TASK`, `TETHER_TRIGGERED_BY`
→ a run generated at start. Every event has a non-empty `run_id`.
"""

from __future__ import annotations

import re
import threading
import time
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from tether.config import new_run_id

MAX_RUN_ID = 128
MAX_TASK = 512
MAX_TRIGGERED_BY = 256
MAX_SCOPES = 2048
MAX_OPEN_API_RUNS = 1_000  # runs opened with POST /v1/runs and not ended
MAX_REMEMBERED_RUNS = 10_000  # header-named and ended runs beyond this are forgotten, oldest first

_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")
_PROVIDER = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
_SCOPE = re.compile(r"^[A-Za-z0-9_.-]+:[A-Za-z0-9_.-]+$")

Scopes = Mapping[str, frozenset[str]]


class ContextError(ValueError):
    """An agent-supplied context value that tether refuses (said back to the agent verbatim)."""


def check_text(name: str, value: str, limit: int) -> str:
    """Refuse over-long values, invalid UTF-8 (surrogate escapes) and control characters incl. CR/LF/NUL."""
    if len(value) > limit:
        raise ContextError(f"{name} is longer than {limit} characters")
    if any(0xD800 <= ord(ch) <= 0xDFFF for ch in value):
        raise ContextError(f"{name} is not valid UTF-8")
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in value):
        raise ContextError(f"{name} contains control characters")
    return value.strip()


def check_run_id(value: str) -> str:
    value = check_text("run id", value, MAX_RUN_ID)
    if not _RUN_ID.match(value):
        raise ContextError("run id may only contain letters, digits, '.', '_', ':' and '-'")
    return value


def parse_scopes(value: str) -> dict[str, frozenset[str]]:
    """`github=repo:write,issues:write; slack=chat:write` → {"github": {...}, "slack": {...}}."""
    value = check_text("X-Tether-Scopes", value, MAX_SCOPES)
    scopes: dict[str, set[str]] = {}
    for part in filter(None, (p.strip() for p in value.split(";"))):
        provider, sep, names = part.partition("=")
        provider = provider.strip().lower()
        if not sep or not _PROVIDER.match(provider):
            raise ContextError(f"scope request {part!r} is not provider=scope,scope")
        for name in filter(None, (n.strip() for n in names.split(","))):
            if not _SCOPE.match(name):
                raise ContextError(f"scope {name!r} is not resource:access")
            scopes.setdefault(provider, set()).add(name)
        scopes.setdefault(provider, set())
    return {provider: frozenset(names) for provider, names in scopes.items()}


def scopes_from_json(value: object) -> dict[str, frozenset[str]]:
    """The `scopes` field of POST /v1/runs: {"github": ["repo:read"]} or the header string form."""
    if value is None:
        return {}
    if isinstance(value, str):
        return parse_scopes(value)
    if not isinstance(value, dict) or not all(
        isinstance(names, list) and all(isinstance(n, str) for n in names) for names in value.values()
    ):
        raise ContextError('scopes must be {"provider": ["resource:access", ...]} or "provider=a,b; ..."')
    text = "; ".join(f"{provider}={','.join(names)}" for provider, names in value.items())
    return parse_scopes(text)


@dataclass(frozen=True)
class RunContext:
    run_id: str
    task_context: str | None = None
    triggered_by: str | None = None
    scopes: Scopes = field(default_factory=dict)
    origin: str = "generated"  # header | api | env | generated
    started_at: float = field(default_factory=time.time)
    ended_at: float | None = None

    @property
    def active(self) -> bool:
        return self.ended_at is None


class RunRegistry:
    """The runs this sidecar knows. Thread-safe: the control API and the proxy share it."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._lock = threading.Lock()
        self._runs: dict[str, RunContext] = {}
        self._api_runs: list[str] = []  # open order; the newest active one is the default
        run_id = environ.get("TETHER_RUN_ID")
        self.default = RunContext(
            run_id=check_run_id(run_id) if run_id else new_run_id(),
            task_context=_optional(environ.get("TETHER_TASK"), "TETHER_TASK", MAX_TASK),
            triggered_by=_optional(
                environ.get("TETHER_TRIGGERED_BY"), "TETHER_TRIGGERED_BY", MAX_TRIGGERED_BY
            ),
            scopes=parse_scopes(environ["TETHER_SCOPES"]) if environ.get("TETHER_SCOPES") else {},
            origin="env" if run_id else "generated",
        )
        self._runs[self.default.run_id] = self.default

    def open(self, *, task_context: str | None, triggered_by: str | None, scopes: Scopes) -> RunContext:
        run = RunContext(
            run_id=new_run_id(),
            task_context=_optional(task_context, "task_context", MAX_TASK),
            triggered_by=_optional(triggered_by, "triggered_by", MAX_TRIGGERED_BY),
            scopes=scopes,
            origin="api",
        )
        with self._lock:
            if len(self._api_runs) >= MAX_OPEN_API_RUNS:
                raise ContextError(f"{MAX_OPEN_API_RUNS} runs are open: end one with POST /v1/runs/ID/end")
            self._runs[run.run_id] = run
            self._api_runs.append(run.run_id)
            self._forget_oldest()
        return run

    def end(self, run_id: str) -> RunContext | None:
        """Mark a run ended; None when unknown. Ending twice returns the already ended run."""
        with self._lock:
            run = self._runs.get(run_id)
            if run is None or not run.active:
                return run
            ended = replace(run, ended_at=time.time())
            self._runs[run_id] = ended
            if run_id in self._api_runs:
                self._api_runs.remove(run_id)
            return ended

    def get(self, run_id: str) -> RunContext | None:
        with self._lock:
            return self._runs.get(run_id)

    def current(self) -> RunContext:
        """The newest active run opened through the API, else the sidecar's default run."""
        with self._lock:
            return self._runs[self._api_runs[-1]] if self._api_runs else self.default

    def adopt(self, run_id: str) -> tuple[RunContext, bool]:
        """The run named by an X-Tether-Run header; (run, created) — unknown ids become header runs."""
        with self._lock:
            run = self._runs.get(run_id)
            if run is not None:
                return run, False
            run = RunContext(run_id=run_id, origin="header")
            self._runs[run_id] = run
            self._forget_oldest()
            return run, True

    def _forget_oldest(self) -> None:
        """Keep memory flat when agents name many runs: drop the oldest header or ended runs."""
        excess = len(self._runs) - MAX_REMEMBERED_RUNS
        for run_id in list(self._runs):
            if excess <= 0:
                return
            run = self._runs[run_id]
            if run is not self.default and (run.origin == "header" or not run.active):
                del self._runs[run_id]
                excess -= 1

    def active_runs(self) -> list[RunContext]:
        with self._lock:
            return [run for run in self._runs.values() if run.active]


def _optional(value: str | None, name: str, limit: int) -> str | None:
    if value is None:
        return None
    return check_text(name, value, limit) or None
