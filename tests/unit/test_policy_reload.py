import asyncio
import os
from pathlib import Path

import pytest

from tests.unit.test_policy_fakes import fake_catalog
from tether.policy.loader import PolicyError
from tether.policy.reload import PolicyStore, ReloadResult


def policy_text(policy_id: str, agent: str = "a-*") -> str:
    return f"id: {policy_id}\nagents: ['{agent}']\n"


def test_invalid_initial_policy_raises(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("id: p\n")
    with pytest.raises(PolicyError, match=r"p\.yaml:1: missing required key 'agents'"):
        PolicyStore([path], fake_catalog())


def test_unchanged_files_keep_the_engine(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(policy_text("pol_one"))
    store = PolicyStore([path], fake_catalog())
    engine = store.engine
    result = store.reload()
    assert (result.changed, result.swapped, result.ok, result.policy_ids) == (
        False,
        False,
        True,
        ("pol_one",),
    )
    assert store.engine is engine


def test_valid_change_is_swapped_in(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(policy_text("pol_one"))
    store = PolicyStore([path], fake_catalog())
    before = store.reload().digest
    path.write_text(policy_text("pol_two", agent="b-*"))
    result = store.reload()
    assert (result.changed, result.swapped, result.errors) == (True, True, ())
    assert result.policy_ids == ("pol_two",) and result.digest != before
    assert store.engine.policy_for("b-1") is not None and store.engine.policy_for("a-1") is None


def test_invalid_change_keeps_the_last_good_engine_until_fixed(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(policy_text("pol_one"))
    store = PolicyStore([path], fake_catalog())
    engine = store.engine
    path.write_text("id: pol_two\nagents: ['a-*']\nmdoe: report\n")
    rejected = store.reload()
    assert (rejected.changed, rejected.swapped, rejected.ok) == (True, False, False)
    assert rejected.errors == (f"{path}:3: unknown key 'mdoe' in the top level (did you mean 'mode'?)",)
    assert rejected.policy_ids == ("pol_one",)
    assert store.engine is engine
    again = store.reload()  # still the same bad file: no new attempt, still not ok
    assert (again.changed, again.ok) == (False, False)
    path.write_text(policy_text("pol_two"))
    assert store.reload().swapped and store.engine.policies.policies[0].id == "pol_two"


def test_file_missing_during_reload_keeps_the_engine(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(policy_text("pol_one"))
    store = PolicyStore([path], fake_catalog())
    path.unlink()
    result = store.reload()
    assert not result.swapped and result.errors == (
        f"{path}: cannot read policy file: No such file or directory",
    )
    assert store.engine.policy_for("a-1") is not None


def test_configmap_symlink_swap_is_detected(tmp_path):
    """Kubernetes mounts `policy.yaml -> ..data/policy.yaml` and `..data -> ..<timestamp>`; an update
    writes a new timestamped directory and renames a new `..data` link over the old one."""
    old = tmp_path / "..2026_01_01_00_00_00.1"
    new = tmp_path / "..2026_01_02_00_00_00.2"
    old.mkdir()
    new.mkdir()
    (old / "policy.yaml").write_text(policy_text("pol_one"))
    (new / "policy.yaml").write_text(policy_text("pol_two"))
    stat = (old / "policy.yaml").stat()
    os.utime(new / "policy.yaml", ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same mtime: contents decide
    (tmp_path / "..data").symlink_to(old.name)
    mounted = tmp_path / "policy.yaml"
    mounted.symlink_to("..data/policy.yaml")
    store = PolicyStore([mounted], fake_catalog())
    link_stat = mounted.lstat()

    (tmp_path / "..data_tmp").symlink_to(new.name)
    os.replace(tmp_path / "..data_tmp", tmp_path / "..data")

    assert mounted.lstat().st_mtime_ns == link_stat.st_mtime_ns  # the mounted path itself did not change
    result = store.reload()
    assert result.swapped and result.policy_ids == ("pol_two",)


def test_watch_reports_changes_until_cancelled(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(policy_text("pol_one"))
    store = PolicyStore([path], fake_catalog())
    results: list[ReloadResult] = []

    async def scenario() -> None:
        got_result = asyncio.Event()

        async def on_result(result: ReloadResult) -> None:
            results.append(result)
            got_result.set()

        watcher = asyncio.create_task(store.watch(0.01, on_result))
        path.write_text("not: [valid\n")
        await asyncio.wait_for(got_result.wait(), timeout=30)
        got_result.clear()
        path.write_text(policy_text("pol_two"))
        await asyncio.wait_for(got_result.wait(), timeout=30)
        watcher.cancel()
        with pytest.raises(asyncio.CancelledError):
            await watcher

    asyncio.run(scenario())
    assert [(r.ok, r.swapped) for r in results] == [(False, False), (True, True)]
    assert results[1].policy_ids == ("pol_two",)


def test_watch_calls_a_plain_callback_once_per_change(tmp_path, monkeypatch):
    path = tmp_path / "p.yaml"
    path.write_text(policy_text("pol_one"))
    store = PolicyStore([path], fake_catalog())
    seen: list[ReloadResult] = []
    polls = 0
    reload = store.reload

    def counting_reload() -> ReloadResult:
        nonlocal polls
        polls += 1
        return reload()

    monkeypatch.setattr(store, "reload", counting_reload)

    async def scenario() -> None:
        path.write_text(policy_text("pol_two"))
        watcher = asyncio.create_task(store.watch(0.001, seen.append))
        while polls < 5:  # one poll sees the change, the others see nothing new
            await asyncio.sleep(0.001)
        watcher.cancel()

    asyncio.run(asyncio.wait_for(scenario(), timeout=30))
    assert [(r.changed, r.swapped) for r in seen] == [(True, True)]


def test_reload_of_several_files_swaps_them_together(tmp_path: Path):
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text(policy_text("pol_a", agent="a-*"))
    second.write_text(policy_text("pol_b", agent="b-*"))
    store = PolicyStore([first, second], fake_catalog())
    second.write_text(policy_text("pol_a", agent="c-*"))  # duplicate id: the whole set is rejected
    rejected = store.reload()
    assert rejected.errors == (f"{second}:1: duplicate policy id 'pol_a' (first defined at {first}:1)",)
    assert store.engine.policy_for("b-1") is not None
