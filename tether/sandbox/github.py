"""A sandbox GitHub REST API (aiohttp) that checks tokens and permissions like api.github.com.

It serves a few endpoints over small in-memory state (repository `acme/api` with two issues and a
pull request), answers with GitHub's JSON shapes, status codes and headers, and records every request
it receives (`GitHubSandbox.requests`) with credentials replaced by markers.

Authentication follows GitHub: `Authorization: Bearer <t>`, `token <t>` or Basic with the token as
password. A presented but unknown token gets 401 "Bad credentials" everywhere; a missing one gets
401 "Requires authentication" where the endpoint needs a token (`/zen` and `/rate_limit` do not).
A token without the endpoint's permission gets 403 "Resource not accessible by integration" with
`X-Accepted-GitHub-Permissions`, as installation tokens do. `metadata: read` is implied, as GitHub
grants it to every installation token. A repository outside a token's `repositories` is a 404.
"""

from __future__ import annotations

import base64
import datetime
import itertools
import json
import time
import uuid
import zlib
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from tether.sandbox.auth import Requirement, SandboxToken, TokenRegistry, parse_authorization
from tether.sandbox.recording import RecordedRequest, recording_middleware

API_URL = "https://api.github.com"
WEB_URL = "https://github.com"
API_VERSION = "2022-11-28"
DOCS_URL = "https://docs.github.com/rest"
IMPLIED_PERMISSIONS = {"metadata": "read"}
RATE_LIMIT_AUTHENTICATED = 5000
RATE_LIMIT_ANONYMOUS = 60

_ZEN = (
    "Design for failure.",
    "Keep it logically awesome.",
    "Speak like a human.",
    "Favor focus over features.",
    "Non-blocking is better than blocking.",
    "Half measures are as bad as nothing at all.",
    "Approachable is better than simple.",
    "Practicality beats purity.",
)

Json = dict[str, Any]


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _node_id(kind: str, ident: int) -> str:
    """GitHub's legacy global node id: base64 of "0<len>:<Type><id>"."""
    return base64.b64encode(f"0{len(kind)}:{kind}{ident}".encode()).decode()


@dataclass
class Comment:
    id: int
    body: str
    author: str
    created_at: str


@dataclass
class ReviewComment:
    id: int
    body: str
    author: str
    created_at: str
    commit_id: str
    path: str
    line: int | None
    side: str


@dataclass(frozen=True)
class PullRequestRefs:
    head_ref: str
    head_sha: str
    base_ref: str
    draft: bool = False


@dataclass
class Issue:
    """An issue or, when `pull` is set, a pull request (they share GitHub's number space)."""

    id: int
    number: int
    title: str
    body: str | None
    author: str
    created_at: str
    state: str = "open"
    labels: list[str] = field(default_factory=list)
    comments: list[Comment] = field(default_factory=list)
    review_comments: list[ReviewComment] = field(default_factory=list)
    pull: PullRequestRefs | None = None
    closed_at: str | None = None


@dataclass
class Repository:
    id: int
    owner: str
    name: str
    description: str
    issues: dict[int, Issue]
    private: bool = True
    default_branch: str = "main"
    created_at: str = "2024-03-04T09:12:44Z"

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"

    def next_number(self) -> int:
        return max(self.issues, default=0) + 1


def acme_api_repository() -> Repository:
    """The seeded repository: issues #5 (open) and #6 (closed), pull request #7 (open, fixes #5)."""
    issues = [
        Issue(
            1_901_000_005,
            5,
            "Crash on empty config file",
            "Starting the service with an empty `config.yaml` raises a KeyError.",
            "alice",
            "2025-01-20T10:02:11Z",
            labels=["bug"],
        ),
        Issue(
            1_901_000_006,
            6,
            "Document the rate limits",
            "The README should say how many requests per minute are allowed.",
            "bob",
            "2025-01-22T15:40:03Z",
            state="closed",
            labels=["documentation"],
            closed_at="2025-01-25T08:00:00Z",
        ),
        Issue(
            1_901_000_007,
            7,
            "Fix crash on empty config file",
            "Treats an empty config file as the defaults. Fixes #5.",
            "alice",
            "2025-02-03T14:01:55Z",
            pull=PullRequestRefs("fix-empty-config", "6dcb09b5b57875f334f61aebed695e2e4193db5e", "main"),
        ),
    ]
    return Repository(
        id=700_123_456,
        owner="acme",
        name="api",
        description="Acme's public API service",
        issues={i.number: i for i in issues},
    )


@dataclass(frozen=True)
class Call:
    """One authenticated (or anonymous) call to an endpoint."""

    request: web.Request
    token: SandboxToken | None
    repo: Repository | None

    @property
    def repository(self) -> Repository:
        if self.repo is None:
            raise RuntimeError("endpoint is not repository-scoped")
        return self.repo

    @property
    def actor(self) -> str:
        return f"{self.token.name}[bot]" if self.token else "ghost"


@dataclass(frozen=True)
class Endpoint:
    method: str
    route: str  # GitHub's route template; aiohttp uses the same {name} syntax
    requirement: Requirement | None  # None: anonymous calls allowed
    docs: str  # documentation_url for its errors
    handler: Callable[[Call], Awaitable[web.StreamResponse]]


def error(status: int, message: str, docs: str = DOCS_URL, **extra: Any) -> web.Response:
    """GitHub's error body: message, documentation_url and the status as a string."""
    body = {"message": message, **extra, "documentation_url": docs, "status": str(status)}
    return web.json_response(body, status=status)


class GitHubSandbox:
    """The sandbox API: serve `app`; read `requests` and `repositories` from tests."""

    def __init__(
        self,
        tokens: Iterable[SandboxToken] | TokenRegistry,
        repositories: Iterable[Repository] | None = None,
        *,
        api_url: str = API_URL,
    ) -> None:
        self.tokens = tokens if isinstance(tokens, TokenRegistry) else TokenRegistry(tokens)
        self.api_url = api_url.rstrip("/")
        self.requests: list[RecordedRequest] = []
        repos = [acme_api_repository()] if repositories is None else list(repositories)
        self.repositories: dict[str, Repository] = {r.full_name.lower(): r for r in repos}
        self._comment_ids = itertools.count(2_001_000_001)
        self._issue_ids = itertools.count(1_901_100_001)
        self._zen = itertools.cycle(_ZEN)
        self._rate_used: dict[str, int] = {}
        self._rate_reset = int(time.time()) + 3600
        self.app = web.Application(
            middlewares=[
                recording_middleware(self.tokens, self.requests, keep_body=True),
                self._github_headers,
            ]
        )
        repo = "/repos/{owner}/{repo}"
        issue = f"{repo}/issues/{{issue_number}}"
        # method, route, permissions (None: anonymous allowed), docs page, handler
        routes: list[tuple[str, str, str | None, str, Callable[[Call], Awaitable[web.StreamResponse]]]] = [
            ("GET", repo, "metadata=read", "repos/repos#get-a-repository", self._repo),
            ("DELETE", repo, "administration=write", "repos/repos#delete-a-repository", self._delete_repo),
            (
                "GET",
                f"{repo}/pulls",
                "pull_requests=read",
                "pulls/pulls#list-pull-requests",
                self._list_pulls,
            ),
            (
                "GET",
                f"{repo}/pulls/{{pull_number}}",
                "pull_requests=read; contents=read",
                "pulls/pulls#get-a-pull-request",
                self._pull,
            ),
            (
                "GET",
                f"{repo}/issues",
                "issues=read",
                "issues/issues#list-repository-issues",
                self._list_issues,
            ),
            ("POST", f"{repo}/issues", "issues=write", "issues/issues#create-an-issue", self._create_issue),
            ("GET", issue, "issues=read", "issues/issues#get-an-issue", self._issue),
            (
                "POST",
                f"{issue}/comments",
                "issues=write; pull_requests=write",
                "issues/comments#create-an-issue-comment",
                self._create_comment,
            ),
            (
                "POST",
                f"{repo}/pulls/{{pull_number}}/comments",
                "pull_requests=write",
                "pulls/comments#create-a-review-comment-for-a-pull-request",
                self._create_review_comment,
            ),
            ("GET", f"{repo}/commits/{{ref}}", "contents=read", "commits/commits#get-a-commit", self._commit),
            ("GET", "/rate_limit", None, "rate-limit/rate-limit", self._rate_limit),
            ("GET", "/zen", None, "meta/meta#get-the-zen-of-github", self._zen_text),
        ]
        for method, route, permissions, docs, handler in routes:
            requirement = Requirement.parse(permissions) if permissions else None
            endpoint = Endpoint(method, route, requirement, f"{DOCS_URL}/{docs}", handler)
            self.app.router.add_route(method, route, self._guarded(endpoint))

    # --- authentication, permissions, headers ---------------------------------------------------------

    def _guarded(self, endpoint: Endpoint) -> Handler:
        async def guarded(request: web.Request) -> web.StreamResponse:
            header = request.headers.get("Authorization")
            token = self.tokens.lookup(parse_authorization(header))
            if header is not None and token is None:
                return error(401, "Bad credentials")
            if endpoint.requirement is not None and token is None:
                return error(401, "Requires authentication", endpoint.docs)
            repo = None
            if "owner" in request.match_info:
                full_name = f"{request.match_info['owner']}/{request.match_info['repo']}"
                repo = self.repositories.get(full_name.lower())
                # GitHub answers 404, not 403, for a repository the token cannot see.
                if repo is None or (token is not None and not token.can_access(repo.full_name)):
                    return error(404, "Not Found", endpoint.docs)
            required = endpoint.requirement
            if required and token and not required.satisfied_by({**IMPLIED_PERMISSIONS, **token.permissions}):
                response = error(403, "Resource not accessible by integration", endpoint.docs)
                response.headers["X-Accepted-GitHub-Permissions"] = required.header_value()
                return response
            return await endpoint.handler(Call(request, token, repo))

        return guarded

    @web.middleware
    async def _github_headers(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except (web.HTTPNotFound, web.HTTPMethodNotAllowed):
            # GitHub answers an unknown route or method with a JSON 404.
            response = error(404, "Not Found")
        response.headers["X-GitHub-Request-Id"] = uuid.uuid4().hex[:20].upper()
        response.headers["X-GitHub-Api-Version-Selected"] = API_VERSION
        if request.path != "/rate_limit":
            token = self.tokens.lookup(parse_authorization(request.headers.get("Authorization")))
            bucket, limit = _rate_bucket(request, token)
            self._rate_used[bucket] = used = self._rate_used.get(bucket, 0) + 1
            response.headers["X-RateLimit-Limit"] = str(limit)
            response.headers["X-RateLimit-Remaining"] = str(max(limit - used, 0))
            response.headers["X-RateLimit-Used"] = str(used)
            response.headers["X-RateLimit-Reset"] = str(self._rate_reset)
            response.headers["X-RateLimit-Resource"] = "core"
        return response

    # --- JSON shapes ------------------------------------------------------------------------------------

    def _user(self, login: str, kind: str | None = None) -> Json:
        kind = kind or ("Bot" if login.endswith("[bot]") else "User")
        ident = zlib.crc32(login.encode()) % 100_000_000 + 1
        return {
            "login": login,
            "id": ident,
            "node_id": _node_id(kind, ident),
            "avatar_url": f"https://avatars.githubusercontent.com/u/{ident}?v=4",
            "url": f"{self.api_url}/users/{login}",
            "html_url": f"{WEB_URL}/{login}",
            "type": kind,
            "site_admin": False,
        }

    def _repo_json(self, repo: Repository) -> Json:
        url = f"{self.api_url}/repos/{repo.full_name}"
        return {
            "id": repo.id,
            "node_id": _node_id("Repository", repo.id),
            "name": repo.name,
            "full_name": repo.full_name,
            "private": repo.private,
            "visibility": "private" if repo.private else "public",
            "owner": self._user(repo.owner, "Organization"),
            "html_url": f"{WEB_URL}/{repo.full_name}",
            "description": repo.description,
            "fork": False,
            "url": url,
            "issues_url": f"{url}/issues{{/number}}",
            "pulls_url": f"{url}/pulls{{/number}}",
            "clone_url": f"{WEB_URL}/{repo.full_name}.git",
            "default_branch": repo.default_branch,
            "open_issues_count": sum(1 for i in repo.issues.values() if i.state == "open"),
            "archived": False,
            "disabled": False,
            "has_issues": True,
            "created_at": repo.created_at,
            "updated_at": repo.created_at,
            "pushed_at": repo.created_at,
        }

    def _label(self, name: str) -> Json:
        ident = zlib.crc32(name.encode())
        return {
            "id": ident,
            "node_id": _node_id("Label", ident),
            "name": name,
            "color": "ededed",
            "default": False,
        }

    def _issue_json(self, repo: Repository, issue: Issue) -> Json:
        url = f"{self.api_url}/repos/{repo.full_name}/issues/{issue.number}"
        kind = "pull" if issue.pull else "issues"
        body: Json = {
            "url": url,
            "repository_url": f"{self.api_url}/repos/{repo.full_name}",
            "comments_url": f"{url}/comments",
            "html_url": f"{WEB_URL}/{repo.full_name}/{kind}/{issue.number}",
            "id": issue.id,
            "node_id": _node_id("Issue", issue.id),
            "number": issue.number,
            "title": issue.title,
            "user": self._user(issue.author),
            "labels": [self._label(name) for name in issue.labels],
            "state": issue.state,
            "state_reason": "completed" if issue.state == "closed" else None,
            "locked": False,
            "assignee": None,
            "assignees": [],
            "comments": len(issue.comments),
            "created_at": issue.created_at,
            "updated_at": issue.comments[-1].created_at if issue.comments else issue.created_at,
            "closed_at": issue.closed_at,
            "author_association": "NONE" if issue.author.endswith("[bot]") else "MEMBER",
            "body": issue.body,
        }
        if issue.pull:
            pull_url = f"{self.api_url}/repos/{repo.full_name}/pulls/{issue.number}"
            html = f"{WEB_URL}/{repo.full_name}/pull/{issue.number}"
            body["pull_request"] = {
                "url": pull_url,
                "html_url": html,
                "diff_url": f"{html}.diff",
                "patch_url": f"{html}.patch",
                "merged_at": None,
            }
        return body

    def _pull_json(self, repo: Repository, issue: Issue, *, detailed: bool) -> Json:
        refs = issue.pull
        if refs is None:
            raise ValueError(f"#{issue.number} is not a pull request")
        html = f"{WEB_URL}/{repo.full_name}/pull/{issue.number}"
        repo_json = self._repo_json(repo)
        owner = self._user(repo.owner, "Organization")
        body: Json = {
            "url": f"{self.api_url}/repos/{repo.full_name}/pulls/{issue.number}",
            "id": issue.id,
            "node_id": _node_id("PullRequest", issue.id),
            "html_url": html,
            "diff_url": f"{html}.diff",
            "patch_url": f"{html}.patch",
            "issue_url": f"{self.api_url}/repos/{repo.full_name}/issues/{issue.number}",
            "number": issue.number,
            "state": issue.state,
            "locked": False,
            "title": issue.title,
            "user": self._user(issue.author),
            "body": issue.body,
            "labels": [self._label(name) for name in issue.labels],
            "created_at": issue.created_at,
            "updated_at": issue.created_at,
            "closed_at": issue.closed_at,
            "merged_at": None,
            "draft": refs.draft,
            "head": {
                "label": f"{repo.owner}:{refs.head_ref}",
                "ref": refs.head_ref,
                "sha": refs.head_sha,
                "user": owner,
                "repo": repo_json,
            },
            "base": {
                "label": f"{repo.owner}:{refs.base_ref}",
                "ref": refs.base_ref,
                "user": owner,
                "repo": repo_json,
            },
            "author_association": "MEMBER",
        }
        if detailed:
            body |= {
                "merged": False,
                "mergeable": True,
                "mergeable_state": "clean",
                "comments": len(issue.comments),
                "commits": 1,
                "additions": 4,
                "deletions": 1,
                "changed_files": 1,
            }
        return body

    def _comment_json(self, repo: Repository, issue: Issue, comment: Comment) -> Json:
        return {
            "id": comment.id,
            "node_id": _node_id("IssueComment", comment.id),
            "url": f"{self.api_url}/repos/{repo.full_name}/issues/comments/{comment.id}",
            "html_url": f"{WEB_URL}/{repo.full_name}/issues/{issue.number}#issuecomment-{comment.id}",
            "issue_url": f"{self.api_url}/repos/{repo.full_name}/issues/{issue.number}",
            "body": comment.body,
            "user": self._user(comment.author),
            "created_at": comment.created_at,
            "updated_at": comment.created_at,
            "author_association": "NONE",
        }

    # --- endpoints --------------------------------------------------------------------------------------

    async def _repo(self, call: Call) -> web.StreamResponse:
        return web.json_response(self._repo_json(call.repository))

    async def _delete_repo(self, call: Call) -> web.StreamResponse:
        del self.repositories[call.repository.full_name.lower()]
        return web.Response(status=204)

    async def _list_pulls(self, call: Call) -> web.StreamResponse:
        repo = call.repository
        wanted = _state_filter(call.request)
        pulls = [i for i in _newest_first(repo) if i.pull and i.state in wanted]
        return web.json_response([self._pull_json(repo, i, detailed=False) for i in pulls])

    async def _pull(self, call: Call) -> web.StreamResponse:
        issue = _find_issue(call, "pull_number")
        if issue is None or issue.pull is None:
            return error(404, "Not Found", f"{DOCS_URL}/pulls/pulls#get-a-pull-request")
        return web.json_response(self._pull_json(call.repository, issue, detailed=True))

    async def _list_issues(self, call: Call) -> web.StreamResponse:
        repo = call.repository
        wanted = _state_filter(call.request)
        issues = [i for i in _newest_first(repo) if i.state in wanted]
        return web.json_response([self._issue_json(repo, i) for i in issues])

    async def _issue(self, call: Call) -> web.StreamResponse:
        issue = _find_issue(call, "issue_number")
        if issue is None:
            return error(404, "Not Found", f"{DOCS_URL}/issues/issues#get-an-issue")
        return web.json_response(self._issue_json(call.repository, issue))

    async def _create_issue(self, call: Call) -> web.StreamResponse:
        payload = await _json_object(call.request)
        if isinstance(payload, web.Response):
            return payload
        title, body, labels = payload.get("title"), payload.get("body"), payload.get("labels", [])
        if not isinstance(title, str) or not title:
            return _missing_field("Issue", "title", "issues/issues#create-an-issue")
        if body is not None and not isinstance(body, str):
            return _invalid_field("Issue", "body", "issues/issues#create-an-issue")
        if not isinstance(labels, list) or not all(isinstance(name, str) for name in labels):
            return _invalid_field("Issue", "labels", "issues/issues#create-an-issue")
        repo = call.repository
        issue = Issue(
            next(self._issue_ids), repo.next_number(), title, body, call.actor, _now(), labels=labels
        )
        repo.issues[issue.number] = issue
        created = self._issue_json(repo, issue)
        return web.json_response(created, status=201, headers={"Location": created["url"]})

    async def _create_comment(self, call: Call) -> web.StreamResponse:
        issue = _find_issue(call, "issue_number")
        if issue is None:
            return error(404, "Not Found", f"{DOCS_URL}/issues/comments#create-an-issue-comment")
        payload = await _json_object(call.request)
        if isinstance(payload, web.Response):
            return payload
        text = payload.get("body")
        if not isinstance(text, str) or not text:
            return _missing_field("IssueComment", "body", "issues/comments#create-an-issue-comment")
        comment = Comment(next(self._comment_ids), text, call.actor, _now())
        issue.comments.append(comment)
        created = self._comment_json(call.repository, issue, comment)
        return web.json_response(created, status=201, headers={"Location": created["url"]})

    async def _commit(self, call: Call) -> web.StreamResponse:
        """The head commits of the seeded pull requests (enough for SDKs that fetch one to comment on)."""
        ref, repo = call.request.match_info["ref"], call.repository
        heads = {i.pull.head_sha: i for i in repo.issues.values() if i.pull}
        issue = heads.get(ref)
        if issue is None:
            message = f"No commit found for SHA: {ref}"
            return error(422, message, f"{DOCS_URL}/commits/commits#get-a-commit")
        url = f"{self.api_url}/repos/{repo.full_name}/commits/{ref}"
        author = {"name": issue.author, "email": f"{issue.author}@example.com", "date": issue.created_at}
        return web.json_response(
            {
                "sha": ref,
                "node_id": _node_id("Commit", zlib.crc32(ref.encode())),
                "url": url,
                "html_url": f"{WEB_URL}/{repo.full_name}/commit/{ref}",
                "commit": {"author": author, "committer": author, "message": issue.title, "url": url},
                "author": self._user(issue.author),
                "committer": self._user(issue.author),
                "parents": [],
                "files": [{"filename": "app.py", "status": "modified", "additions": 4, "deletions": 1}],
            }
        )

    async def _create_review_comment(self, call: Call) -> web.StreamResponse:
        docs = f"{DOCS_URL}/pulls/comments#create-a-review-comment-for-a-pull-request"
        issue = _find_issue(call, "pull_number")
        if issue is None or issue.pull is None:
            return error(404, "Not Found", docs)
        payload = await _json_object(call.request)
        if isinstance(payload, web.Response):
            return payload
        for name in ("body", "commit_id", "path"):
            if not isinstance(payload.get(name), str) or not payload[name]:
                return _missing_field("PullRequestReviewComment", name, docs.removeprefix(f"{DOCS_URL}/"))
        line = payload.get("line")
        if line is not None and not isinstance(line, int):
            return _invalid_field("PullRequestReviewComment", "line", docs.removeprefix(f"{DOCS_URL}/"))
        comment = ReviewComment(
            next(self._comment_ids),
            payload["body"],
            call.actor,
            _now(),
            payload["commit_id"],
            payload["path"],
            line,
            str(payload.get("side", "RIGHT")),
        )
        issue.review_comments.append(comment)
        repo = call.repository
        pull_url = f"{self.api_url}/repos/{repo.full_name}/pulls/{issue.number}"
        location = f"{self.api_url}/repos/{repo.full_name}/pulls/comments/{comment.id}"
        created: Json = {
            "id": comment.id,
            "node_id": _node_id("PullRequestReviewComment", comment.id),
            "url": location,
            "pull_request_review_id": comment.id + 1,
            "diff_hunk": "@@ -1 +1 @@",
            "path": comment.path,
            "commit_id": comment.commit_id,
            "original_commit_id": comment.commit_id,
            "user": self._user(comment.author),
            "body": comment.body,
            "created_at": comment.created_at,
            "updated_at": comment.created_at,
            "html_url": f"{WEB_URL}/{repo.full_name}/pull/{issue.number}#discussion_r{comment.id}",
            "pull_request_url": pull_url,
            "author_association": "NONE",
            "line": comment.line,
            "side": comment.side,
        }
        return web.json_response(created, status=201, headers={"Location": location})

    async def _rate_limit(self, call: Call) -> web.StreamResponse:
        bucket, limit = _rate_bucket(call.request, call.token)
        used = self._rate_used.get(bucket, 0)
        core = {"limit": limit, "used": used, "remaining": max(limit - used, 0), "reset": self._rate_reset}
        search_limit = 30 if call.token else 10
        return web.json_response(
            {
                "resources": {
                    "core": core,
                    "search": {
                        "limit": search_limit,
                        "used": 0,
                        "remaining": search_limit,
                        "reset": self._rate_reset,
                    },
                    "graphql": {"limit": limit, "used": 0, "remaining": limit, "reset": self._rate_reset},
                },
                "rate": core,
            }
        )

    async def _zen_text(self, call: Call) -> web.StreamResponse:
        return web.Response(text=next(self._zen), content_type="text/plain")


def _rate_bucket(request: web.Request, token: SandboxToken | None) -> tuple[str, int]:
    """Who a call counts against, and their hourly core limit (GitHub: per token, or per IP if anonymous)."""
    if token:
        return f"token:{token.name}", RATE_LIMIT_AUTHENTICATED
    return f"ip:{request.remote}", RATE_LIMIT_ANONYMOUS


def _state_filter(request: web.Request) -> frozenset[str]:
    state = request.query.get("state", "open")
    return frozenset({"open", "closed"}) if state == "all" else frozenset({state})


def _newest_first(repo: Repository) -> list[Issue]:
    return sorted(repo.issues.values(), key=lambda i: i.number, reverse=True)


def _find_issue(call: Call, key: str) -> Issue | None:
    number = call.request.match_info[key]
    return call.repository.issues.get(int(number)) if number.isdecimal() else None


async def _json_object(request: web.Request) -> Json | web.Response:
    try:
        payload = json.loads(await request.read() or b"{}")
    except (ValueError, UnicodeDecodeError):
        return error(400, "Problems parsing JSON")
    if not isinstance(payload, dict):
        return error(400, "Problems parsing JSON")
    return payload


def _missing_field(resource: str, name: str, docs: str) -> web.Response:
    errors = [{"resource": resource, "code": "missing_field", "field": name}]
    return error(422, "Validation Failed", f"{DOCS_URL}/{docs}", errors=errors)


def _invalid_field(resource: str, name: str, docs: str) -> web.Response:
    errors = [{"resource": resource, "code": "invalid", "field": name}]
    return error(422, "Validation Failed", f"{DOCS_URL}/{docs}", errors=errors)
