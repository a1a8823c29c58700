import base64

import pytest

from tether.gateway import AgentsError, Authenticator, hash_secret, load_agents, parse_basic, verify_secret


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_hash_verifies_only_its_secret_and_is_salted() -> None:
    encoded = hash_secret("agent-secret-0123456789", log_n=10)
    assert verify_secret("agent-secret-0123456789", encoded)
    assert not verify_secret("agent-secret-012345678", encoded)
    assert encoded != hash_secret("agent-secret-0123456789", log_n=10)
    assert "agent-secret" not in encoded
    assert not verify_secret("x", "plain-text")


def test_agents_file_errors_name_file_and_line(tmp_path) -> None:
    path = tmp_path / "agents.yaml"
    path.write_text("agents:\n  agt_a:\n    name: a\n    secret_hash: hunter2-in-clear\n")
    with pytest.raises(AgentsError) as err:
        load_agents(path)
    assert err.value.lines[0].startswith(f"{path}:4:")
    assert "hunter2" not in str(err.value)  # a mistaken clear-text secret is not repeated
    path.write_text("agents:\n  agt_a: {secret_hash: x}\n  agt_a: {secret_hash: y}\n")
    with pytest.raises(AgentsError, match=":3:"):
        load_agents(path)
    path.write_text("agents: {}\n")
    with pytest.raises(AgentsError, match="at least one agent"):
        load_agents(path)


def test_parse_basic() -> None:
    assert parse_basic(basic("agt_a", "s:e")) == ("agt_a", "s:e")
    assert parse_basic("Bearer abc") is None
    assert parse_basic("Basic !!!") is None
    assert parse_basic("Basic " + base64.b64encode(b"no-colon").decode()) is None


def test_authenticator_problems_and_cache(tmp_path) -> None:
    path = tmp_path / "agents.yaml"
    secret = "agent-secret-0123456789"
    path.write_text(
        f"agents:\n  agt_a:\n    name: bot-a\n    secret_hash: '{hash_secret(secret, log_n=10)}'\n"
    )
    auth = Authenticator(path)
    assert auth.check(None).problem == "missing"
    assert auth.check("Basic zzz").problem == "malformed"
    assert auth.check(basic("agt_b", secret)).problem == "unknown_agent"
    wrong = auth.check(basic("agt_a", "nope"))
    assert (wrong.agent, wrong.problem, wrong.claimed_id) == (None, "wrong_secret", "agt_a")
    assert auth.cached(basic("agt_a", secret)) is None
    ok = auth.check(basic("agt_a", secret))
    assert ok.agent is not None and (ok.agent.agent_id, ok.agent.agent_name) == ("agt_a", "bot-a")
    assert auth.cached(basic("agt_a", secret)) == ok.agent
    assert auth.cached(basic("agt_a", "nope")) is None


def test_reload_swaps_valid_files_keeps_agents_on_invalid_ones_and_forgets_credentials(tmp_path) -> None:
    path = tmp_path / "agents.yaml"
    secret = "agent-secret-0123456789"
    encoded = hash_secret(secret, log_n=10)
    path.write_text(
        f"agents:\n  agt_a: {{secret_hash: '{encoded}'}}\n  agt_b: {{secret_hash: '{encoded}'}}\n"
    )
    auth = Authenticator(path)
    assert auth.reload() is None  # unchanged
    assert auth.check(basic("agt_a", secret)).agent is not None
    path.write_text("agents: [broken\n")
    errors = auth.reload()
    assert errors and errors[0].startswith(f"{path}:")
    assert auth.cached(basic("agt_a", secret)) is not None  # the previous agents stay in force
    path.write_text(f"agents:\n  agt_b: {{secret_hash: '{encoded}'}}\n")
    assert auth.reload() == []
    assert auth.cached(basic("agt_a", secret)) is None
    assert auth.check(basic("agt_a", secret)).problem == "unknown_agent"
    assert auth.check(basic("agt_b", secret)).agent is not None
