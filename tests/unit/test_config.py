from pathlib import Path

import pytest

from tether.config import ConfigError, CredentialConfig, load_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tether.yaml"
    path.write_text(text)
    return path


def test_defaults_without_a_file():
    config = load_config(None, environ={})
    assert config.proxy_address == ("127.0.0.1", 8080)
    assert config.api_address == ("127.0.0.1", 8081)
    assert config.fail_mode == "closed"
    assert config.effective_ledger_path == Path("state") / "ledger.db"


def test_relative_paths_are_relative_to_the_file(tmp_path):
    (tmp_path / "token").write_text("s3cret\n")
    config = load_config(
        write(tmp_path, "state_dir: st\ncredentials:\n  gh:\n    secret_file: token\n"), environ={}
    )
    assert config.state_dir == tmp_path / "st"
    credential = config.credentials["gh"]
    assert isinstance(credential, CredentialConfig) and credential.secret_file == tmp_path / "token"


def test_env_overrides_the_file(tmp_path):
    config = load_config(
        write(tmp_path, "agent_name: from-file\n"),
        environ={"TETHER_AGENT_NAME": "from-env", "TETHER_PROXY_LISTEN": "0.0.0.0:9000"},
    )
    assert config.agent_name == "from-env"
    assert config.proxy_address == ("0.0.0.0", 9000)


def test_typo_reports_file_and_line(tmp_path):
    path = write(tmp_path, "agent_name: a\n\nfail_mod: closed\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, environ={})
    assert err.value.lines == [f"{path}:3: fail_mod: Extra inputs are not permitted"]


def test_bad_value_reports_its_line(tmp_path):
    path = write(tmp_path, "agent_name: a\nproxy_listen: nowhere\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, environ={})
    assert err.value.lines[0].startswith(f"{path}:2: proxy_listen:")
    assert "HOST:PORT" in err.value.lines[0]


def test_missing_secret_file_is_reported_with_its_line(tmp_path):
    path = write(tmp_path, "credentials:\n  gh:\n    secret_file: nope.txt\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, environ={})
    assert err.value.lines == [f"{path}:3: credentials.gh.secret_file: no such file: {tmp_path / 'nope.txt'}"]


def test_inline_secret_is_refused(tmp_path):
    path = write(tmp_path, "credentials:\n  gh:\n    secret: ghp_inline\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, environ={})
    text = "\n".join(err.value.lines)
    assert "secret: Extra inputs are not permitted" in text or "Extra inputs" in text
    assert "ghp_inline" not in text


def test_unset_secret_env_is_reported(tmp_path):
    path = write(tmp_path, "credentials:\n  gh:\n    secret_env: GH_TOKEN_FOR_TEST\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, environ={})
    assert "GH_TOKEN_FOR_TEST is unset" in err.value.lines[0]


def test_yaml_syntax_error_has_a_line(tmp_path):
    path = write(tmp_path, "agent_name: a\nproxy_listen: [\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, environ={})
    assert err.value.lines[0].startswith(f"{path}:")
    assert "invalid YAML" in err.value.lines[0]


def test_override_address_is_checked(tmp_path):
    path = write(tmp_path, "upstream_overrides:\n  API.github.com:\n    address: 127.0.0.1\n")
    with pytest.raises(ConfigError):
        load_config(path, environ={})
    ok = load_config(
        write(tmp_path, "upstream_overrides:\n  API.github.com:\n    address: 127.0.0.1:8443\n"), environ={}
    )
    assert "api.github.com" in ok.upstream_overrides


def test_duplicate_key_is_an_error(tmp_path):
    path = write(tmp_path, "agent_name: a\nfail_mode: open\nfail_mode: closed\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, environ={})
    assert err.value.lines == [f"{path}:3: duplicate key 'fail_mode' in the top level"]


def test_credential_type_errors_name_the_entry(tmp_path):
    text = "credentials:\n  gh:\n    type: github_app\n    private_key_file: k.pem\n  x:\n    type: nope\n"
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), environ={})
    assert caught.value.lines == [
        f"{tmp_path / 'tether.yaml'}:2: credentials.gh.app_id: Field required",
        f"{tmp_path / 'tether.yaml'}:5: credentials.x: type must be one of: static, github_app, slack, "
        "google_service_account, oauth2",
    ]
