"""Hot reload: re-validate policy files when their contents change and swap the engine atomically.

Changes are detected by hashing file contents, not by mtime: a Kubernetes ConfigMap update swaps a
`..data` symlink, so the mounted path's own mtime need not change while its contents do.
"""

import asyncio
import hashlib
import inspect
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tether.policy.catalog_view import CatalogView
from tether.policy.engine import PolicyEngine
from tether.policy.loader import PolicyError, PolicySource, parse_policy_sources


@dataclass(frozen=True)
class ReloadResult:
    changed: bool  # the files differ from the previous attempt
    swapped: bool  # a new engine is now in force
    errors: tuple[str, ...]  # `file:line: message`; non-empty when the files on disk are rejected
    policy_ids: tuple[str, ...]  # the policies in force after this attempt
    digest: str  # sha256 over the files' contents, as read by this attempt

    @property
    def ok(self) -> bool:
        return not self.errors


class PolicyStore:
    """Holds the engine in force. Readers take `store.engine` per request; a reload replaces that one
    reference, so a request sees either the old engine or the new one, never a mix."""

    def __init__(self, paths: Sequence[Path], catalog: CatalogView) -> None:
        """Load the files; raise PolicyError when they are invalid (there is no last good policy yet)."""
        self._paths = tuple(paths)
        self._catalog = catalog
        self._lock = threading.Lock()
        sources = self._read()
        self._engine = PolicyEngine(parse_policy_sources(sources, catalog), catalog)
        self._fingerprint = _fingerprint(sources)
        self._errors: tuple[str, ...] = ()

    @property
    def engine(self) -> PolicyEngine:
        return self._engine

    def reload(self) -> ReloadResult:
        """Re-read the files; if their contents changed, validate them and swap on success. On failure
        the last good engine stays in force and the result carries the errors."""
        with self._lock:
            sources = self._read()
            fingerprint = _fingerprint(sources)
            changed = fingerprint != self._fingerprint
            swapped = False
            if changed:
                self._fingerprint = fingerprint
                try:
                    engine = PolicyEngine(parse_policy_sources(sources, self._catalog), self._catalog)
                except PolicyError as error:
                    self._errors = tuple(str(issue) for issue in error.errors)
                else:
                    self._engine, self._errors, swapped = engine, (), True
            policy_ids = tuple(policy.id for policy in self._engine.policies.policies)
            digest = hashlib.sha256("\n".join(fingerprint).encode()).hexdigest()
            return ReloadResult(changed, swapped, self._errors, policy_ids, digest)

    async def watch(
        self, interval: float, on_result: Callable[[ReloadResult], Awaitable[None] | None]
    ) -> None:
        """Poll every `interval` seconds until cancelled; call `on_result` for each change (swapped or
        rejected). Exceptions from `on_result` end the loop: the caller decides what they mean."""
        while True:
            await asyncio.sleep(interval)
            result = await asyncio.to_thread(self.reload)
            if result.changed:
                outcome = on_result(result)
                if inspect.isawaitable(outcome):
                    await outcome

    def _read(self) -> list[PolicySource]:
        return [PolicySource.read(path) for path in self._paths]


def _fingerprint(sources: Sequence[PolicySource]) -> tuple[str, ...]:
    return tuple(
        hashlib.sha256(source.content).hexdigest()
        if source.content is not None
        else f"unreadable: {source.read_error}"
        for source in sources
    )
