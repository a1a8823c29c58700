"""Git smart HTTP like github.com, served by the real `git http-backend` CGI behind an aiohttp app.

Bare repositories live at `<root>/<owner>/<repo>.git` and are reachable as `/<owner>/<repo>.git/...`
and `/<owner>/<repo>/...`. Authentication is what GitHub accepts for installation tokens: Basic with
user `x-access-token` and the token as password; otherwise 401 with `WWW-Authenticate: Basic
realm="GitHub"`. Fetching needs `contents: read`, pushing (`git-receive-pack`, including its
`info/refs` advertisement) needs `contents: write`; a token without it gets 403.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath

from aiohttp import web
from multidict import CIMultiDict

from tether.sandbox.auth import SandboxToken, TokenRegistry, grants, parse_authorization
from tether.sandbox.recording import RecordedRequest, recording_middleware

log = logging.getLogger(__name__)

GIT_USERNAME = "x-access-token"
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_SUBPATH = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_./-]*$")
_CHUNK = 64 * 1024
_BAD_CREDENTIALS = "Invalid username or token. Password authentication is not supported for Git operations.\n"
# Headers the CGI may emit that aiohttp must compute itself for the client connection.
_NOT_FORWARDED = frozenset({"status", "content-length", "transfer-encoding", "connection", "keep-alive"})
# CGI passes request headers as HTTP_*; credentials stay out of the backend's environment.
_NOT_PASSED_TO_CGI = frozenset({"authorization", "proxy-authorization", "content-type", "content-length"})


class GitSandboxError(RuntimeError):
    pass


def git_http_backend() -> Path:
    """Path of `git-http-backend` in git's exec path."""
    try:
        exec_path = subprocess.run(
            ["git", "--exec-path"], capture_output=True, text=True, check=True, env=isolated_git_env()
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError) as exc:
        raise GitSandboxError(f"cannot run `git --exec-path` to find git-http-backend: {exc}") from exc
    backend = Path(exec_path) / "git-http-backend"
    if not os.access(backend, os.X_OK):
        raise GitSandboxError(f"git-http-backend is not an executable at {backend}")
    return backend


# Keeps the machine's and the user's git configuration out of the sandbox.
_GIT_ISOLATION = {"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_TERMINAL_PROMPT": "0"}


def isolated_git_env() -> dict[str, str]:
    """This process's environment without GIT_* variables and without user or system git config."""
    return {k: v for k, v in os.environ.items() if not k.startswith("GIT_")} | _GIT_ISOLATION


def _split_full_name(full_name: str) -> tuple[str, str]:
    owner, sep, name = full_name.partition("/")
    if not sep or not _NAME.match(owner) or not _NAME.match(name.removesuffix(".git")):
        raise ValueError(f"expected a repository as owner/name, got {full_name!r}")
    return owner, name.removesuffix(".git")


def init_bare_repo(
    root: Path,
    full_name: str,
    files: Mapping[str, str | bytes],
    *,
    branch: str = "main",
    message: str = "Initial commit",
) -> Path:
    """Creates `<root>/<owner>/<name>.git` with one commit on `branch` holding `files` (path -> content)."""
    owner, name = _split_full_name(full_name)
    repo = root / owner / f"{name}.git"
    if repo.exists():
        raise FileExistsError(f"repository {full_name} already exists at {repo}")
    repo.parent.mkdir(parents=True, exist_ok=True)
    env = isolated_git_env() | {
        "GIT_AUTHOR_NAME": "Sandbox",
        "GIT_AUTHOR_EMAIL": "sandbox@example.com",
        "GIT_COMMITTER_NAME": "Sandbox",
        "GIT_COMMITTER_EMAIL": "sandbox@example.com",
    }

    def git(*args: str) -> None:
        subprocess.run(["git", *args], check=True, capture_output=True, env=env)

    git("init", "--quiet", "--bare", f"--initial-branch={branch}", str(repo))
    with tempfile.TemporaryDirectory() as work:
        for relative, content in files.items():
            path = PurePosixPath(relative)
            if path.is_absolute() or ".." in path.parts or not path.parts:
                raise ValueError(f"file path must be relative and inside the repository: {relative!r}")
            target = Path(work, *path.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content.encode() if isinstance(content, str) else content)
        tree = ("--git-dir", str(repo), "--work-tree", work)
        git(*tree, "add", "--all")
        git(*tree, "commit", "--quiet", "--allow-empty", "-m", message)
    return repo


class GitSandbox:
    """Smart HTTP over `git http-backend`: serve `app`; read `requests` from tests (bodies not kept)."""

    def __init__(self, root: Path, tokens: Iterable[SandboxToken] | TokenRegistry) -> None:
        self.root = root
        # A shared registry lets tokens minted by the GitHub sandbox's App endpoints work here too.
        self.tokens = tokens if isinstance(tokens, TokenRegistry) else TokenRegistry(tokens)
        self.backend = git_http_backend()
        self.requests: list[RecordedRequest] = []
        self.app = web.Application(
            middlewares=[recording_middleware(self.tokens, self.requests, keep_body=False)]
        )
        self.app.router.add_route("*", "/{owner}/{repo}/{rest:.+}", self._handle)

    def _authenticate(self, request: web.Request) -> SandboxToken | None:
        credential = parse_authorization(request.headers.get("Authorization"))
        if credential is None or credential.scheme.lower() != "basic" or credential.username != GIT_USERNAME:
            return None
        return self.tokens.lookup(credential)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        owner, name, rest = (
            request.match_info["owner"],
            request.match_info["repo"].removesuffix(".git"),
            request.match_info["rest"],
        )
        if not (_NAME.match(owner) and _NAME.match(name) and _SUBPATH.match(rest)) or ".." in rest:
            return web.Response(status=404, text="Repository not found.\n")
        token = self._authenticate(request)
        if token is None:
            return web.Response(
                status=401,
                text=_BAD_CREDENTIALS,
                headers={"WWW-Authenticate": 'Basic realm="GitHub"'},
            )
        repo_dir = self.root / owner / f"{name}.git"
        if not token.can_access(f"{owner}/{name}") or not repo_dir.is_dir():
            return web.Response(status=404, text="Repository not found.\n")
        pushing = rest == "git-receive-pack" or (
            rest == "info/refs" and request.query.get("service") == "git-receive-pack"
        )
        if not grants(token.permissions, "contents", "write" if pushing else "read"):
            return web.Response(
                status=403, text=f"Permission to {owner}/{name}.git denied to {token.name}[bot].\n"
            )
        return await self._run_backend(request, f"/{owner}/{name}.git/{rest}", token)

    def _cgi_env(self, request: web.Request, path_info: str, token: SandboxToken) -> dict[str, str]:
        # A CGI gets a fresh environment: nothing of this process's (which may hold secrets) leaks in.
        env = _GIT_ISOLATION | {
            "PATH": os.environ.get("PATH", os.defpath),
            "GIT_PROJECT_ROOT": str(self.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            # Pushing over HTTP is off unless enabled; GitHub allows it to writers.
            "GIT_CONFIG_COUNT": "1",
            "GIT_CONFIG_KEY_0": "http.receivepack",
            "GIT_CONFIG_VALUE_0": "true",
            "GATEWAY_INTERFACE": "CGI/1.1",
            "SERVER_SOFTWARE": "tether-sandbox",
            "SERVER_PROTOCOL": f"HTTP/{request.version.major}.{request.version.minor}",
            "REQUEST_METHOD": request.method,
            "PATH_INFO": path_info,
            "QUERY_STRING": request.raw_path.partition("?")[2],
            "REMOTE_ADDR": request.remote or "",
            "REMOTE_USER": token.name,
            "CONTENT_TYPE": request.headers.get("Content-Type", ""),
        }
        if "Content-Length" in request.headers:
            env["CONTENT_LENGTH"] = request.headers["Content-Length"]
        for header in {h.lower() for h in request.headers} - _NOT_PASSED_TO_CGI:
            # e.g. HTTP_CONTENT_ENCODING (gzip request bodies), HTTP_GIT_PROTOCOL (protocol v2)
            env["HTTP_" + header.upper().replace("-", "_")] = ", ".join(request.headers.getall(header))
        return env

    async def _run_backend(
        self, request: web.Request, path_info: str, token: SandboxToken
    ) -> web.StreamResponse:
        process = await asyncio.create_subprocess_exec(
            str(self.backend),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self._cgi_env(request, path_info, token),
            cwd=self.root,
        )
        if process.stdin is None or process.stdout is None or process.stderr is None:
            raise GitSandboxError("git http-backend started without pipes")
        feeder = asyncio.create_task(_feed(request, process.stdin))
        stderr = asyncio.create_task(process.stderr.read())
        try:
            try:
                status, reason, headers = await _read_cgi_headers(process.stdout)
            except GitSandboxError as exc:
                log.error("git http-backend %s: %s", path_info, exc)
                if process.returncode is None:
                    process.kill()
                return web.Response(status=500, text="git http-backend failed\n")
            response = web.StreamResponse(status=status, reason=reason, headers=headers)
            await response.prepare(request)
            while chunk := await process.stdout.read(_CHUNK):
                await response.write(chunk)
            await feeder
            await response.write_eof()
            return response
        except BaseException:
            if process.returncode is None:
                process.kill()
            raise
        finally:
            feeder.cancel()
            returncode = await process.wait()
            errors = (await stderr).decode("utf-8", "replace").strip()
            if returncode != 0 or errors:
                log.warning("git http-backend %s exited %s: %s", path_info, returncode, errors)


async def _feed(request: web.Request, stdin: asyncio.StreamWriter) -> None:
    """Streams the request body to the CGI; EOF tells it the body ended (chunked requests have no length)."""
    try:
        async for chunk in request.content.iter_chunked(_CHUNK):
            stdin.write(chunk)
            await stdin.drain()
    except (BrokenPipeError, ConnectionResetError):
        pass  # the backend answered without reading the whole body, e.g. it refused the request
    finally:
        stdin.close()


async def _read_cgi_headers(stdout: asyncio.StreamReader) -> tuple[int, str | None, CIMultiDict[str]]:
    status, reason = 200, None
    headers: CIMultiDict[str] = CIMultiDict()
    while True:
        line = await stdout.readline()
        if not line:
            raise GitSandboxError("output ended before the end of the CGI headers")
        line = line.rstrip(b"\r\n")
        if not line:
            return status, reason, headers
        name, sep, value = line.decode("latin-1").partition(":")
        if not sep:
            raise GitSandboxError(f"malformed CGI header line {line[:100]!r}")
        name, value = name.strip(), value.strip()
        if name.lower() == "status":
            code, _, text = value.partition(" ")
            if not code.isdecimal():
                raise GitSandboxError(f"malformed CGI Status {value[:100]!r}")
            status, reason = int(code), text or None
        elif name.lower() not in _NOT_FORWARDED:
            headers.add(name, value)
