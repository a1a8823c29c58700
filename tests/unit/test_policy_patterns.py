import ipaddress
import re

import pytest

from tether.policy.addresses import blocked_destination, blocked_kind
from tether.policy.patterns import (
    HostPattern,
    PathTemplate,
    canonical_path,
    glob_matches,
    parse_host_pattern,
    validate_glob,
)


@pytest.mark.parametrize("pattern", ["pr-review-*", "agent-[0-9]", "a[!x]b", "[]]x", "name?"])
def test_well_formed_globs_pass(pattern):
    assert validate_glob(pattern) == pattern


@pytest.mark.parametrize(
    ("pattern", "problem"),
    [("pr-[review-*", "unbalanced '['"), ("x[!", "unbalanced '['"), ("", "empty"), ("a\nb", "control")],
)
def test_malformed_globs_are_errors(pattern, problem):
    with pytest.raises(ValueError, match=re.escape(problem)):
        validate_glob(pattern)


def test_globs_match_case_sensitively():
    assert glob_matches("pr-review-*", "pr-review-7")
    assert not glob_matches("pr-review-*", "PR-review-7")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Status.Example.com", HostPattern("status.example.com", False, None)),
        ("*.internal.example.com:8443", HostPattern("internal.example.com", True, 8443)),
        ("10.1.2.3:80", HostPattern("10.1.2.3", False, 80)),
        ("[fd00::1]:443", HostPattern("fd00::1", False, 443)),
        ("[fd00::1]", HostPattern("fd00::1", False, None)),
    ],
)
def test_host_patterns_parse(text, expected):
    assert parse_host_pattern(text) == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("api.*.com", "only allowed as a leading"),
        ("exa mple.com", "not a valid host name"),
        ("-bad.example.com", "not a valid host name"),
        ("example.com:0", "port must be"),
        ("example.com:http", "port must be"),
        ("fd00::1", "brackets"),
        ("[fd00::1", "missing ']'"),
        ("[10.0.0.1]", "not a valid IPv6"),
        ("300.1.1.1", "not a valid IPv4"),
    ],
)
def test_bad_host_patterns_are_errors(text, problem):
    with pytest.raises(ValueError, match=problem):
        parse_host_pattern(text)


@pytest.mark.parametrize(
    ("template", "path", "matches"),
    [
        ("/repos/{owner}/{repo}", "/repos/acme/api", True),
        ("/repos/{owner}/{repo}", "/repos/acme/api/", True),
        ("/repos/{owner}/{repo}", "/repos/acme/api/pulls", False),
        ("/repos/{owner}/{repo}", "/repos/acme", False),
        ("/repos/{owner}/{repo}/**", "/repos/acme/api", True),
        ("/repos/{owner}/{repo}/**", "/repos/acme/api/pulls/1/files", True),
        ("/repos/{owner}/{repo}/**", "/repos/acme/apix", True),  # {repo} = apix
        ("/repos/{owner}/api/**", "/repos/acme/apix", False),
        ("/**", "/anything/at/all", True),
        ("/health", "/healthz", False),
        ("/", "/", True),
        ("/", "/x", False),
        ("/health/", "/health", True),
        ("/v1.0/x", "/v1a0/x", False),  # literal text is not a regex
    ],
)
def test_path_templates(template, path, matches):
    assert PathTemplate(template).matches(path) is matches


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ("repos/x", "must start with '/'"),
        ("/repos/**/x", "only allowed as the last"),
        ("/repos/*", "only allowed as the last"),
        ("/a//b", "empty segment"),
        ("/a/{b", "parameters look like"),
        ("/a/{b c}", "space"),
    ],
)
def test_bad_path_templates_are_errors(template, problem):
    with pytest.raises(ValueError, match=problem):
        PathTemplate(template)


def test_canonical_path_decodes_unreserved_escapes_only():
    assert canonical_path("/repos/%61cme/api%2Dx") == "/repos/acme/api-x"
    assert canonical_path("/branches/feature%2Fx") == "/branches/feature%2Fx"


@pytest.mark.parametrize(
    "path", ["relative", "/a/../b", "/a/./b", "/a/%2E%2e/b", "/a//b", "/a\\b", "/a\x00b", "/a b"]
)
def test_canonical_path_refuses_ambiguous_paths(path):
    with pytest.raises(ValueError):
        canonical_path(path)


@pytest.mark.parametrize(
    ("ip", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.0.1", "private"),
        ("fc00::1", "unique-local"),
        ("fd12:3456::1", "unique-local"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "private"),  # reserved 240/4 is also in Python's private list
        ("100.64.0.1", "shared address space (CGNAT)"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:169.254.169.254", "link-local"),
        ("64:ff9b::a00:1", "private"),  # NAT64 of 10.0.0.1
        ("2002:a00:1::", "private"),  # 6to4 of 10.0.0.1
        ("fec0::1", "site-local"),
        ("192.0.2.1", "private"),  # documentation range
        ("8.8.8.8", None),
        ("2001:4860:4860::8888", None),
    ],
)
def test_blocked_address_kinds(ip, kind):
    assert blocked_kind(ipaddress.ip_address(ip)) == kind


def test_blocked_destination_needs_every_address_public():
    public, private = ipaddress.ip_address("8.8.8.8"), ipaddress.ip_address("10.0.0.1")
    assert blocked_destination("x.example", [public]) is None
    assert blocked_destination("x.example", [public, private]) == (
        "private_address: x.example resolves to 10.0.0.1 (private)"
    )
    assert (
        blocked_destination("x.example", []) == "unresolved_host: x.example has no resolved address to check"
    )
