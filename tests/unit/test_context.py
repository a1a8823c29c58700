import pytest

from tether.context import ContextError, RunRegistry, check_text, parse_scopes, scopes_from_json


def test_parse_scopes_header_form():
    assert parse_scopes("github=repo:write,issues:write; slack=chat:write") == {
        "github": frozenset({"repo:write", "issues:write"}),
        "slack": frozenset({"chat:write"}),
    }


@pytest.mark.parametrize("bad", ["github", "github=repo", "Git Hub=repo:read", "github=repo:read\r\nx: y"])
def test_parse_scopes_refuses_malformed(bad):
    with pytest.raises(ContextError):
        parse_scopes(bad)


def test_scopes_from_json_accepts_both_forms():
    assert scopes_from_json({"github": ["repo:read"]}) == {"github": frozenset({"repo:read"})}
    assert scopes_from_json("github=repo:read") == {"github": frozenset({"repo:read"})}
    with pytest.raises(ContextError):
        scopes_from_json({"github": "repo:read"})


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("a\r\nX-Injected: 1", "control characters"),
        ("nul\x00byte", "control characters"),
        ("bidi\u202eoverride", "control characters"),
        ("bad \udcff utf8", "not valid UTF-8"),
        ("x" * 513, "longer than 512"),
    ],
)
def test_check_text_refuses(value, message):
    with pytest.raises(ContextError, match=message):
        check_text("X-Tether-Task", value, 512)


def test_run_priority_api_run_over_env_default():
    runs = RunRegistry({"TETHER_RUN_ID": "run_env", "TETHER_TASK": "nightly"})
    assert runs.current().run_id == "run_env"
    assert runs.current().task_context == "nightly"
    opened = runs.open(task_context="review", triggered_by="alice@example.com", scopes={})
    assert runs.current() is opened
    runs.end(opened.run_id)
    assert runs.current().run_id == "run_env"
    ended = runs.get(opened.run_id)
    assert ended is not None and ended.ended_at is not None


def test_generated_run_when_nothing_is_set():
    runs = RunRegistry({})
    assert runs.current().run_id.startswith("run_")
    assert runs.current().origin == "generated"


def test_header_runs_are_adopted_once():
    runs = RunRegistry({})
    first, created = runs.adopt("ci-1234")
    again, created_again = runs.adopt("ci-1234")
    assert created and not created_again and first is again


def test_remembered_runs_are_bounded(monkeypatch):
    import tether.context as context

    monkeypatch.setattr(context, "MAX_REMEMBERED_RUNS", 50)
    runs = RunRegistry({})
    for i in range(500):
        runs.adopt(f"hdr-{i}")
    assert len(runs.active_runs()) <= 50
    assert runs.get(runs.default.run_id) is runs.default


def test_open_api_runs_are_capped(monkeypatch):
    import tether.context as context

    monkeypatch.setattr(context, "MAX_OPEN_API_RUNS", 3)
    runs = RunRegistry({})
    opened = [runs.open(task_context=None, triggered_by=None, scopes={}) for _ in range(3)]
    with pytest.raises(ContextError, match="3 runs are open"):
        runs.open(task_context=None, triggered_by=None, scopes={})
    runs.end(opened[0].run_id)
    assert runs.open(task_context=None, triggered_by=None, scopes={}).active
