"""Runs `tether run` as a child process on free ports, for the demo and the integration tests."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import requests
import yaml

START_TIMEOUT_SECONDS = 60.0


# Below Linux's ephemeral range (32768-60999): a port handed out here is not also taken meanwhile by
# an outgoing connection's source port, which made child processes fail to bind under load.
LISTEN_PORTS = range(20000, 32000)


def free_port() -> int:
    """A port nothing listens on now, for a child process to bind a moment later."""
    for _ in range(200):
        port = random.choice(LISTEN_PORTS)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port found")


class SidecarProcess:
    """One tether sidecar: its config, policy and state live in `directory`."""

    def __init__(
        self,
        directory: Path,
        config: dict[str, Any],
        policy: dict[str, Any],
        *,
        agent_name: str = "test-agent",
        env: dict[str, str] | None = None,
    ) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.env = env or {}
        self.proxy_port = free_port()
        self.api_port = free_port()
        self.policy_path = directory / "policy.yaml"
        self.config_path = directory / "tether.yaml"
        self.log_path = directory / "tether.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.write_policy(policy)
        settings = {
            "agent_name": agent_name,
            "proxy_listen": f"127.0.0.1:{self.proxy_port}",
            "api_listen": f"127.0.0.1:{self.api_port}",
            "state_dir": str(directory / "state"),
            "policy_files": [str(self.policy_path)],
            "policy_reload_seconds": 0.5,
            **config,
        }
        self.config_path.write_text(yaml.safe_dump(settings))

    @property
    def proxy_url(self) -> str:
        return f"http://127.0.0.1:{self.proxy_port}"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def ca_cert(self) -> Path:
        return self.directory / "state" / "mitmproxy-ca-cert.pem"

    @property
    def ledger_path(self) -> Path:
        return self.directory / "state" / "ledger.db"

    def write_policy(self, policy: dict[str, Any]) -> None:
        """Replace the policy file atomically (the running sidecar hot reloads it)."""
        tmp = self.policy_path.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(policy, sort_keys=False))
        tmp.replace(self.policy_path)

    def start(self) -> SidecarProcess:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tether.cli", "run", "--config", str(self.config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.env},
                cwd=self.directory,
            )
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"tether exited with {self.process.returncode}:\n{self.log()}")
            if self._healthy():
                return self
            time.sleep(0.1)
        raise RuntimeError(f"tether did not start within {START_TIMEOUT_SECONDS:.0f}s:\n{self.log()}")

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.api_url}/healthz", timeout=1) as resp:
                if resp.status != 200 or not self.ca_cert.exists():
                    return False
            with socket.create_connection(("127.0.0.1", self.proxy_port), timeout=1):
                return True
        except (urllib.error.URLError, OSError):
            return False

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def session(self, **headers: str) -> requests.Session:
        """A `requests` client put behind tether, trusting only tether's CA (not the machine's bundle)."""
        session = requests.Session()
        session.trust_env = False
        session.proxies = {"http": self.proxy_url, "https": self.proxy_url}
        session.verify = str(self.ca_cert)
        session.headers.update(headers)
        return session

    def api(self, method: str, path: str, body: dict[str, Any] | None = None) -> requests.Response:
        return requests.request(method, f"{self.api_url}{path}", json=body, timeout=10, proxies={})

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tether.cli", *args], capture_output=True, text=True, check=False
        )

    def events(self) -> list[dict[str, Any]]:
        out = self.cli("export", "events", "--ledger", str(self.ledger_path))
        if out.returncode != 0:
            raise RuntimeError(f"tether export failed: {out.stderr}")
        return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
