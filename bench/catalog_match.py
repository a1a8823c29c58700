"""Micro-benchmark of provider catalog route matching (not a test): matches per second.

.venv/bin/python bench/catalog_match.py [--seconds 2]
"""

import argparse
import time

from tether.catalog import load_catalog

# (provider, method, host, path, query): a mix of shallow, deep, greedy, git and unknown requests.
REQUESTS = [
    ("github", "GET", "api.github.com", "/repos/acme/api/pulls/7", ""),
    ("github", "GET", "api.github.com", "/repos/acme/api/pulls/comments", ""),
    ("github", "POST", "api.github.com", "/repos/acme/api/issues/12/comments", ""),
    ("github", "PUT", "api.github.com", "/repos/acme/api/contents/src/pkg/module/file.py", ""),
    ("github", "GET", "api.github.com", "/repos/acme/api/commits/feature/login/status", ""),
    ("github", "GET", "github.com", "/acme/api.git/info/refs", "service=git-upload-pack"),
    ("github", "GET", "api.github.com", "/repos/acme/api/no-such-route/1", ""),
    ("slack", "POST", "slack.com", "/api/chat.postMessage", ""),
    ("google", "GET", "www.googleapis.com", "/drive/v3/files/abc123", "alt=media"),
    ("google", "POST", "sheets.googleapis.com", "/v4/spreadsheets/s1/values/Sheet1!A1:C9:append", ""),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()

    started = time.perf_counter()
    catalog = load_catalog()
    print(f"load_catalog: {(time.perf_counter() - started) * 1000:.1f} ms")

    calls = [(catalog.providers[p].match, (m, h, path, q)) for p, m, h, path, q in REQUESTS]
    matches = 0
    deadline = time.perf_counter() + args.seconds
    started = time.perf_counter()
    while time.perf_counter() < deadline:
        for match, request in calls:
            match(*request)
        matches += len(calls)
    elapsed = time.perf_counter() - started
    per_match_us = elapsed / matches * 1e6
    print(f"match: {matches / elapsed:,.0f} matches/s ({per_match_us:.2f} µs each, mix of {len(calls)})")


if __name__ == "__main__":
    main()
