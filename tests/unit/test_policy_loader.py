import json
import textwrap
from pathlib import Path

import pytest

from tests.unit.test_policy_fakes import fake_catalog
from tether.policy.loader import PolicyError, check_files, load_policy_files, main_check
from tether.policy.schema import policy_json_schema

REPO = Path(__file__).resolve().parents[2]
POLICIES = REPO / "policies"
DEMO_POLICY = REPO / "tether" / "defaults" / "demo-policy.yaml"

VALID = """\
id: pol_review
agents: ["pr-review-*"]
mode: report
egress: [status.example.com, "*.internal.example.com:8443"]
providers:
  github:
    credential: github-bot
    scopes: [repo:read, issues:write]
    ttl_seconds: 900
    repositories: ["acme/api"]
rules:
  - name: no-deletes
    action: deny
    methods: "*"
    host: api.github.com
    path: /repos/{owner}/{repo}
  - name: health
    action: allow
    methods: [get, HEAD]
    host: status.example.com
    path: /health
hours:
  timezone: Europe/Berlin
  days: [mon, fri]
  start: "22:00"
  end: "06:00"
  outside: flag
"""


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text))
    return path


def errors(*paths: Path) -> list[str]:
    with pytest.raises(PolicyError) as raised:
        load_policy_files(paths, fake_catalog())
    return [str(issue) for issue in raised.value.errors]


def test_valid_policy_loads_with_defaults_and_origin(tmp_path):
    path = write(tmp_path, "p.yaml", VALID)
    policies = load_policy_files([path], fake_catalog())
    (policy,) = policies.policies
    assert policy.id == "pol_review" and policy.mode == "report"
    assert policy.rules[0].methods == ["*"] and policy.rules[1].methods == ["GET", "HEAD"]
    assert policy.providers["github"].tag_upstream is True
    assert policy.hours is not None and policy.hours.outside == "flag"
    assert policies.origins == {"pol_review": f"{path}:1"}


def test_policies_list_keeps_file_order(tmp_path):
    path = write(
        tmp_path,
        "many.yaml",
        """\
        policies:
          - id: pol_a
            agents: [a-*]
          - id: pol_b
            agents: [b-*]
        """,
    )
    other = write(tmp_path, "other.yaml", "id: pol_c\nagents: ['*']\n")
    loaded = load_policy_files([path, other], fake_catalog())
    assert [p.id for p in loaded.policies] == ["pol_a", "pol_b", "pol_c"]
    assert loaded.origins["pol_b"] == f"{path}:4"


def test_typo_key_names_the_line_and_suggests_the_key(tmp_path):
    path = write(tmp_path, "p.yaml", VALID.replace("    scopes: [repo", "    scops: [repo"))
    assert errors(path) == [f"{path}:8: unknown key 'scops' in providers.github (did you mean 'scopes'?)"]


def test_missing_required_key_points_at_its_parent(tmp_path):
    path = write(tmp_path, "p.yaml", VALID.replace("    credential: github-bot\n", ""))
    assert errors(path) == [f"{path}:6: missing required key 'credential' in providers.github"]


def test_all_errors_are_collected_in_line_order(tmp_path):
    text = (
        VALID.replace('agents: ["pr-review-*"]', 'agents: ["pr-[review-*"]')
        .replace("mode: report", "mode: audit")
        .replace("repo:read, issues:write", "repo:read, isues:write")
        .replace("ttl_seconds: 900", "ttl_seconds: 10")
        .replace("path: /health", "path: /health/**/x")
        .replace("Europe/Berlin", "Europe/Berlinn")
        .replace("outside: flag", "outside: flag\n  extra: 1")
    )
    path = write(tmp_path, "p.yaml", text)
    assert errors(path) == [
        f"{path}:2: agents[0]: unbalanced '[' in glob 'pr-[review-*'",
        f"{path}:3: mode: Input should be 'enforce' or 'report' (got 'audit')",
        f"{path}:8: unknown scope 'isues:write' for provider 'github' (did you mean 'issues:write'?)",
        f"{path}:9: providers.github.ttl_seconds: Input should be greater than or equal to 60 (got 10)",
        f"{path}:21: rules[1].path: path '/health/**/x': '**' is only allowed as the last segment",
        f"{path}:23: hours.timezone: unknown time zone 'Europe/Berlinn' "
        "(use an IANA name such as Europe/Berlin)",
        f"{path}:28: unknown key 'extra' in hours",
    ]


def test_unknown_provider_is_reported_with_a_suggestion(tmp_path):
    path = write(tmp_path, "p.yaml", VALID.replace("  github:", "  githb:"))
    assert errors(path) == [
        f"{path}:6: unknown provider 'githb' (did you mean 'github'?) "
        "(known providers: github, google, slack)"
    ]


def test_repositories_only_for_github_and_owner_repo_shape(tmp_path):
    path = write(
        tmp_path,
        "p.yaml",
        """\
        id: p
        agents: [a]
        providers:
          github:
            credential: github-bot
            scopes: [repo:read]
            repositories: ["acme"]
          slack:
            credential: slack-bot
            scopes: [chat:write]
            repositories: ["acme/api"]
        """,
    )
    assert errors(path) == [
        f"{path}:7: providers.github.repositories[0]: repository 'acme' must look like 'owner/repo' "
        "(globs allowed: 'acme/web-*')",
        f"{path}:11: repositories narrowing is only supported for github",
    ]


def test_bad_egress_host_and_rule_fields(tmp_path):
    text = VALID.replace("status.example.com, ", "status..example.com, ").replace("[get, HEAD]", "[FETCH]")
    path = write(tmp_path, "p.yaml", text)
    assert errors(path) == [
        f"{path}:4: egress[0]: host 'status..example.com' is not a valid host name",
        f"{path}:19: rules[1].methods[0]: Input should be '*', 'GET', 'HEAD', 'POST', 'PUT', 'PATCH', "
        "'DELETE' or 'OPTIONS' (got 'FETCH')",
    ]


def test_unquoted_time_gets_a_helpful_message(tmp_path):
    path = write(tmp_path, "p.yaml", VALID.replace('end: "06:00"', "end: 19:00"))
    assert errors(path) == [
        f'{path}:26: hours.end: write times in quotes, e.g. "19:00" '
        "(YAML reads an unquoted 19:00 as a number)"
    ]


def test_equal_start_and_end_is_an_empty_window(tmp_path):
    path = write(tmp_path, "p.yaml", VALID.replace('end: "06:00"', 'end: "22:00"'))
    assert errors(path) == [f"{path}:22: hours: start and end are equal: the window would be empty"]


def test_wrong_types_name_what_was_given(tmp_path):
    path = write(tmp_path, "p.yaml", VALID.replace("ttl_seconds: 900", 'ttl_seconds: "900"'))
    assert errors(path) == [
        f"{path}:9: providers.github.ttl_seconds: Input should be a valid integer (got '900')"
    ]


def test_duplicate_yaml_keys_and_rule_names(tmp_path):
    text = VALID.replace("mode: report\n", "mode: report\nmode: enforce\n").replace(
        "name: health", "name: no-deletes"
    )
    path = write(tmp_path, "p.yaml", text)
    assert errors(path) == [
        f"{path}:4: duplicate key 'mode' in the top level",
        f"{path}:18: duplicate rule name 'no-deletes'",
    ]


def test_duplicate_policy_id_across_files_reports_both_locations(tmp_path):
    first = write(tmp_path, "a.yaml", VALID)
    second = write(tmp_path, "b.yaml", "# another team's policy\nid: pol_review\nagents: [x]\n")
    assert errors(first, second) == [
        f"{second}:2: duplicate policy id 'pol_review' (first defined at {first}:1)"
    ]


def test_duplicate_policy_id_within_a_list(tmp_path):
    path = write(tmp_path, "p.yaml", "policies:\n  - id: p\n    agents: [a]\n  - id: p\n    agents: [b]\n")
    assert errors(path) == [f"{path}:4: duplicate policy id 'p' (first defined at {path}:2)"]


def test_errors_in_a_policies_list_name_the_entry(tmp_path):
    path = write(tmp_path, "p.yaml", "policies:\n  - id: p\n    agents: []\n    egres: [x.com]\n")
    assert errors(path) == [
        f"{path}:3: policies[0].agents: List should have at least 1 item after validation, not 0 (got [])",
        f"{path}:4: unknown key 'egres' in policies[0] (did you mean 'egress'?)",
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "1: file is empty: expected a policy (id, agents, ...)"),
        ("# only a comment\n", "1: file is empty: expected a policy (id, agents, ...)"),
        (
            "- id: p\n",
            "1: expected a policy (a mapping with id, agents, ...) or a mapping with a 'policies' list "
            "at the top level, got a list",
        ),
        (
            "id: p\nagents: [a\nmode: enforce\n",
            "3: invalid YAML: while parsing a flow sequence: expected ',' or ']', but got ':'",
        ),
        ("id: p\n  agents: [a]\n", "2: invalid YAML: mapping values are not allowed here"),
        (
            "id: p\n---\nid: q\n",
            "2: invalid YAML: expected a single document in the stream: but found another document",
        ),
    ],
)
def test_file_level_problems(tmp_path, text, message):
    path = write(tmp_path, "p.yaml", text)
    assert errors(path) == [f"{path}:{message}"]


def test_unreadable_and_non_utf8_files(tmp_path):
    missing = tmp_path / "missing.yaml"
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes(b"id: p\nagents: [caf\xe9]\n")
    assert errors(missing, latin1) == [
        f"{missing}: cannot read policy file: No such file or directory",
        f"{latin1}:2: file is not valid UTF-8",
    ]


def test_shipped_policies_pass_check_with_the_packaged_catalog():
    assert check_files([POLICIES / "example.yaml", DEMO_POLICY]) == []


def test_shipped_policies_point_editors_at_the_schema():
    for name in ("example.yaml",):
        assert (POLICIES / name).read_text().startswith("# yaml-language-server: $schema=./schema.json\n")


def test_committed_schema_matches_the_models():
    # regenerate with: tether policy schema > policies/schema.json
    assert (POLICIES / "schema.json").read_text() == json.dumps(policy_json_schema(), indent=2) + "\n"


def test_schema_describes_every_field():
    definitions = policy_json_schema()["$defs"]
    for model, definition in definitions.items():
        for name, field in definition["properties"].items():
            assert field.get("description"), f"{model}.{name} has no description"


def test_main_check_exit_codes_and_output(tmp_path, capsys):
    good = write(tmp_path, "good.yaml", "id: p\nagents: [a]\n")
    other = write(tmp_path, "other.yaml", "id: q\nagents: [b]\n")
    assert main_check([str(good), str(other)]) == 0
    assert capsys.readouterr().out == "2 files OK\n"

    bad = write(tmp_path, "bad.yaml", "id: p\nagents: [a]\nmdoe: enforce\n")
    assert main_check([str(bad)]) == 1
    assert capsys.readouterr().out == f"{bad}:3: unknown key 'mdoe' in the top level (did you mean 'mode'?)\n"

    assert main_check([str(good), str(tmp_path / "nope.yaml")]) == 2
    assert "nope.yaml: no such file" in capsys.readouterr().err
    assert main_check([]) == 2
    assert "usage: tether policy check FILE..." in capsys.readouterr().err
