"""The sandbox providers, hit directly (no proxy) with curl, httpx, Python ssl and git.

Clients connect to 127.0.0.1 while sending Host and SNI `api.github.com` / `github.com` and trusting
only the sandbox CA, as tether's upstream address override does. Token values never appear in
assertion messages: failures show `scrub(...)`ed text.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import os
import secrets
import shutil
import socket
import ssl
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509

from tether.sandbox import (
    AsyncSandboxServer,
    GitHubSandbox,
    GitSandbox,
    Requirement,
    SandboxCA,
    SandboxServer,
    SandboxToken,
    init_bare_repo,
)
from tether.sandbox.auth import parse_authorization

pytestmark = pytest.mark.timeout(60)

TOKENS = {
    "writer": SandboxToken(
        "writer",
        "ghs_w" + secrets.token_hex(16),
        {"contents": "write", "issues": "write", "pull_requests": "read", "metadata": "read"},
    ),
    "reader": SandboxToken("reader", "ghs_r" + secrets.token_hex(16), {"contents": "read", "issues": "read"}),
    "commenter": SandboxToken("commenter", "ghs_c" + secrets.token_hex(16), {"pull_requests": "write"}),
    "bare": SandboxToken("bare", "ghs_b" + secrets.token_hex(16), {"metadata": "read"}),
    "admin": SandboxToken("admin", "ghs_a" + secrets.token_hex(16), {"administration": "write"}),
    "elsewhere": SandboxToken(
        "elsewhere",
        "ghs_e" + secrets.token_hex(16),
        {"issues": "write"},
        repositories=frozenset({"acme/web"}),
    ),
}
UNKNOWN_SECRET = "ghs_x" + secrets.token_hex(16)
ALL_SECRETS = [t.secret for t in TOKENS.values()] + [UNKNOWN_SECRET]


def scrub(text: str) -> str:
    """Text safe to show in a failure message: every test token value replaced by its name."""
    for token in TOKENS.values():
        text = text.replace(token.secret, f"<{token.name}>")
    return text.replace(UNKNOWN_SECRET, "<unknown>")


def secret_of(name: str) -> str:
    return UNKNOWN_SECRET if name == "unknown" else TOKENS[name].secret


def authorization(name: str, scheme: str = "Bearer", username: str = "x-access-token") -> str:
    """An Authorization value for a test token given by name (so failures show names, not values)."""
    if scheme == "Basic":
        return "Basic " + base64.b64encode(f"{username}:{secret_of(name)}".encode()).decode()
    return f"{scheme} {secret_of(name)}"


def assert_no_secret(text: str, where: str) -> None:
    if any(secret in text for secret in ALL_SECRETS):
        pytest.fail(f"a token value appears in {where}")


def client_env(home: Path, ca: SandboxCA) -> dict[str, str]:
    """Environment for git/curl: only the sandbox CA, no user config, no proxy, no prompts."""
    dropped = ("SSL_CERT_FILE", "SSL_CERT_DIR", "CURL_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "GIT_SSL_CAINFO")
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in dropped and not k.startswith("GIT_") and not k.lower().endswith("_proxy")
    }
    return env | {
        "HOME": str(home),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_SSL_CAINFO": str(ca.cert_path),
        "GIT_AUTHOR_NAME": "Agent",
        "GIT_AUTHOR_EMAIL": "agent@example.com",
        "GIT_COMMITTER_NAME": "Agent",
        "GIT_COMMITTER_EMAIL": "agent@example.com",
    }


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> SandboxCA:
    return SandboxCA(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def github(ca: SandboxCA) -> Iterator[tuple[GitHubSandbox, int]]:
    sandbox = GitHubSandbox(TOKENS.values())
    with SandboxServer(sandbox.app, ca.ssl_context()) as server:
        yield sandbox, server.port


def request(
    ca: SandboxCA,
    host: str,
    port: int,
    method: str,
    path: str,
    token: str | None = None,
    *,
    scheme: str = "Bearer",
    headers: dict[str, str] | None = None,
    **kwargs: Any,
) -> httpx.Response:
    """A request to https://<host>:<port> connected to 127.0.0.1 (like curl --resolve), SNI and Host = host.

    `token` names a test token (or "unknown") sent as `Authorization: <scheme> ...`.
    """
    headers = {**(headers or {}), "Host": f"{host}:{port}"}
    if token is not None:
        headers["Authorization"] = authorization(token, scheme)
    context = ssl.create_default_context(cafile=ca.cert_path)
    with httpx.Client(verify=context, trust_env=False) as client:
        return client.request(
            method,
            f"https://127.0.0.1:{port}{path}",
            headers=headers,
            extensions={"sni_hostname": host},
            **kwargs,
        )


def api(
    ca: SandboxCA, port: int, method: str, path: str, token: str | None = None, **kwargs: Any
) -> httpx.Response:
    return request(ca, "api.github.com", port, method, path, token, **kwargs)


def git_http(
    ca: SandboxCA, port: int, method: str, path: str, token: str | None = None, **kwargs: Any
) -> httpx.Response:
    return request(ca, "github.com", port, method, path, token, scheme="Basic", **kwargs)


# --- PKI ----------------------------------------------------------------------------------------------


def test_server_certificate_verifies_strictly_with_openssl(ca: SandboxCA) -> None:
    issued = ca.issue(["api.github.com", "127.0.0.1"])
    result = subprocess.run(
        [
            "openssl",
            "verify",
            "-x509_strict",
            "-purpose",
            "sslserver",
            "-CAfile",
            ca.cert_path,
            issued.cert_path,
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    cert = x509.load_pem_x509_certificate(issued.cert_path.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["api.github.com"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False


def test_private_keys_are_owner_only_and_issue_needs_a_name(ca: SandboxCA) -> None:
    issued = ca.issue()
    assert stat.S_IMODE(issued.key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE((ca.directory / "ca-key.pem").stat().st_mode) == 0o600
    with pytest.raises(ValueError, match="at least one"):
        ca.issue([])


def test_strict_python_client_verifies_names_in_the_certificate(ca: SandboxCA, github) -> None:
    _, port = github
    context = ssl.create_default_context(cafile=ca.cert_path)
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    for name in ("api.github.com", "github.com", "127.0.0.1"):
        with (
            socket.create_connection(("127.0.0.1", port)) as raw,
            context.wrap_socket(raw, server_hostname=name),
        ):
            pass
    with (
        socket.create_connection(("127.0.0.1", port)) as raw,
        pytest.raises(ssl.SSLCertVerificationError, match="mismatch"),
    ):
        context.wrap_socket(raw, server_hostname="evil.example")


def test_the_system_trust_store_does_not_trust_the_sandbox(github) -> None:
    _, port = github
    with (
        socket.create_connection(("127.0.0.1", port)) as raw,
        pytest.raises(ssl.SSLCertVerificationError, match="unable to get local issuer"),
    ):
        ssl.create_default_context().wrap_socket(raw, server_hostname="api.github.com")


# --- credentials and permissions ---------------------------------------------------------------------


def test_parse_authorization_accepts_githubs_schemes() -> None:
    basic = base64.b64encode(b"x-access-token:s3cret").decode()
    for header in ("Bearer abc", "bearer abc", "token abc", "TOKEN  abc "):
        credential = parse_authorization(header)
        assert credential is not None and (credential.username, credential.secret) == (None, "abc")
    credential = parse_authorization(f"Basic {basic}")
    assert credential is not None and (credential.username, credential.secret) == ("x-access-token", "s3cret")
    for bad in (
        None,
        "",
        "Bearer",
        "Digest abc",
        "Basic !!notbase64",
        "Basic " + base64.b64encode(b"x").decode(),
    ):
        assert parse_authorization(bad) is None


def test_requirement_is_any_of_permission_sets() -> None:
    requirement = Requirement.parse("issues=write; pull_requests=write,contents=read")
    assert requirement.satisfied_by({"issues": "admin"})
    assert requirement.satisfied_by({"pull_requests": "write", "contents": "write"})
    assert not requirement.satisfied_by({"pull_requests": "write"})
    assert not requirement.satisfied_by({"issues": "read"})
    assert requirement.header_value() == "issues=write; pull_requests=write,contents=read"
    with pytest.raises(ValueError, match="permission=level"):
        Requirement.parse("issues")
    with pytest.raises(ValueError, match="bad permission"):
        SandboxToken("t", "s", {"issues": "owner"})


def test_token_secret_is_not_in_its_repr() -> None:
    assert_no_secret(repr(TOKENS["writer"]), "a SandboxToken repr")


# --- GitHub REST -------------------------------------------------------------------------------------


def test_curl_with_resolve_reads_the_repository(ca: SandboxCA, github, tmp_path: Path) -> None:
    _, port = github
    # The token goes through a config file so it never shows in argv or a failure message.
    config = tmp_path / "curl.cfg"
    config.write_text(f'header = "Authorization: token {secret_of("reader")}"\n')
    result = subprocess.run(
        [
            "curl", "-sS", "--fail-with-body", "--config", config,
            "--resolve", f"api.github.com:{port}:127.0.0.1", "--cacert", ca.cert_path,
            f"https://api.github.com:{port}/repos/acme/api",
        ],
        capture_output=True,
        text=True,
        env=client_env(tmp_path, ca),
    )  # fmt: skip
    assert result.returncode == 0, scrub(result.stderr + result.stdout)
    repo = json.loads(result.stdout)
    assert (repo["full_name"], repo["private"], repo["default_branch"]) == ("acme/api", True, "main")
    assert repo["owner"]["type"] == "Organization"


def test_missing_and_bad_tokens_get_401(ca: SandboxCA, github) -> None:
    _, port = github
    missing = api(ca, port, "GET", "/repos/acme/api/issues")
    assert missing.status_code == 401
    assert missing.json()["message"] == "Requires authentication"
    bad = api(ca, port, "GET", "/repos/acme/api/issues", "unknown")
    assert bad.status_code == 401
    assert bad.json() == {
        "message": "Bad credentials",
        "documentation_url": "https://docs.github.com/rest",
        "status": "401",
    }
    # A bad token is refused even where anonymous calls are fine.
    assert api(ca, port, "GET", "/zen", "unknown").status_code == 401
    assert_no_secret(bad.text + str(bad.headers), "a 401 response")


def test_missing_permission_gets_403_with_accepted_permissions(ca: SandboxCA, github) -> None:
    _, port = github
    response = api(ca, port, "POST", "/repos/acme/api/issues", "reader", json={"title": "t"})
    assert response.status_code == 403
    assert response.json()["message"] == "Resource not accessible by integration"
    assert response.headers["X-Accepted-GitHub-Permissions"] == "issues=write"
    pulls = api(ca, port, "GET", "/repos/acme/api/pulls", "bare")
    assert pulls.status_code == 403
    # metadata:read is implied for every installation token, as on GitHub.
    assert api(ca, port, "GET", "/repos/acme/api", "commenter").status_code == 200


def test_issues_and_pulls_are_listed_and_fetched(ca: SandboxCA, github) -> None:
    _, port = github
    open_issues = api(ca, port, "GET", "/repos/acme/api/issues", "writer").json()
    assert [i["number"] for i in open_issues] == [7, 5]
    assert "pull_request" in open_issues[0] and "pull_request" not in open_issues[1]
    every = api(ca, port, "GET", "/repos/acme/api/issues?state=all", "writer").json()
    assert [i["number"] for i in every] == [7, 6, 5]
    pulls = api(ca, port, "GET", "/repos/acme/api/pulls", "writer").json()
    assert [(p["number"], p["head"]["ref"], p["base"]["ref"]) for p in pulls] == [
        (7, "fix-empty-config", "main")
    ]
    pull = api(ca, port, "GET", "/repos/acme/api/pulls/7", "reader")  # contents:read is enough
    assert pull.status_code == 200 and pull.json()["mergeable"] is True
    assert (
        api(ca, port, "GET", "/repos/acme/api/pulls/5", "writer").status_code == 404
    )  # an issue, not a pull
    assert api(ca, port, "GET", "/repos/acme/api/issues/6", "writer").json()["state"] == "closed"
    assert api(ca, port, "GET", "/repos/acme/nope/issues", "writer").status_code == 404
    assert api(ca, port, "GET", "/repos/acme/api/issues", "elsewhere").status_code == 404


def test_create_issue_and_comment(ca: SandboxCA, github) -> None:
    sandbox, port = github
    created = api(
        ca, port, "POST", "/repos/acme/api/issues", "writer", json={"title": "Flaky test", "labels": ["ci"]}
    )
    assert created.status_code == 201
    issue = created.json()
    assert (issue["number"], issue["user"]["login"], issue["user"]["type"]) == (8, "writer[bot]", "Bot")
    assert created.headers["Location"] == "https://api.github.com/repos/acme/api/issues/8"
    assert api(ca, port, "GET", "/repos/acme/api/issues/8", "writer").json()["title"] == "Flaky test"
    assert sandbox.repositories["acme/api"].issues[8].labels == ["ci"]

    # pull_requests:write alone may comment on a pull request (GitHub accepts either permission).
    comment = api(
        ca,
        port,
        "POST",
        "/repos/acme/api/issues/7/comments",
        "commenter",
        json={"body": "LGTM"},
    )
    assert comment.status_code == 201
    assert comment.json()["body"] == "LGTM"
    assert api(ca, port, "GET", "/repos/acme/api/issues/7", "writer").json()["comments"] == 1
    assert (
        api(ca, port, "POST", "/repos/acme/api/issues/99/comments", "writer", json={"body": "x"}).status_code
        == 404
    )


def test_invalid_issue_bodies_get_githubs_errors(ca: SandboxCA, github) -> None:
    _, port = github
    missing = api(ca, port, "POST", "/repos/acme/api/issues", "writer", json={"body": "no title"})
    assert missing.status_code == 422
    assert missing.json()["errors"] == [{"resource": "Issue", "code": "missing_field", "field": "title"}]
    garbled = api(ca, port, "POST", "/repos/acme/api/issues", "writer", content=b"{not json")
    assert (garbled.status_code, garbled.json()["message"]) == (400, "Problems parsing JSON")


def test_delete_repository_needs_administration_write(ca: SandboxCA, github) -> None:
    _, port = github
    assert api(ca, port, "DELETE", "/repos/acme/api", "writer").status_code == 403
    assert api(ca, port, "DELETE", "/repos/acme/api", "admin").status_code == 204
    assert api(ca, port, "GET", "/repos/acme/api", "writer").status_code == 404


def test_zen_rate_limit_and_unknown_routes(ca: SandboxCA, github) -> None:
    _, port = github
    zen = api(ca, port, "GET", "/zen")
    assert zen.status_code == 200 and zen.headers["Content-Type"].startswith("text/plain") and zen.text
    api(ca, port, "GET", "/repos/acme/api", "writer")
    limits = api(ca, port, "GET", "/rate_limit", "writer").json()
    assert (limits["rate"]["limit"], limits["rate"]["used"]) == (5000, 1)
    assert api(ca, port, "GET", "/rate_limit").json()["rate"]["limit"] == 60
    unknown = api(ca, port, "GET", "/nope", "writer")
    assert (unknown.status_code, unknown.json()["message"]) == (404, "Not Found")
    assert api(ca, port, "PATCH", "/zen").status_code == 404


def test_requests_are_recorded_without_token_values(ca: SandboxCA, github) -> None:
    sandbox, port = github
    api(
        ca,
        port,
        "POST",
        "/repos/acme/api/issues?via=agent",
        "writer",
        headers={"X-Tether-Run": "run_1", "X-Echo": f"copy {secret_of('writer')}", "Cookie": "session=abc"},
        json={"title": "t"},
    )
    api(ca, port, "GET", "/zen", "unknown")
    assert_no_secret(repr(sandbox.requests), "the recorded requests")  # first, so no later failure shows one
    recorded, refused = sandbox.requests
    assert (recorded.method, recorded.path, recorded.query_string) == (
        "POST",
        "/repos/acme/api/issues",
        "via=agent",
    )
    assert recorded.token_name == "writer"
    assert recorded.server_name == "api.github.com"
    assert recorded.headers["authorization"] == "Bearer <token:writer>"
    assert recorded.headers["X-Tether-Run"] == "run_1"
    assert recorded.headers["X-Echo"] == "copy <token:writer>"
    assert recorded.headers["Cookie"] == "<redacted>"
    assert recorded.body is not None and json.loads(recorded.body) == {"title": "t"}
    assert (refused.token_name, refused.headers["Authorization"]) == (None, "Bearer <unknown credential>")


# --- servers -----------------------------------------------------------------------------------------


def test_sandbox_server_starts_once_and_stops(ca: SandboxCA) -> None:
    server = SandboxServer(GitHubSandbox(TOKENS.values()).app, ca.ssl_context())
    port = server.start()
    with pytest.raises(RuntimeError, match="already started"):
        server.start()
    server.stop()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port)).close()


def test_async_server_runs_in_the_callers_loop(ca: SandboxCA) -> None:
    async def main() -> tuple[int, str]:
        async with AsyncSandboxServer(GitHubSandbox(TOKENS.values()).app, ca.ssl_context()) as server:
            context = ssl.create_default_context(cafile=ca.cert_path)
            async with httpx.AsyncClient(verify=context, trust_env=False) as client:
                response = await client.get(
                    f"https://127.0.0.1:{server.port}/zen",
                    headers={"Host": "api.github.com"},
                    extensions={"sni_hostname": "api.github.com"},
                )
            return response.status_code, server.address

    status, address = asyncio.run(main())
    assert status == 200
    assert address.startswith("127.0.0.1:")


# --- git smart HTTP ----------------------------------------------------------------------------------


@pytest.fixture
def git_server(ca: SandboxCA, tmp_path: Path) -> Iterator[tuple[GitSandbox, int, Path]]:
    root = tmp_path / "repos"
    init_bare_repo(root, "acme/api", {"README.md": "# api\n", "src/app.py": "print('hello')\n"})
    sandbox = GitSandbox(root, TOKENS.values())
    with SandboxServer(sandbox.app, ca.ssl_context()) as server:
        yield sandbox, server.port, root / "acme" / "api.git"


@dataclass(frozen=True)
class Ran:
    """A finished git command: output scrubbed of token values, arguments (which may hold one) left out."""

    returncode: int
    stdout: str
    stderr: str


def git(
    ca: SandboxCA, port: int, home: Path, *args: str, cwd: Path | None = None, token: str | None = None
) -> Ran:
    """Runs git against the sandbox at github.com:<port>; `token` (a name) goes in as an extra header."""
    config = {"http.curloptResolve": f"github.com:{port}:127.0.0.1"}
    if token is not None:
        config["http.extraHeader"] = "Authorization: " + authorization(token, "Basic")
    env = client_env(home, ca) | {"GIT_CONFIG_COUNT": str(len(config))}
    for i, (key, value) in enumerate(config.items()):  # via the environment, so never in argv
        env |= {f"GIT_CONFIG_KEY_{i}": key, f"GIT_CONFIG_VALUE_{i}": value}
    result = subprocess.run(["git", *args], capture_output=True, text=True, cwd=cwd, env=env)
    return Ran(result.returncode, scrub(result.stdout), scrub(result.stderr))


def remote_head(bare: Path) -> str:
    return subprocess.run(
        ["git", "--git-dir", bare, "rev-parse", "refs/heads/main"], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_init_bare_repo_commits_the_files(tmp_path: Path) -> None:
    bare = init_bare_repo(tmp_path, "acme/web", {"a/b.txt": "b\n", "c.bin": b"\x00\x01"})
    listing = subprocess.run(
        ["git", "--git-dir", bare, "ls-tree", "-r", "--name-only", "main"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert listing.stdout.split() == ["a/b.txt", "c.bin"]
    with pytest.raises(FileExistsError):
        init_bare_repo(tmp_path, "acme/web", {})
    with pytest.raises(ValueError, match="inside the repository"):
        init_bare_repo(tmp_path, "acme/other", {"../escape": "x"})


def test_clone_commit_and_push(ca: SandboxCA, git_server, tmp_path: Path) -> None:
    sandbox, port, bare = git_server
    clone = tmp_path / "clone"
    with_credentials = f"https://x-access-token:{secret_of('reader')}@github.com:{port}/acme/api"
    cloned = git(ca, port, tmp_path, "clone", "--quiet", with_credentials, str(clone))
    assert cloned.returncode == 0, cloned.stderr
    assert (clone / "src" / "app.py").read_text() == "print('hello')\n"

    (clone / "CHANGELOG.md").write_text("- fixed\n")
    assert git(ca, port, tmp_path, "add", "CHANGELOG.md", cwd=clone).returncode == 0
    assert git(ca, port, tmp_path, "commit", "--quiet", "-m", "Add changelog", cwd=clone).returncode == 0
    local_head = git(ca, port, tmp_path, "rev-parse", "HEAD", cwd=clone).stdout.strip()

    # origin's URL carries the read-only token.
    refused = git(ca, port, tmp_path, "push", "origin", "main", cwd=clone)
    assert refused.returncode != 0
    assert "Permission to acme/api.git denied to reader[bot]" in refused.stderr
    assert remote_head(bare) != local_head

    # The write token as an extra header, the way tether injects it, to a URL without credentials.
    url = f"https://github.com:{port}/acme/api.git"
    pushed = git(ca, port, tmp_path, "push", url, "main", cwd=clone, token="writer")
    assert pushed.returncode == 0, pushed.stderr
    assert remote_head(bare) == local_head

    assert_no_secret(repr(sandbox.requests), "the recorded git requests")
    push_posts = [r for r in sandbox.requests if r.path == "/acme/api.git/git-receive-pack"]
    assert [(r.token_name, r.headers["Authorization"]) for r in push_posts] == [
        ("writer", "Basic x-access-token:<token:writer>")
    ]
    assert all(r.server_name == "github.com" and r.body is None for r in sandbox.requests)


def test_large_push_streams_a_chunked_body(ca: SandboxCA, git_server, tmp_path: Path) -> None:
    sandbox, port, bare = git_server
    work = tmp_path / "work"
    assert git(ca, port, tmp_path, "clone", "--quiet", bare.as_uri(), str(work)).returncode == 0
    (work / "blob.bin").write_bytes(os.urandom(256 * 1024))  # incompressible: the pack exceeds postBuffer
    assert git(ca, port, tmp_path, "add", "blob.bin", cwd=work).returncode == 0
    assert git(ca, port, tmp_path, "commit", "--quiet", "-m", "blob", cwd=work).returncode == 0
    url = f"https://github.com:{port}/acme/api.git"
    pushed = git(
        ca, port, tmp_path, "-c", "http.postBuffer=65536", "push", url, "main", cwd=work, token="writer"
    )
    assert pushed.returncode == 0, pushed.stderr
    assert remote_head(bare) == git(ca, port, tmp_path, "rev-parse", "HEAD", cwd=work).stdout.strip()
    assert any(r.headers.get("Transfer-Encoding") == "chunked" for r in sandbox.requests)


def test_git_authentication_and_permissions(ca: SandboxCA, git_server) -> None:
    _, port, _ = git_server
    refs = "/acme/api/info/refs?service=git-upload-pack"
    for header in (None, authorization("reader"), authorization("reader", "Basic", "someone")):
        refused = git_http(ca, port, "GET", refs, headers={"Authorization": header} if header else {})
        assert refused.status_code == 401
        assert refused.headers["WWW-Authenticate"] == 'Basic realm="GitHub"'
    assert git_http(ca, port, "GET", refs, "unknown").status_code == 401
    assert git_http(ca, port, "GET", refs, "bare").status_code == 403  # no contents permission
    assert git_http(ca, port, "GET", refs.replace("upload", "receive"), "reader").status_code == 403
    assert (
        git_http(ca, port, "GET", "/acme/missing.git/info/refs?service=git-upload-pack", "reader").status_code
        == 404
    )
    assert git_http(ca, port, "GET", refs, "elsewhere").status_code == 404  # token limited to acme/web
    advertised = git_http(ca, port, "GET", refs, "reader")
    assert advertised.status_code == 200
    assert advertised.headers["Content-Type"] == "application/x-git-upload-pack-advertisement"
    assert b"refs/heads/main" in advertised.content


def test_gzip_request_bodies_reach_http_backend(ca: SandboxCA, git_server) -> None:
    """git gzips large upload-pack requests; the sandbox must hand the body to the CGI as sent."""
    _, port, _ = git_server

    def pkt(line: str) -> bytes:
        return f"{len(line) + 4:04x}{line}".encode()

    ls_refs = pkt("command=ls-refs\n") + b"0001" + pkt("ref-prefix refs/heads/\n") + b"0000"
    headers = {
        "Content-Type": "application/x-git-upload-pack-request",
        "Content-Encoding": "gzip",
        "Git-Protocol": "version=2",
    }
    response = git_http(
        ca,
        port,
        "POST",
        "/acme/api.git/git-upload-pack",
        "reader",
        headers=headers,
        content=gzip.compress(ls_refs),
    )
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/x-git-upload-pack-result"
    assert b"refs/heads/main" in response.content


@pytest.fixture(autouse=True, scope="module")
def _tools_present() -> None:
    for tool in ("git", "curl", "openssl"):
        if shutil.which(tool) is None:
            pytest.fail(f"the sandbox tests need `{tool}` on PATH")
