"""Provider catalogs: the GitHub generator, the packaged data, route matching and native permissions."""

import copy
import hashlib
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tether.catalog import CatalogError, ProviderCatalog, build_catalog, load_catalog
from tether.catalog.matcher import MAX_PATH_LENGTH, MAX_SEGMENTS, RouteTrie, split_path

REPO_ROOT = Path(__file__).resolve().parents[2]
GENERATOR = REPO_ROOT / "scripts" / "gen_github_catalog.py"
COMMITTED = REPO_ROOT / "tether" / "catalog" / "data" / "github.json"


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_github_catalog", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gen = _load_generator()
needs_source = pytest.mark.skipif(
    not gen.DEFAULT_SOURCE.exists(), reason=f"generator source {gen.DEFAULT_SOURCE} is not present"
)

CATALOG = load_catalog()
GITHUB = CATALOG.providers["github"]
SLACK = CATALOG.providers["slack"]
GOOGLE = CATALOG.providers["google"]


# --- generator ---------------------------------------------------------------------------------


@needs_source
def test_committed_github_catalog_is_what_the_generator_writes() -> None:
    result = subprocess.run(
        [sys.executable, str(GENERATOR), "--check"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


@needs_source
def test_generator_is_deterministic_and_records_the_source_hash(tmp_path: Path) -> None:
    source = gen.DEFAULT_SOURCE.read_bytes()
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    assert gen.main([str(gen.DEFAULT_SOURCE), "--output", str(first)]) == 0
    assert gen.main([str(gen.DEFAULT_SOURCE), "--output", str(second)]) == 0
    assert first.read_bytes() == second.read_bytes() == COMMITTED.read_bytes()
    assert json.loads(first.read_text())["source"]["sha256"] == hashlib.sha256(source).hexdigest()


def test_generator_check_fails_on_a_stale_file(tmp_path: Path) -> None:
    source = tmp_path / "source.json"
    source.write_text(json.dumps({"issues": {"permissions": [_entry("get", "/x", "read")]}}))
    stale = tmp_path / "github.json"
    stale.write_text("{}\n")
    assert gen.main([str(source), "--output", str(stale), "--check"]) == 1
    assert gen.main([str(source), "--output", str(stale)]) == 0
    assert gen.main([str(source), "--output", str(stale), "--check"]) == 0


def _entry(verb: str, path: str, access: str, *, s2s: bool = True, extra: bool = False) -> Any:
    """One source entry; the permission is the key it is listed under."""
    return {
        "verb": verb,
        "requestPath": path,
        "access": access,
        "server-to-server": s2s,
        "user-to-server": True,
        "additional-permissions": extra,
    }


def test_generator_mapping_rules() -> None:
    source = {
        "contents": {
            "permissions": [
                _entry("put", "/repos/{owner}/{repo}/contents/{path}", "write", extra=True),
                _entry("put", "/repos/{owner}/{repo}/contents/{path}", "write", extra=True),
                _entry("get", "/repos/{owner}/{repo}/pulls/{pull_number}", "read", extra=True),
            ]
        },
        "workflows": {
            "permissions": [_entry("put", "/repos/{owner}/{repo}/contents/{path}", "write", extra=True)]
        },
        "pull_requests": {
            "permissions": [_entry("get", "/repos/{owner}/{repo}/pulls/{pull_number}", "read", extra=True)]
        },
        "metadata": {
            "permissions": [
                _entry("get", "/repos/{owner}/{repo}", "read"),
                _entry("put", "/orgs/{org}/variables/{name}", "read", extra=True),
            ]
        },
        "organization_actions_variables": {
            "permissions": [_entry("put", "/orgs/{org}/variables/{name}", "write", extra=True)]
        },
        "members": {"permissions": [_entry("get", "/user/memberships", "read", s2s=False)]},
    }
    routes = {
        (route["methods"][0], route["path"]): route["scopes"]
        for route in gen.build(json.dumps(source).encode())["routes"]
        if route["hosts"] == ["api.github.com"]
    }
    # "contents" is called "repo"; alternatives are kept (any one permits).
    assert routes["GET", "/repos/{owner}/{repo}/pulls/{pull_number}"] == ["pull_requests:read", "repo:read"]
    # workflows:write only ever comes with the repeated contents:write, so it does not permit alone.
    assert routes["PUT", "/repos/{owner}/{repo}/contents/{path}"] == ["repo:write"]
    # metadata (always granted) never opens an endpoint that also needs another permission.
    assert routes["PUT", "/orgs/{org}/variables/{name}"] == ["organization_actions_variables:write"]
    assert routes["GET", "/repos/{owner}/{repo}"] == ["metadata:read"]
    # user-to-server-only entries are ignored.
    assert ("GET", "/user/memberships") not in routes


def test_generator_vocabulary_keeps_permissions_without_routes_of_their_own() -> None:
    assert "workflows:write" in GITHUB.scope_names()
    assert GITHUB.native({"workflows:write"}) == {"workflows": "write"}


# --- packaged data -----------------------------------------------------------------------------


def test_catalog_sizes_and_vocabulary() -> None:
    github_routes = json.loads(COMMITTED.read_text())["routes"]
    assert len(github_routes) > 600
    assert {
        "repo:read",
        "repo:write",
        "issues:read",
        "issues:write",
        "pull_requests:write",
    } <= GITHUB.scope_names()
    assert "contents:read" not in GITHUB.scope_names()
    assert len(SLACK.scope_names()) >= 20
    assert {"chat:write", "channels:read", "users:read.email"} <= SLACK.scope_names()
    assert {
        "drive:read",
        "drive:write",
        "gmail:read",
        "sheets:write",
        "storage:admin",
    } <= GOOGLE.scope_names()
    assert CATALOG.providers.keys() == {"github", "google", "slack"}
    assert load_catalog() is CATALOG


def test_no_github_write_route_is_opened_by_the_implicit_metadata_scope() -> None:
    for route in json.loads(COMMITTED.read_text())["routes"]:
        if route["methods"] != ["GET"]:
            assert "metadata:read" not in route["scopes"], route


def test_implicit_scopes() -> None:
    assert GITHUB.implicit_scopes() == {"metadata:read"}
    assert SLACK.implicit_scopes() == frozenset()
    repo = GITHUB.match("GET", "api.github.com", "/repos/acme/api")
    assert repo is not None and GITHUB.permits(repo, set())


# --- GitHub routes -----------------------------------------------------------------------------


def _github(method: str, path: str, query: str = "", host: str = "api.github.com") -> Any:
    match = GITHUB.match(method, host, path, query)
    assert match is not None, f"{method} {host}{path}?{query} did not match"
    return match


def test_get_pull_request() -> None:
    match = _github("GET", "/repos/acme/api/pulls/7")
    assert match.provider == "github"
    assert match.route == "GET /repos/{owner}/{repo}/pulls/{pull_number}"
    assert match.params == {"owner": "acme", "repo": "api", "pull_number": "7"}
    assert "pull_requests:read" in match.scopes
    assert "pull_requests:write" in match.scopes  # write implies read
    assert match.required == {"pull_requests:read", "repo:read"}


def test_create_issue_needs_issues_write() -> None:
    match = _github("POST", "/repos/acme/api/issues")
    assert match.route == "POST /repos/{owner}/{repo}/issues"
    assert match.scopes == {"issues:write"}
    assert not GITHUB.permits(match, {"issues:read", "pull_requests:write"})
    assert GITHUB.permits(match, {"issues:write"})


def test_write_scope_permits_read_routes() -> None:
    listing = _github("GET", "/repos/acme/api/issues")
    assert GITHUB.permits(listing, {"issues:write"})
    assert not GITHUB.permits(listing, {"pull_requests:read"})


def test_greedy_path_parameter() -> None:
    match = _github("PUT", "/repos/acme/api/contents/docs/guide/intro.md")
    assert match.route == "PUT /repos/{owner}/{repo}/contents/{path}"
    assert match.params["path"] == "docs/guide/intro.md"
    assert match.scopes == {"repo:write"}
    root = _github("GET", "/repos/acme/api/contents/")
    assert root.route == "GET /repos/{owner}/{repo}/contents" and "repo:read" in root.scopes


def test_greedy_git_ref_and_branch_names_with_slashes() -> None:
    ref = _github("PATCH", "/repos/acme/api/git/refs/heads/feature/login")
    assert ref.route == "PATCH /repos/{owner}/{repo}/git/refs/{ref}"
    assert ref.params["ref"] == "heads/feature/login"
    branch = _github("GET", "/repos/acme/api/branches/feature/login")
    assert branch.params["branch"] == "feature/login" and "repo:read" in branch.scopes


def test_the_most_specific_template_wins_over_a_greedy_parameter() -> None:
    status = _github("GET", "/repos/acme/api/commits/feature/login/status")
    assert status.route == "GET /repos/{owner}/{repo}/commits/{ref}/status"
    assert status.params["ref"] == "feature/login"
    assert "statuses:read" in status.scopes
    # A one-segment parameter is tried before a greedy one at the same position.
    comments = _github("GET", "/repos/acme/api/commits/abc123/comments")
    assert comments.route == "GET /repos/{owner}/{repo}/commits/{commit_sha}/comments"
    assert comments.params["commit_sha"] == "abc123"
    protection = _github("GET", "/repos/acme/api/branches/release/v2/protection")
    assert protection.route == "GET /repos/{owner}/{repo}/branches/{branch}/protection"
    assert protection.scopes == {"administration:read", "administration:write"}


def test_literal_segment_beats_parameter() -> None:
    comments = _github("GET", "/repos/acme/api/pulls/comments")
    assert comments.route == "GET /repos/{owner}/{repo}/pulls/comments"
    assert comments.params == {"owner": "acme", "repo": "api"}
    pull = _github("GET", "/repos/acme/api/pulls/42")
    assert pull.route == "GET /repos/{owner}/{repo}/pulls/{pull_number}"


def test_literals_compare_case_insensitively() -> None:
    match = _github("GET", "/REPOS/Acme/Api/Pulls/Comments")
    assert match.route == "GET /repos/{owner}/{repo}/pulls/comments"
    assert match.params == {"owner": "Acme", "repo": "Api"}


@pytest.mark.parametrize(
    ("method", "path", "query", "writes"),
    [
        ("GET", "/acme/api/info/refs", "service=git-upload-pack", False),
        ("GET", "/acme/api.git/info/refs", "service=git-receive-pack", True),
        ("POST", "/acme/api.git/git-upload-pack", "", False),
        ("POST", "/acme/api/git-receive-pack", "", True),
    ],
)
def test_git_smart_http(method: str, path: str, query: str, writes: bool) -> None:
    match = _github(method, path, query, host="github.com")
    template = path.replace("/acme/api.git/", "/{owner}/{repo}/").replace("/acme/api/", "/{owner}/{repo}/")
    assert match.route == f"{method} {template}" + (f"?{query}" if query else "")
    assert match.scopes == ({"repo:write"} if writes else {"repo:read", "repo:write"})
    assert match.params == {"owner": "acme", "repo": "api"}  # ".git" stripped


def test_git_smart_http_needs_exactly_one_known_service() -> None:
    for query in ("", "service=git-upload-archive", "service=git-upload-pack&service=git-receive-pack"):
        assert GITHUB.match("GET", "github.com", "/acme/api/info/refs", query) is None
    assert GITHUB.match("GET", "github.com", "/acme/api/pulls") is None  # the web UI is not an API


def test_git_suffix_alone_is_not_stripped_to_nothing() -> None:
    assert _github("POST", "/acme/.git/git-upload-pack", host="github.com").params["repo"] == ".git"


def test_release_asset_upload_host() -> None:
    match = _github("POST", "/repos/acme/api/releases/9/assets", "name=a.zip", host="uploads.github.com")
    assert match.scopes == {"repo:write"}
    assert GITHUB.match("POST", "api.github.com", "/repos/acme/api/releases/9/assets") is None


def test_permission_free_endpoint() -> None:
    match = _github("GET", "/rate_limit")
    assert match.scopes == frozenset() and match.required == frozenset()
    assert GITHUB.permits(match, [])


def test_head_is_matched_as_get() -> None:
    assert _github("HEAD", "/repos/acme/api/pulls/7").route == "GET /repos/{owner}/{repo}/pulls/{pull_number}"
    assert GITHUB.match("HEAD", "api.github.com", "/nope") is None


def test_unknown_routes_methods_and_hosts() -> None:
    assert GITHUB.match("GET", "api.github.com", "/repos/acme/api/no-such-thing/7") is None
    assert GITHUB.match("DELETE", "api.github.com", "/repos/acme/api/pulls") is None
    assert GITHUB.match("GET", "example.com", "/repos/acme/api") is None
    assert GITHUB.match("BREW", "api.github.com", "/repos/acme/api") is None
    assert GITHUB.match("POST", "api.github.com", "/graphql") is None


def test_expand_adds_implied_scopes() -> None:
    assert GITHUB.expand({"repo:write", "issues:read"}) == {"repo:write", "repo:read", "issues:read"}
    assert GITHUB.expand({"organization_projects:admin"}) == {
        "organization_projects:admin",
        "organization_projects:write",
        "organization_projects:read",
    }
    assert GITHUB.expand({"no:such"}) == {"no:such"}
    assert SLACK.expand({"users:read.email"}) == {"users:read.email"}


def test_github_native_permissions() -> None:
    scopes = {"repo:read", "repo:write", "issues:read", "metadata:read"}
    assert GITHUB.native(scopes) == {"contents": "write", "issues": "read", "metadata": "read"}
    assert GITHUB.native({"organization_projects:admin", "organization_projects:read"}) == {
        "organization_projects": "admin"
    }
    assert GITHUB.native([]) == {}
    with pytest.raises(ValueError, match="unknown github scope"):
        GITHUB.native({"contents:write"})


# --- path safety -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "",
        "repos/acme/api",
        "/repos/acme/../api/pulls",
        "/repos/acme/./api/pulls",
        "/repos/acme/%2e%2e/pulls",
        "/repos//acme/api",
        "//",
        "/repos/acme/api/pulls?state=open",
        "/repos/acme/api/pulls#x",
        "/repos/acme/api\\pulls",
        "/repos/acme/a pi/pulls",
        "/repos/acme/api/pulls\r\n",
        "/repos/acme/ápi/pulls",
        "/repos/acme/api/contents/" + "a" * MAX_PATH_LENGTH,
        "/repos/acme/api/contents" + "/a" * MAX_SEGMENTS,
    ],
)
def test_unsafe_paths_are_refused(path: str) -> None:
    assert split_path(path) is None
    assert GITHUB.match("GET", "api.github.com", path) is None


def test_path_normalisation() -> None:
    assert split_path("/") == []
    assert split_path("/repos/acme/api/") == ["repos", "acme", "api"]
    assert split_path("/repos/acme/api//") is None
    assert split_path("/a%2Fb/%7Euser/%41") == ["a%2Fb", "~user", "A"]  # only unreserved escapes decoded
    encoded = _github("GET", "/repos/acme/api/pull%73/comments")
    assert encoded.route == "GET /repos/{owner}/{repo}/pulls/comments"
    assert _github("GET", "/repos/acme/api/contents/a%2Fb").params["path"] == "a%2Fb"


def test_trie_precedence_literal_then_tail_then_plain_then_greedy() -> None:
    trie: RouteTrie[str] = RouteTrie(frozenset({"rest"}))
    for template in ("/items/{rest}", "/items/{id}", "/items/{id}:summary", "/items/latest"):
        trie.add(template, {}, template)
    assert trie.find(["items", "latest"], {}) == ("/items/latest", {})
    assert trie.find(["items", "7:summary"], {}) == ("/items/{id}:summary", {"id": "7"})
    assert trie.find(["items", "7"], {}) == ("/items/{id}", {"id": "7"})
    assert trie.find(["items", "7", "8"], {}) == ("/items/{rest}", {"rest": "7/8"})
    assert trie.find(["items"], {}) is None


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from("/.%2eEaZ{}?#\\ \x00é-_~rpos"), max_size=60), st.text(max_size=20))
def test_arbitrary_input_never_raises(path: str, query: str) -> None:
    for provider in (GITHUB, SLACK, GOOGLE):
        for host in ("api.github.com", "github.com", "slack.com", "sheets.googleapis.com"):
            provider.match("GET", host, path, query)


# --- Slack -------------------------------------------------------------------------------------


def test_slack_methods() -> None:
    for method in ("GET", "POST"):
        match = SLACK.match(method, "slack.com", "/api/chat.postMessage")
        assert match is not None and match.route == f"{method} /api/chat.postMessage"
        assert match.scopes == {"chat:write"}
    lookup = SLACK.match("POST", "slack.com", "/api/users.lookupByEmail")
    assert lookup is not None and lookup.scopes == {"users:read.email"}
    history = SLACK.match("GET", "slack.com", "/api/conversations.history", "channel=C1")
    assert history is not None and "channels:history" in history.scopes and "im:history" in history.scopes
    assert not SLACK.permits(history, {"channels:read", "chat:write"})


def test_slack_scope_free_methods_and_unknown_methods() -> None:
    auth = SLACK.match("POST", "slack.com", "/api/auth.test")
    assert auth is not None and auth.scopes == frozenset() and SLACK.permits(auth, [])
    assert SLACK.match("POST", "slack.com", "/api/admin.users.remove") is None
    assert SLACK.match("POST", "slack.com", "/chat.postMessage") is None
    assert SLACK.match("DELETE", "slack.com", "/api/chat.postMessage") is None


def test_slack_native_is_the_slack_scope() -> None:
    assert SLACK.native({"chat:write", "users:read"}) == {"chat:write": "granted", "users:read": "granted"}


# --- Google ------------------------------------------------------------------------------------


def test_google_host_wildcard() -> None:
    assert GOOGLE.handles_host("sheets.googleapis.com")
    assert GOOGLE.handles_host("GMAIL.GoogleAPIs.com.")
    assert not GOOGLE.handles_host("googleapis.com")
    assert not GOOGLE.handles_host("evilgoogleapis.com")
    assert not GOOGLE.handles_host("googleapis.com.evil.example")
    assert CATALOG.provider_for_host("storage.googleapis.com") is GOOGLE
    assert CATALOG.provider_for_host("example.com") is None
    assert GOOGLE.match("GET", "unknown.googleapis.com", "/drive/v3/files") is None


def test_google_samples() -> None:
    files = GOOGLE.match("GET", "www.googleapis.com", "/drive/v3/files/abc123", "alt=media")
    assert files is not None and files.route == "GET /drive/v3/files/{fileId}"
    assert files.scopes == {"drive:read", "drive:write"}
    ids = GOOGLE.match("GET", "www.googleapis.com", "/drive/v3/files/generateIds")
    assert ids is not None and ids.scopes == {"drive:write"}
    send = GOOGLE.match("POST", "gmail.googleapis.com", "/gmail/v1/users/me/messages/send")
    assert send is not None and send.scopes == {"gmail:write"} and send.params == {"userId": "me"}
    event = GOOGLE.match("PATCH", "www.googleapis.com", "/calendar/v3/calendars/primary/events/e1")
    assert event is not None and event.params == {"calendarId": "primary", "eventId": "e1"}
    obj = GOOGLE.match("GET", "storage.googleapis.com", "/storage/v1/b/bkt/o/dir%2Ffile.txt")
    assert obj is not None and obj.params == {"bucket": "bkt", "object": "dir%2Ffile.txt"}
    assert obj.scopes == {"storage:read", "storage:write", "storage:admin"}
    assert GOOGLE.match("POST", "www.googleapis.com", "/batch/drive/v3") is None


def test_google_custom_methods_in_a_segment() -> None:
    update = GOOGLE.match("POST", "sheets.googleapis.com", "/v4/spreadsheets/s1:batchUpdate")
    assert update is not None and update.route == "POST /v4/spreadsheets/{spreadsheetId}:batchUpdate"
    assert update.params == {"spreadsheetId": "s1"} and update.scopes == {"sheets:write"}
    append = GOOGLE.match("POST", "sheets.googleapis.com", "/v4/spreadsheets/s1/values/Sheet1!A1:C9:append")
    assert append is not None and append.params == {"spreadsheetId": "s1", "range": "Sheet1!A1:C9"}
    read = GOOGLE.match("GET", "sheets.googleapis.com", "/v4/spreadsheets/s1/values/Sheet1!A1:C9")
    assert read is not None and read.params["range"] == "Sheet1!A1:C9" and "sheets:read" in read.scopes
    assert GOOGLE.match("POST", "sheets.googleapis.com", "/v4/spreadsheets/:batchUpdate") is None


def test_google_native_drops_implied_scopes() -> None:
    assert GOOGLE.native({"drive:read", "drive:write", "gmail:read"}) == {
        "https://www.googleapis.com/auth/drive": "granted",
        "https://www.googleapis.com/auth/gmail.readonly": "granted",
    }


# --- loader validation -------------------------------------------------------------------------

MINIMAL: dict[str, Any] = {
    "format": 1,
    "provider": "demo",
    "hosts": ["api.demo.test", "*.demo.example"],
    "greedy_params": ["path"],
    "scopes": {
        "files:read": {"native": {"files": "read"}},
        "files:write": {"native": {"files": "write"}, "implies": ["files:read"]},
    },
    "routes": [
        {"hosts": ["api.demo.test"], "methods": ["GET"], "path": "/files/{path}", "scopes": ["files:read"]},
        {
            "hosts": ["eu.demo.example"],
            "methods": ["PUT"],
            "path": "/files/{path}",
            "scopes": ["files:write"],
        },
    ],
}


def _variant(**changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(MINIMAL)
    data.update(changes)
    return data


def _with_route(**route: Any) -> dict[str, Any]:
    base = {"hosts": ["api.demo.test"], "methods": ["GET"], "path": "/x", "scopes": []}
    return _variant(routes=[*MINIMAL["routes"], {**base, **route}])


def test_minimal_catalog_loads() -> None:
    demo = ProviderCatalog.from_data(MINIMAL)
    match = demo.match("PUT", "eu.demo.example", "/files/a/b")
    assert match is not None and match.params == {"path": "a/b"} and match.scopes == {"files:write"}
    assert demo.hosts == ("*.demo.example", "api.demo.test")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (_variant(format=2), "format 1"),
        (_variant(extra_key=True), "format 1"),
        (_with_route(scopes=["files:delete"]), "unknown scope"),
        (_with_route(hosts=["api.other.test"]), "not one of the provider's hosts"),
        (_with_route(hosts=["*.demo.example"]), "not one of the provider's hosts"),
        (_with_route(methods=["BREW"]), "unsupported method"),
        (_with_route(path="/files/{path}/{path}"), "repeats"),
        (_with_route(path="/files/{path}"), "defined twice"),
        (_with_route(path="relative"), "must start with"),
        (_with_route(path="/a//b"), "bad segment"),
        (_with_route(path="/a/b{c}"), "bad segment"),
        (_variant(implicit_scopes=["files:admin"]), "unknown scope"),
        (_variant(scopes={"files": {"native": {}}}), "<resource>:<access>"),
        (_variant(hosts=["api.demo.test", "bad host"]), "bad host"),
        (
            _variant(
                scopes={
                    "a:read": {"native": {"x": "read"}, "implies": ["b:read"]},
                    "b:read": {"native": {"y": "read"}, "implies": ["a:read"]},
                },
                routes=[],
            ),
            "cycle",
        ),
        (
            _variant(
                scopes={"a:read": {"native": {"x": "read"}}, "b:write": {"native": {"x": "write"}}}, routes=[]
            ),
            "neither implies the other",
        ),
    ],
)
def test_malformed_catalogs_are_refused(data: dict[str, Any], message: str) -> None:
    with pytest.raises(CatalogError, match=message):
        ProviderCatalog.from_data(data)


def test_two_greedy_parameters_in_one_template_are_refused() -> None:
    data = _with_route(path="/a/{path}/b/{ref}")
    data["greedy_params"] = ["path", "ref"]
    with pytest.raises(CatalogError, match="more than one greedy"):
        ProviderCatalog.from_data(data)


def test_providers_must_not_share_hosts() -> None:
    demo = ProviderCatalog.from_data(MINIMAL)
    clash = ProviderCatalog.from_data(_variant(provider="clash", hosts=["*.eu.demo.example"], routes=[]))
    with pytest.raises(CatalogError, match="share host"):
        build_catalog([demo, clash])
    with pytest.raises(CatalogError, match="defined twice"):
        build_catalog([demo, demo])
    assert build_catalog([demo, GITHUB]).provider_for_host("x.demo.example") is demo
