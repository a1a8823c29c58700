"""A real rsyslog (`rsyslogd -n`, unprivileged, in the foreground) receiving RFC 5425 syslog over TLS.

It listens with imtcp on a free port (TLS with a sandbox CA certificate via the OpenSSL network
stream driver, octet-counted frames) and writes each message it parsed as one JSON line — rsyslog's
own view of PRI, HOSTNAME, APP-NAME, MSGID, STRUCTURED-DATA and MSG — to `output`, so tests check
what a real syslog server made of tether's messages.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from tether.sandbox.pki import SandboxCA
from tether.sandbox.sidecar import free_port

START_TIMEOUT_SECONDS = 20.0

_CONFIG = """
global(
  workDirectory="{work}"
  maxMessageSize="64k"
  defaultNetstreamDriver="{driver}"
  defaultNetstreamDriverCAFile="{ca}"
  defaultNetstreamDriverCertFile="{cert}"
  defaultNetstreamDriverKeyFile="{key}"
)
module(load="imtcp" streamDriver.name="{driver}" streamDriver.mode="1" streamDriver.authMode="anon")
input(type="imtcp" address="127.0.0.1" port="{port}")
template(name="tether_json" type="list") {{
  constant(value="{{\\"pri\\":\\"") property(name="pri" format="json")
  constant(value="\\",\\"timestamp\\":\\"") property(name="timereported" dateFormat="rfc3339" format="json")
  constant(value="\\",\\"hostname\\":\\"") property(name="hostname" format="json")
  constant(value="\\",\\"app_name\\":\\"") property(name="app-name" format="json")
  constant(value="\\",\\"procid\\":\\"") property(name="procid" format="json")
  constant(value="\\",\\"msgid\\":\\"") property(name="msgid" format="json")
  constant(value="\\",\\"structured_data\\":\\"") property(name="structured-data" format="json")
  constant(value="\\",\\"msg\\":\\"") property(name="msg" format="json")
  constant(value="\\"}}\\n")
}}
action(type="omfile" file="{output}" template="tether_json")
"""


class Rsyslog:
    def __init__(self, directory: Path, ca: SandboxCA, driver: str = "ossl") -> None:
        if shutil.which("rsyslogd") is None:
            raise RuntimeError("rsyslogd is not installed (apt-get install rsyslog rsyslog-openssl)")
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "work").mkdir(exist_ok=True)
        issued = ca.issue(("syslog.example.com", "localhost", "127.0.0.1"))
        self.port = free_port()
        self.output = directory / "messages.jsonl"
        self.config_path = directory / "rsyslog.conf"
        self.config_path.write_text(
            _CONFIG.format(
                work=directory / "work",
                driver=driver,
                ca=ca.cert_path,
                cert=issued.cert_path,
                key=issued.key_path,
                port=self.port,
                output=self.output,
            )
        )
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> Rsyslog:
        log = (self.directory / "rsyslogd.log").open("ab")
        self.process = subprocess.Popen(
            ["rsyslogd", "-n", "-f", str(self.config_path), "-i", str(self.directory / "rsyslogd.pid")],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"rsyslogd exited with {self.process.returncode}: {self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"rsyslogd did not listen within {START_TIMEOUT_SECONDS:.0f}s: {self.log()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log(self) -> str:
        path = self.directory / "rsyslogd.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def messages(self) -> list[dict[str, Any]]:
        if not self.output.exists():
            return []
        return [json.loads(line) for line in self.output.read_text().splitlines() if line.strip()]
