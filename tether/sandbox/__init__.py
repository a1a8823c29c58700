"""Local HTTPS servers that behave like the providers tether brokers (tests and `tether demo`)."""

from tether.sandbox.auth import Requirement, SandboxToken
from tether.sandbox.git import GitSandbox, init_bare_repo
from tether.sandbox.github import GitHubSandbox
from tether.sandbox.pki import DEFAULT_SERVER_NAMES, SandboxCA
from tether.sandbox.recording import RecordedRequest
from tether.sandbox.server import AsyncSandboxServer, SandboxServer

__all__ = [
    "DEFAULT_SERVER_NAMES",
    "AsyncSandboxServer",
    "GitHubSandbox",
    "GitSandbox",
    "RecordedRequest",
    "Requirement",
    "SandboxCA",
    "SandboxServer",
    "SandboxToken",
    "init_bare_repo",
]
