"""Matching primitives used by policies: name globs, host patterns, path templates, request paths."""

import fnmatch
import ipaddress
import re
from dataclasses import dataclass
from functools import cached_property

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CONTROL_OR_SPACE = re.compile(r"[\x00-\x20\x7f]")
_DNS_LABEL = re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)")
_TEMPLATE_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_UNRESERVED_ESCAPE = re.compile(r"%(2[dDeE]|3[0-9]|[46][1-9a-fA-F]|[57][0-9aA]|5[fF]|7[eE])")
_ANY_SUFFIX = "/**"


def validate_glob(pattern: str) -> str:
    """Return `pattern` if it is a well-formed fnmatch glob, else raise ValueError.

    fnmatch silently treats an unclosed '[' as a literal character, which hides typos such as
    "pr-[review-*"; a policy must say what it means, so that is an error here.
    """
    if not pattern:
        raise ValueError("glob must not be empty")
    if _CONTROL.search(pattern):
        raise ValueError(f"glob {pattern!r} contains a control character")
    i = 0
    while i < len(pattern):
        if pattern[i] == "[":
            j = i + 1
            if j < len(pattern) and pattern[j] == "!":
                j += 1
            if j < len(pattern) and pattern[j] == "]":  # a leading ']' is a member of the set
                j += 1
            close = pattern.find("]", j)
            if close == -1:
                raise ValueError(f"unbalanced '[' in glob {pattern!r}")
            i = close
        i += 1
    return pattern


def glob_matches(pattern: str, name: str) -> bool:
    return fnmatch.fnmatchcase(name, pattern)


@dataclass(frozen=True)
class HostPattern:
    """`api.example.com`, `*.example.com` (any subdomain, not the apex), `10.0.0.5`, `[fd00::1]`,
    each with an optional `:port`; without a port every port matches."""

    host: str  # lower case; for a wildcard the suffix after "*."
    wildcard: bool
    port: int | None

    def matches(self, host: str, port: int) -> bool:
        if self.port is not None and self.port != port:
            return False
        host = normalize_host(host)
        if self.wildcard:
            return host.endswith("." + self.host)
        return host == self.host


def normalize_host(host: str) -> str:
    """Lower-case, without the brackets of an IPv6 literal or the trailing dot of an absolute name."""
    host = host.strip().lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host.removesuffix(".")


def parse_host_pattern(text: str) -> HostPattern:
    raw = text.strip().lower()
    port: int | None = None
    if raw.startswith("["):  # [IPv6] or [IPv6]:port
        close = raw.find("]")
        if close == -1:
            raise ValueError(f"host {text!r}: missing ']' after IPv6 address")
        host, rest = raw[1:close], raw[close + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"host {text!r}: expected ':port' after ']'")
            port = _parse_port(text, rest[1:])
        _parse_ip(text, host, version=6)
        return HostPattern(host=host, wildcard=False, port=port)
    if raw.count(":") > 1:
        raise ValueError(f"host {text!r}: write an IPv6 address in brackets, e.g. [fd00::1]:443")
    host, colon, port_text = raw.partition(":")
    if colon:
        port = _parse_port(text, port_text)
    wildcard = host.startswith("*.")
    name = host.removeprefix("*.").removesuffix(".")
    if not wildcard and re.fullmatch(r"[0-9.]+", name):
        _parse_ip(text, name, version=4)
        return HostPattern(host=name, wildcard=False, port=port)
    if "*" in name:
        raise ValueError(f"host {text!r}: '*' is only allowed as a leading '*.' (e.g. *.example.com)")
    labels = name.split(".")
    if len(name) > 253 or not all(_DNS_LABEL.fullmatch(label) for label in labels):
        raise ValueError(f"host {text!r} is not a valid host name")
    return HostPattern(host=name, wildcard=wildcard, port=port)


def _parse_port(text: str, port_text: str) -> int:
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"host {text!r}: port must be a number from 1 to 65535")
    return int(port_text)


def _parse_ip(text: str, value: str, version: int) -> None:
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        raise ValueError(f"host {text!r}: {value!r} is not a valid IPv{version} address") from None
    if address.version != version:
        raise ValueError(f"host {text!r}: {value!r} is not a valid IPv{version} address")


@dataclass(frozen=True)
class PathTemplate:
    """A route template: literal segments, `{param}` for exactly one segment, and an optional trailing
    `/**` for any suffix (including none). A trailing slash on the request path is ignored."""

    template: str

    def __post_init__(self) -> None:
        if not self.template.startswith("/"):
            raise ValueError(f"path {self.template!r} must start with '/'")
        body = self.template.removesuffix(_ANY_SUFFIX).removesuffix("/")
        for segment in body.split("/")[1:]:
            if not segment:
                raise ValueError(f"path {self.template!r} has an empty segment")
            if "*" in segment:
                raise ValueError(f"path {self.template!r}: '**' is only allowed as the last segment")
            if _CONTROL_OR_SPACE.search(segment):
                raise ValueError(f"path {self.template!r} contains a space or control character")
            if re.search("[{}]", _TEMPLATE_PARAM.sub("", segment)):
                raise ValueError(f"path {self.template!r}: parameters look like {{name}}")

    @cached_property
    def regex(self) -> re.Pattern[str]:
        any_suffix = self.template.endswith(_ANY_SUFFIX)
        body = self.template.removesuffix(_ANY_SUFFIX) if any_suffix else self.template.removesuffix("/")
        # split() with a capturing group puts the parameter names at the odd indexes
        parts = _TEMPLATE_PARAM.split(body)
        pattern = "".join("[^/]+" if index % 2 else re.escape(part) for index, part in enumerate(parts))
        # Case-insensitive: providers such as GitHub treat owner and repository names so, and a deny
        # rule must not be dodged by changing case.
        return re.compile(f"{pattern}(?:/.*)?" if any_suffix else f"{pattern}/?", re.IGNORECASE)

    def matches(self, path: str) -> bool:
        return self.regex.fullmatch(path) is not None


def canonical_path(path: str) -> str:
    """The request path as rules and routes match it: unreserved percent-escapes decoded.

    Raises ValueError for paths that servers may interpret differently than a matcher would (dot
    segments, empty segments, backslashes, control characters): such paths could slip past a
    path-based rule, and real clients do not send them.
    """
    if not path.startswith("/"):
        raise ValueError("path does not start with '/'")
    if _CONTROL_OR_SPACE.search(path) or "\\" in path:
        raise ValueError("path contains a space, control character or backslash")
    decoded = _UNRESERVED_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), path)
    segments = decoded.split("/")[1:]
    if any(segment in (".", "..") for segment in segments):
        raise ValueError("path contains a '.' or '..' segment")
    if "" in segments[:-1]:
        raise ValueError("path contains an empty segment ('//')")
    return decoded
