"""The part of the provider catalog (`tether.catalog`) that the policy code relies on.

Declared as protocols so policy validation and decisions can be tested with small fakes and stay
independent of how the catalog is stored.
"""

from collections.abc import Iterable, Mapping
from typing import Protocol


class RouteMatchView(Protocol):
    @property
    def provider(self) -> str: ...
    @property
    def route(self) -> str: ...  # e.g. "GET /repos/{owner}/{repo}/pulls/{pull_number}"
    @property
    def params(self) -> Mapping[str, str]: ...
    @property
    def scopes(self) -> frozenset[str]: ...  # any ONE of them permits the call (implications expanded)
    @property
    def required(self) -> frozenset[str]: ...  # the least scopes that permit the call (before expansion)


class ProviderCatalogView(Protocol):
    @property
    def name(self) -> str: ...
    def handles_host(self, host: str) -> bool: ...
    def match(self, method: str, host: str, path: str, query: str = "") -> RouteMatchView | None: ...
    def scope_names(self) -> frozenset[str]: ...
    def implicit_scopes(self) -> frozenset[str]: ...
    def expand(self, scopes: Iterable[str]) -> frozenset[str]: ...  # the scopes and all they imply


class CatalogView(Protocol):
    @property
    def providers(self) -> Mapping[str, ProviderCatalogView]: ...
    def provider_for_host(self, host: str) -> ProviderCatalogView | None: ...
