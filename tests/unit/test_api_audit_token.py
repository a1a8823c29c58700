"""The admin token check of the audit endpoints (tether/api/audit.py)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import cast

from aiohttp.test_utils import make_mocked_request

from tether.api.audit import _authorized
from tether.ledger.settings import LedgerSettings
from tether.proxy.runtime import Runtime

TOKEN = "adm-" + "5" * 40


def runtime_with_token_file(path: Path) -> Runtime:
    return cast(
        Runtime, SimpleNamespace(config=SimpleNamespace(ledger=LedgerSettings(admin_token_file=path)))
    )


def status(rt: Runtime, authorization: str | None) -> int:
    headers = {"Authorization": authorization} if authorization is not None else {}
    denied = _authorized(make_mocked_request("GET", "/v1/verify", headers=headers), rt)
    return 200 if denied is None else denied.status


def test_only_the_exact_token_passes(tmp_path: Path) -> None:
    token_file = tmp_path / "admin-token"
    token_file.write_text(TOKEN + "\n")
    rt = runtime_with_token_file(token_file)
    assert status(rt, f"Bearer {TOKEN}") == 200
    assert status(rt, f"bearer {TOKEN}") == 200
    for given in (None, "", f"Basic {TOKEN}", f"Bearer {TOKEN[:-1]}", f"Bearer {TOKEN}x", "Bearer "):
        assert status(rt, given) == 401, given


def test_an_unusable_token_file_refuses_everyone(tmp_path: Path) -> None:
    binary = tmp_path / "admin-token"
    binary.write_bytes(b"\xff\xfe" + TOKEN.encode())  # not UTF-8: a 401, not a 500 with a traceback
    assert status(runtime_with_token_file(binary), f"Bearer {TOKEN}") == 401
    assert status(runtime_with_token_file(tmp_path / "absent"), f"Bearer {TOKEN}") == 401
    empty = tmp_path / "empty"
    empty.write_text("\n")
    assert status(runtime_with_token_file(empty), "Bearer ") == 401
