"""SSRF guard: which destination addresses an agent must not reach by default."""

import contextlib
import ipaddress
from collections.abc import Iterable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_SHARED_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_UNIQUE_LOCAL = ipaddress.ip_network("fc00::/7")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def blocked_kind(ip: IPAddress) -> str | None:
    """Why `ip` is not a public destination ("loopback", "link-local", ...), or None if it is."""
    if isinstance(ip, ipaddress.IPv6Address):
        # An IPv4 address wrapped in IPv6 reaches the IPv4 host: judge that host.
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            return blocked_kind(embedded)
    checks = (
        (ip.is_loopback, "loopback"),
        (ip.is_link_local, "link-local"),
        (ip.is_unspecified, "unspecified"),
        (ip.is_multicast, "multicast"),
        (ip in _SHARED_CGNAT, "shared address space (CGNAT)"),
        (ip in _UNIQUE_LOCAL, "unique-local"),
        (isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local, "site-local"),
        (ip.is_private, "private"),
        (ip.is_reserved, "reserved"),
        (not ip.is_global, "not globally routable"),
    )
    return next((kind for blocked, kind in checks if blocked), None)


def blocked_destination(host: str, resolved: Iterable[IPAddress]) -> str | None:
    """The deny reason ("code: text") when any address of `host` (its resolved addresses, and the host
    itself if it is an IP literal) is blocked or there is no address to judge; None when all are public."""
    addresses = list(resolved)
    with contextlib.suppress(ValueError):  # not an IP literal
        addresses.append(ipaddress.ip_address(host))
    if not addresses:
        return f"unresolved_host: {host} has no resolved address to check"
    for ip in addresses:
        kind = blocked_kind(ip)
        if kind is not None:
            return f"private_address: {host} resolves to {ip} ({kind})"
    return None
