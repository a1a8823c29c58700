"""The slot through which addons reach the sidecar's services once the lifecycle addon built them."""

from __future__ import annotations

from tether.proxy.runtime import Runtime


class Holder:
    def __init__(self, runtime: Runtime | None = None) -> None:
        self._runtime = runtime

    @property
    def runtime(self) -> Runtime:
        if self._runtime is None:
            raise RuntimeError("tether is not configured: set the tether_config option")
        return self._runtime

    @property
    def ready(self) -> bool:
        return self._runtime is not None

    def set(self, runtime: Runtime | None) -> None:
        self._runtime = runtime
