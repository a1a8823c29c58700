#!/usr/bin/env python3
"""Generate tether/catalog/data/github.json from GitHub's server-to-server permissions map.

    scripts/gen_github_catalog.py [SOURCE] [--output FILE] [--check]

SOURCE defaults to ../shared/data/github-server-to-server-permissions.json next to the repository
(a copy of github/docs src/github-apps/data/fpt-2022-11-28/server-to-server-permissions.json).
The output is deterministic: the committed file must be what this script writes, byte for byte
(``--check`` exits 1 when it is not). Only the standard library is used.

Mapping rules (see also the "notes" in the output):
- only entries with "server-to-server": true (installation tokens);
- tether scope = "<permission>:<access>", except GitHub's "contents" permission is called "repo";
- access levels read < write < admin: a scope implies the lower levels of its permission;
- an endpoint listed under several permissions is permitted by any of them, except that "metadata"
  is dropped from endpoints that also need other permissions (GitHub's docs pipeline does the same:
  "metadata" is granted with every repository permission, and listing it there would let the
  always-granted metadata:read open write endpoints), and a permission that only ever comes
  together with a repeated one is dropped (see permitting());
- metadata:read is implicit (GitHub grants it to every installation token);
- native permission of "<permission>:<access>" is {"<permission>": "<access>"} (App token API);
- git smart HTTP on github.com, release asset uploads on uploads.github.com and a few
  permission-free REST endpoints are added by hand (EXTRA_ROUTES).
"""

import argparse
import hashlib
import json
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SOURCE = REPO_ROOT.parent / "shared" / "data" / "github-server-to-server-permissions.json"
DEFAULT_OUTPUT = REPO_ROOT / "tether" / "catalog" / "data" / "github.json"
SOURCE_ORIGIN = "github/docs src/github-apps/data/fpt-2022-11-28/server-to-server-permissions.json"

API_HOST = "api.github.com"
GIT_HOST = "github.com"
UPLOADS_HOST = "uploads.github.com"
LEVELS = ("read", "write", "admin")
RENAMED = {"contents": "repo"}  # GitHub permission -> tether resource name
IMPLICIT = "metadata:read"
# Parameters whose values contain slashes: file paths, git refs, branch and tag names, "base...head".
GREEDY_PARAMS = ("basehead", "branch", "path", "ref", "tag")

Route = dict[str, Any]


def _route(host: str, method: str, path: str, scopes: list[str], **extra: Any) -> Route:
    optional = {key: value for key, value in extra.items() if value}  # omit empty "query" and the like
    return {"hosts": [host], "methods": [method], "path": path, "scopes": sorted(scopes), **optional}


# Git smart HTTP on github.com: (method, path, required query, scope); clone/fetch read, push write.
GIT_ROUTES = [
    ("GET", "/{owner}/{repo}/info/refs", {"service": "git-upload-pack"}, "repo:read"),
    ("GET", "/{owner}/{repo}/info/refs", {"service": "git-receive-pack"}, "repo:write"),
    ("POST", "/{owner}/{repo}/git-upload-pack", {}, "repo:read"),
    ("POST", "/{owner}/{repo}/git-receive-pack", {}, "repo:write"),
]
PERMISSION_FREE_PATHS = ("/", "/meta", "/octocat", "/rate_limit", "/versions", "/zen")  # no customer data

EXTRA_ROUTES: list[Route] = [
    # Git clients may send "{repo}" as "name.git".
    *(
        _route(GIT_HOST, method, path, [scope], query=query, strip_suffix={"repo": ".git"})
        for method, path, query, scope in GIT_ROUTES
    ),
    # Release asset upload (the upload_url of a release).
    _route(UPLOADS_HOST, "POST", "/repos/{owner}/{repo}/releases/{release_id}/assets", ["repo:write"]),
    # The repository root listing: "/contents/{path}" with an empty path.
    _route(API_HOST, "GET", "/repos/{owner}/{repo}/contents", ["repo:read"]),
    # Repositories the installation can access: repository metadata.
    _route(API_HOST, "GET", "/installation/repositories", [IMPLICIT]),
    *(_route(API_HOST, "GET", path, []) for path in PERMISSION_FREE_PATHS),
]


def tether_scope(permission: str, access: str) -> str:
    return f"{RENAMED.get(permission, permission)}:{access}"


def endpoint_scopes(source: dict[str, Any]) -> dict[tuple[str, str], set[str]]:
    """For each (METHOD, path) an installation token may call, the tether scopes that permit it."""
    entries: dict[tuple[str, str], list[tuple[str, str, bool]]] = defaultdict(list)
    for permission, spec in source.items():
        for entry in spec["permissions"]:
            if entry["server-to-server"] is True:
                if entry["access"] not in LEVELS:
                    raise SystemExit(f"unexpected access level {entry['access']!r} under {permission!r}")
                endpoint = (entry["verb"].upper(), entry["requestPath"])
                entries[endpoint].append((permission, entry["access"], bool(entry["additional-permissions"])))
    return {endpoint: {tether_scope(*p) for p in permitting(listed)} for endpoint, listed in entries.items()}


def permitting(listed: list[tuple[str, str, bool]]) -> set[tuple[str, str]]:
    """The (permission, access) pairs any one of which permits an endpoint.

    The source flattens GitHub's permission sets (OR of ANDs) into one list per endpoint. A pair
    listed k >= 2 times sits in k distinct sets; when the other entries number at most k - 1, every
    set contains it and one set is it alone (e.g. contents:write OR contents:write + workflows:write),
    so it is the only pair that permits the endpoint by itself.
    """
    pairs = [(p, a) for p, a, additional in listed if not (p == "metadata" and additional)]
    pairs = pairs or [(p, a) for p, a, _ in listed]
    ((top, count),) = Counter(pairs).most_common(1)
    if count >= 2 and len(pairs) - count <= count - 1:
        return {top}
    return set(pairs)


def least_scopes(scopes: set[str]) -> list[str]:
    """Drop a scope when a lower level of the same permission is in the set (it permits already)."""

    def implied_by_lower(scope: str) -> bool:
        resource, access = scope.split(":")
        return any(f"{resource}:{lower}" in scopes for lower in LEVELS[: LEVELS.index(access)])

    return sorted(s for s in scopes if not implied_by_lower(s))


def scope_table(names: set[str]) -> dict[str, Any]:
    table = {}
    for name in sorted(names):
        resource, access = name.split(":")
        permission = next((p for p, r in RENAMED.items() if r == resource), resource)
        lower = [f"{resource}:{level}" for level in LEVELS[: LEVELS.index(access)]]
        table[name] = {"native": {permission: access}, "implies": [s for s in lower if s in names]}
    return table


def build(source_bytes: bytes) -> dict[str, Any]:
    source = json.loads(source_bytes)
    routes = [
        _route(API_HOST, method, path, least_scopes(scopes))
        for (method, path), scopes in endpoint_scopes(source).items()
    ]
    routes += EXTRA_ROUTES
    routes.sort(key=lambda r: (r["hosts"], r["path"], r["methods"], sorted(r.get("query", {}).items())))
    # Every permission an installation token can hold, also those that open no route on their own
    # (workflows:write is needed to push workflow files but only ever accompanies repo:write).
    vocabulary = {scope for route in routes for scope in route["scopes"]} | {IMPLICIT}
    vocabulary |= {
        tether_scope(permission, entry["access"])
        for permission, spec in source.items()
        for entry in spec["permissions"]
        if entry["server-to-server"] is True
    }
    return {
        "format": 1,
        "provider": "github",
        "hosts": sorted([API_HOST, GIT_HOST, UPLOADS_HOST]),
        "greedy_params": list(GREEDY_PARAMS),
        "implicit_scopes": [IMPLICIT],
        "scopes": scope_table(vocabulary),
        "routes": routes,
        "source": {
            "file": DEFAULT_SOURCE.name,
            "origin": SOURCE_ORIGIN,
            "sha256": hashlib.sha256(source_bytes).hexdigest(),
        },
        "notes": [
            "Generated by scripts/gen_github_catalog.py; do not edit by hand.",
            "Only server-to-server (installation token) entries are used.",
            "Scope '<permission>:<access>'; GitHub's 'contents' permission is called 'repo'.",
            "A route lists the least scopes that permit it; any one of them suffices.",
            "'metadata' is dropped from routes that also need another permission.",
            "A permission listed only alongside a repeated one (workflows with contents) is dropped.",
            "Git smart HTTP, release asset uploads and permission-free endpoints are added by hand.",
        ],
    }


def render(document: dict[str, Any]) -> str:
    """Sorted JSON with one line per scope and per route, so diffs stay readable."""
    parts = []
    for key in sorted(document):
        value = document[key]
        if key == "routes":
            body = "[\n" + ",\n".join(f"  {json.dumps(r, sort_keys=True)}" for r in value) + "\n ]"
        elif key == "scopes":
            lines = (
                f"  {json.dumps(name)}: {json.dumps(spec, sort_keys=True)}" for name, spec in value.items()
            )
            body = "{\n" + ",\n".join(lines) + "\n }"
        else:
            body = json.dumps(value, sort_keys=True)
        parts.append(f" {json.dumps(key)}: {body}")
    return "{\n" + ",\n".join(parts) + "\n}\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("source", nargs="?", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if OUTPUT differs from what would be written"
    )
    args = parser.parse_args(argv)
    try:
        source_bytes = args.source.read_bytes()
    except OSError as error:
        print(f"gen_github_catalog: cannot read {args.source}: {error.strerror}", file=sys.stderr)
        return 2
    document = build(source_bytes)
    text = render(document)
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.exists() else None
        if current != text:
            print(
                f"gen_github_catalog: {args.output} is out of date; run {Path(__file__).name}",
                file=sys.stderr,
            )
            return 1
        return 0
    args.output.write_text(text, encoding="utf-8")
    print(f"wrote {args.output} ({len(document['routes'])} routes, {len(document['scopes'])} scopes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
