"""tether's own log lines (not audit events) as JSON Lines on stderr, free of secrets.

Audit events go to the ledger; these lines are for the operator's log pipeline. Messages never
carry secret values by construction; as a second line of defence the formatter blanks anything that
looks like a credential (`Bearer …`, `Basic …`, `token=…`) before it is written."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any

_VALUE = r"[^\s,;&\"']+"
_SECRETISH = (
    # `Authorization: Bearer x`, `Proxy-Authorization: Basic x` (the whole value), then bare schemes
    re.compile(rf"(?i)\b((?:proxy-)?authorization\s*[:=]\s*)(?:(?:bearer|basic|token)\s+)?{_VALUE}"),
    re.compile(rf"(?i)\b((?:bearer|basic)\s+){_VALUE}"),
    # query parameters and key=value pairs
    re.compile(rf"(?i)\b((?:access_token|token|password|secret|api_key|apikey)\s*[:=]\s*){_VALUE}"),
)
_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def redact(text: str) -> str:
    for pattern in _SECRETISH:
        text = pattern.sub(r"\1[redacted]", text)
    return text


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = redact(value) if isinstance(value, str) else value
        if record.exc_info:
            entry["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, default=str)


def setup_logging(fmt: str) -> None:
    """Send every logger (tether's and mitmproxy's) to stderr in `fmt` ("json" or "text")."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
