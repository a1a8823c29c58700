from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import FULL_PERMISSIONS, GITHUB_SECRET, github_config, github_policy
from tether.sandbox.providers import SandboxProviders
from tether.sandbox.sidecar import SidecarProcess


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxProviders]:
    box = SandboxProviders(tmp_path_factory.mktemp("sandbox"), GITHUB_SECRET, FULL_PERMISSIONS)
    yield box
    box.stop()


@pytest.fixture
def make_tether(tmp_path: Path, sandbox: SandboxProviders) -> Iterator[Callable[..., SidecarProcess]]:
    started: list[SidecarProcess] = []

    def make(policy: dict[str, Any] | None = None, start: bool = True, **config: Any) -> SidecarProcess:
        directory = tmp_path / f"tether{len(started)}"
        directory.mkdir()
        merged = {**github_config(sandbox, directory / "github-token"), **config}
        proc = SidecarProcess(directory, merged, policy or github_policy())
        started.append(proc)
        return proc.start() if start else proc

    yield make
    for proc in started:
        proc.stop()


@pytest.fixture
def tether(make_tether: Callable[..., SidecarProcess]) -> SidecarProcess:
    return make_tether()
