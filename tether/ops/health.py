"""Readiness: is this tether able to do its job right now? Each check returns a problem or None."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from cryptography import x509

from tether.ops import LEDGER_FAILURE_HOLD_SECONDS

if TYPE_CHECKING:
    from tether.proxy.runtime import Runtime


def ledger_problem(rt: Runtime) -> str | None:
    """The ledger file and its directory must be writable (WAL side files live next to it), and no
    append may have failed in the last seconds."""
    path = rt.config.effective_ledger_path
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        return f"ledger {path}: {exc.strerror}"
    # Mode bits as well as access(): tether often runs as root, for which only immutability counts.
    if not mode & 0o222 or not os.access(path, os.W_OK):
        return f"ledger {path} is not writable"
    if not os.access(path.parent, os.W_OK):
        return f"ledger directory {path.parent} is not writable"
    failed = rt.ops.last_ledger_failure
    if failed is not None and time.monotonic() - failed < LEDGER_FAILURE_HOLD_SECONDS:
        return "a ledger append failed in the last few seconds"
    return None


def ca_problem(rt: Runtime) -> str | None:
    path = rt.config.ca_cert_path
    try:
        x509.load_pem_x509_certificate(path.read_bytes())
    except OSError as exc:
        return f"CA certificate {path}: {exc.strerror}"
    except ValueError:
        return f"CA certificate {path} is not a PEM certificate"
    export = rt.config.ca_cert_export
    if export is not None and not export.is_file():
        return f"the exported CA certificate {export} is missing"
    return None


def policy_problem(rt: Runtime) -> str | None:
    if not rt.policies.engine.policies.policies:
        return "no policy is loaded: every call would be denied"
    return None


def readiness(rt: Runtime) -> tuple[bool, dict[str, Any]]:
    """(ready, body of /readyz)."""
    checks: dict[str, str | None] = {
        "ledger": ledger_problem(rt),
        "ca": ca_problem(rt),
        "policy": policy_problem(rt),
        "draining": "shutting down" if rt.ops.draining else None,
    }
    for sink in rt.ops.sinks:
        checks[f"sink:{sink.name}"] = sink.stuck()
    ready = all(problem is None for problem in checks.values())
    body = {
        "status": "ready" if ready else "unready",
        "checks": {name: problem or "ok" for name, problem in checks.items()},
        "mode": rt.config.mode,
        "policy_ids": [p.id for p in rt.policies.engine.policies.policies],
    }
    return ready, body
