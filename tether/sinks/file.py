"""JSON Lines to a file (for Vector, Fluent Bit or Filebeat pickup) or to stdout (`path: "-"`).

Each batch is appended and fsynced before the cursor moves. When the next batch would take the file
past `rotate_bytes`, the file is renamed to `path.1` (older ones shift to `.2` … `.keep_files`, the
oldest is removed) and a new file is started — the rename-and-create pattern log shippers follow.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from tether.sinks.base import Outcome, Sink
from tether.sinks.config import FileSink


class JsonLines(Sink):
    config: FileSink

    def __init__(self, config: FileSink) -> None:
        super().__init__(config)
        self.path = None if config.path == "-" else Path(config.path)

    def encode(self, event: dict[str, Any], raw: str | None = None) -> bytes:
        return (self.payload_json(event, raw) + "\n").encode()

    async def send(self, records: list[bytes]) -> Outcome:
        data = b"".join(records)
        # In a thread: a slow reader of stdout (a full pipe) or a slow disk must not stall the proxy.
        await asyncio.to_thread(self._append if self.path is not None else _to_stdout, data)
        return Outcome.ok()

    def _append(self, data: bytes) -> None:
        assert self.path is not None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            size = 0
        if size and size + len(data) > self.config.rotate_bytes:
            self._rotate()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)

    def _rotate(self) -> None:
        assert self.path is not None
        keep = self.config.keep_files
        oldest = self.path.with_name(f"{self.path.name}.{keep}")
        oldest.unlink(missing_ok=True)
        for n in range(keep - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{n}")
            if older.exists():
                older.replace(self.path.with_name(f"{self.path.name}.{n + 1}"))
        self.path.replace(self.path.with_name(f"{self.path.name}.1"))


def _to_stdout(data: bytes) -> None:
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()
