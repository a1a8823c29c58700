import asyncio
import base64
import hashlib
import stat
import time

import pytest

from tether.broker.base import (
    Broker,
    MintedSecret,
    MintError,
    TokenKey,
    hashed_token,
    read_secret_file,
    write_secret_file,
)
from tether.broker.registry import build_broker
from tether.config import CredentialConfig


async def recorded(issuance):
    return True


async def not_recorded(issuance):
    return False


def key(run="run_1", scopes=("repo:read",), agent="agt_a"):
    return TokenKey(agent, run, "github", "gh", tuple(scopes))


@pytest.fixture
def broker(tmp_path):
    secret = tmp_path / "token"
    secret.write_text("static-secret-value\n")
    return build_broker({"gh": CredentialConfig(secret_file=secret)})


def test_hashed_token_is_github_form():
    assert hashed_token("abc") == base64.b64encode(hashlib.sha256(b"abc").digest()).decode()


def test_one_token_per_run_and_scope_set(broker):
    async def go():
        a = await broker.issue(key(), ttl_seconds=60, native={}, record=recorded)
        a2 = await broker.issue(key(), ttl_seconds=60, native={}, record=recorded)
        b = await broker.issue(key(run="run_2"), ttl_seconds=60, native={}, record=recorded)
        c = await broker.issue(key(scopes=("repo:write",)), ttl_seconds=60, native={}, record=recorded)
        return a, a2, b, c

    a, a2, b, c = asyncio.run(go())
    assert a.fresh and not a2.fresh and a.token is a2.token
    assert len({a.token.token_id, b.token.token_id, c.token.token_id}) == 3
    assert a.token.value == "static-secret-value"
    assert a.token.secret.minted is False and a.token.secret.source == "static:gh"
    assert "static-secret-value" not in repr(a.token)


def test_expired_token_is_replaced_and_reported(broker):
    async def go():
        first = await broker.issue(key(), ttl_seconds=0, native={}, record=recorded)
        second = await broker.issue(key(), ttl_seconds=60, native={}, record=recorded)
        return first, second

    first, second = asyncio.run(go())
    assert second.fresh and [r.token for r in second.expired] == [first.token]


def test_end_run_retires_only_that_run(broker):
    async def go():
        await broker.issue(key(run="run_1"), ttl_seconds=60, native={}, record=recorded)
        await broker.issue(key(run="run_2"), ttl_seconds=60, native={}, record=recorded)
        ended = await broker.end_run("agt_a", "run_1")
        again = await broker.issue(key(run="run_2"), ttl_seconds=60, native={}, record=recorded)
        return ended, again

    ended, again = asyncio.run(go())
    assert [r.token.key.run_id for r in ended] == ["run_1"]
    assert not again.fresh


def test_unreadable_secret_is_a_mint_error_without_the_value(tmp_path):
    broker = build_broker({"gh": CredentialConfig(secret_file=tmp_path / "missing")})
    with pytest.raises(MintError, match="cannot read secret file"):
        asyncio.run(broker.issue(key(), ttl_seconds=60, native={}, record=recorded))


def test_unknown_credential(broker):
    with pytest.raises(MintError, match="no credential named"):
        asyncio.run(
            broker.issue(
                TokenKey("a", "r", "github", "other", ()), ttl_seconds=60, native={}, record=recorded
            )
        )


def test_unrecorded_token_is_never_cached_or_returned(broker):
    async def go():
        failed = await broker.issue(key(), ttl_seconds=60, native={}, record=not_recorded)
        again = await broker.issue(key(), ttl_seconds=60, native={}, record=recorded)
        return failed, again

    failed, again = asyncio.run(go())
    assert failed is None
    assert again is not None and again.fresh


class FlakyMinter:
    """Fails with a given error; counts its calls."""

    deadline_seconds = 0.0
    spends_refresh_token = False

    def __init__(self, error):
        self.error = error
        self.calls = 0

    def target(self, owner):
        return None

    async def mint(self, request):
        self.calls += 1
        await asyncio.sleep(0.05)
        raise self.error

    async def revoke(self, secret):
        return False


def test_concurrent_callers_share_one_failed_mint():
    minter = FlakyMinter(MintError("down", status=503))
    broker = Broker({"gh": minter})

    async def go():
        return await asyncio.gather(
            *(broker.issue(key(), ttl_seconds=60, native={}, record=recorded) for _ in range(5)),
            return_exceptions=True,
        )

    results = asyncio.run(go())
    assert all(isinstance(r, MintError) and r.status == 503 for r in results)
    assert minter.calls == 1


def test_non_retryable_errors_are_not_retried():
    minter = FlakyMinter(MintError("forbidden", status=422))
    minter.deadline_seconds = 5.0
    with pytest.raises(MintError, match="forbidden"):
        asyncio.run(Broker({"gh": minter}).issue(key(), ttl_seconds=60, native={}, record=recorded))
    assert minter.calls == 1


@pytest.mark.parametrize("sent", [True, False])
def test_a_spent_refresh_token_is_never_presented_again(sent):
    # A timeout or 5xx after a single-use refresh token went out: the provider may have rotated it.
    minter = FlakyMinter(MintError("no answer", retryable=True, sent=sent))
    minter.deadline_seconds = 1.0
    minter.spends_refresh_token = True
    with pytest.raises(MintError, match="no answer"):
        asyncio.run(Broker({"gh": minter}).issue(key(), ttl_seconds=60, native={}, record=recorded))
    assert minter.calls == 1 if sent else minter.calls > 1


class GatedMinter:
    """Mints only once `gate` is set; counts its mints and records what it revokes."""

    deadline_seconds = 0.0
    spends_refresh_token = False

    def __init__(self, lifetime=None):
        self.gate = asyncio.Event()
        self.lifetime = lifetime
        self.calls = 0
        self.revoked = []

    def target(self, owner):
        return None

    async def mint(self, request):
        self.calls += 1
        await self.gate.wait()
        expires_at = time.time() + self.lifetime if self.lifetime else None
        return MintedSecret(f"minted-{self.calls}", expires_at, "fake", minted=True)

    async def revoke(self, secret):
        self.revoked.append(secret.value)
        return True


def test_concurrent_first_calls_mint_once():
    minter = GatedMinter()
    broker = Broker({"gh": minter})

    async def go():
        calls = [
            asyncio.create_task(broker.issue(key(), ttl_seconds=60, native={}, record=recorded))
            for _ in range(20)
        ]
        await asyncio.sleep(0)  # every caller is now waiting: on the mint or on the key's lock
        minter.gate.set()
        return await asyncio.gather(*calls)

    results = asyncio.run(go())
    assert minter.calls == 1
    assert sum(r.fresh for r in results) == 1
    assert len({r.token.token_id for r in results}) == 1


def test_waiters_share_a_token_that_could_not_be_recorded():
    # With the ledger down, N waiting calls must not mint (and, for Slack, rotate) N times.
    minter = GatedMinter()
    broker = Broker({"gh": minter})

    async def go():
        calls = [
            asyncio.create_task(broker.issue(key(), ttl_seconds=60, native={}, record=not_recorded))
            for _ in range(5)
        ]
        await asyncio.sleep(0)
        minter.gate.set()
        return await asyncio.gather(*calls, return_exceptions=True)

    first, *waiters = asyncio.run(go())
    assert first is None and minter.calls == 1 and minter.revoked == ["minted-1"]
    assert all(isinstance(w, MintError) and "could not be recorded" in str(w) for w in waiters)


def test_a_short_lived_provider_token_is_reused():
    # A provider lifetime of 60 s (Google impersonation with ttl 60) must not mint on every call.
    minter = GatedMinter(lifetime=60)
    minter.gate.set()
    broker = Broker({"gh": minter})

    async def go():
        first = await broker.issue(key(), ttl_seconds=60, native={}, record=recorded)
        second = await broker.issue(key(), ttl_seconds=60, native={}, record=recorded)
        return first, second

    first, second = asyncio.run(go())
    assert not second.fresh and minter.calls == 1
    assert first.token.expires_at >= first.token.secret.expires_at - 6


def test_a_token_past_its_provider_expiry_is_never_kept_longer():
    minter = GatedMinter(lifetime=-5)  # the provider's clock is ahead: already expired on arrival
    minter.gate.set()
    issued = asyncio.run(Broker({"gh": minter}).issue(key(), ttl_seconds=60, native={}, record=recorded))
    assert issued is not None and issued.token.secret.expires_at is not None
    assert issued.token.expires_at <= issued.token.secret.expires_at


def test_one_re_mint_per_ttl_survives_a_sweep():
    minter = GatedMinter()
    minter.gate.set()
    broker = Broker({"gh": minter})

    async def go():
        first = await broker.issue(key(), ttl_seconds=600, native={}, record=recorded)
        assert first is not None and await broker.reject(first.token) is not None
        await broker.sweep()
        second = await broker.issue(key(), ttl_seconds=600, native={}, record=recorded)
        assert second is not None
        return await broker.reject(second.token)

    assert asyncio.run(go()) is None
    assert minter.calls == 2


def test_keys_that_hold_no_token_leave_no_lock_behind():
    minter = FlakyMinter(MintError("not installed", status=404))
    broker = Broker({"gh": minter})

    async def go():
        for run in range(10):  # an agent changing X-Tether-Run on every call
            with pytest.raises(MintError):
                await broker.issue(key(run=f"run_{run}"), ttl_seconds=60, native={}, record=recorded)

    asyncio.run(go())
    assert minter.calls == 10 and broker._locks == {}


def test_a_token_minted_while_its_run_ends_is_revoked_not_used():
    minter = GatedMinter()
    broker = Broker({"gh": minter})

    async def go():
        issuing = asyncio.create_task(broker.issue(key(), ttl_seconds=60, native={}, record=recorded))
        await asyncio.sleep(0)  # the mint is under way
        ending = asyncio.create_task(broker.end_run("agt_a", "run_1"))
        await asyncio.sleep(0)
        minter.gate.set()
        with pytest.raises(MintError, match="run run_1 has ended"):
            await issuing
        assert await ending == []
        with pytest.raises(MintError, match="has ended"):
            await broker.issue(key(), ttl_seconds=60, native={}, record=recorded)

    asyncio.run(go())
    assert minter.revoked == ["minted-1"] and minter.calls == 1


def test_static_tokens_are_never_rejected(broker):
    async def go():
        issued = await broker.issue(key(), ttl_seconds=60, native={}, record=recorded)
        return await broker.reject(issued.token)

    assert asyncio.run(go()) is None


def test_write_secret_file_replaces_atomically_with_owner_only_mode(tmp_path):
    path = tmp_path / "refresh"
    path.write_text("old\n")
    path.chmod(0o644)
    write_secret_file(path, "new-value")
    assert path.read_text() == "new-value\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["refresh"]  # no temporary file left behind
    assert read_secret_file(path, "credential x", "refresh_token_file") == "new-value"
    path.write_text("two\nlines\n")
    with pytest.raises(MintError, match="credential x: refresh_token_file holds a line break"):
        read_secret_file(path, "credential x", "refresh_token_file")


def test_end_run_leaves_another_agents_run_of_the_same_id(broker):
    """Gateway mode: run ids are chosen by agents, so one agent ending "run_1" must not touch another's."""

    async def go():
        await broker.issue(key(agent="agt_a"), ttl_seconds=60, native={}, record=recorded)
        other = await broker.issue(key(agent="agt_b"), ttl_seconds=60, native={}, record=recorded)
        ended = await broker.end_run("agt_a", "run_1")
        again = await broker.issue(key(agent="agt_b"), ttl_seconds=60, native={}, record=recorded)
        return other, ended, again

    other, ended, again = asyncio.run(go())
    assert [r.token.key.agent_id for r in ended] == ["agt_a"]
    assert again is not None and again.token.token_id == other.token.token_id
