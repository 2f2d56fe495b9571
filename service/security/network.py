"""Who is asking and by which name: client addresses behind proxies, and allowed ``Host`` names.

Nothing here knows about Tornado: headers in, a verdict out.

**Client address.** ``X-Forwarded-For`` and ``X-Real-Ip`` are whatever the sender
wrote, so they are believed only when the TCP peer is one of
``server.trusted_proxies``. The chain is read from the right: each proxy appends
the address it saw, so the rightmost address that is not itself a trusted proxy
is the client; everything left of it was written by the client and may be
forged. ``X-Real-Ip`` is used only when no ``X-Forwarded-For`` came.

**Host names (DNS rebinding).** A web page on ``evil.example`` can make its own
name resolve to this service's internal address; the browser then treats the
service as same-origin with the attacker's page and sends ``Host: evil.example``.
With ``server.allowed_hosts`` set, a request whose ``Host`` is not listed is
refused. A ``Host`` that is an IP address is always accepted: rebinding needs a
name the attacker controls, so it can never produce one, while Kubernetes
probes and Prometheus address a pod by its IP.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# The header of a client behind many proxies is still short; a longer one is ignored.
MAX_FORWARDED_ENTRIES = 32
# A CSP source expression for who may frame the pages: scheme://host[:port], host may
# start with "*.". Nothing else: the value goes verbatim into a response header.
FRAME_ANCESTOR = re.compile(r"https?://(\*\.)?[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*(:\d{1,5})?")


def parse_address(text: str) -> IPAddress | None:
    """An IP address (IPv6 brackets and an IPv4-mapped prefix removed), or None."""
    text = text.strip().removeprefix("[").removesuffix("]")
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def parse_network(text: str) -> IPNetwork:
    """``10.0.0.0/8``, ``fd00::/8`` or a single address; ValueError if it is neither."""
    return ipaddress.ip_network(text.strip(), strict=False)


class TrustedProxies:
    """The peers whose forwarding headers are believed."""

    def __init__(self, networks: Iterable[str] = ()) -> None:
        self.networks: tuple[IPNetwork, ...] = tuple(parse_network(n) for n in networks)

    def __bool__(self) -> bool:
        return bool(self.networks)

    def trusts(self, address: str | IPAddress | None) -> bool:
        if not self.networks or address is None:
            return False
        parsed = parse_address(address) if isinstance(address, str) else address
        return parsed is not None and any(parsed in network for network in self.networks)

    def client_address(self, peer: str, headers: Mapping[str, str]) -> str:
        """The address of the client behind the proxies, or ``peer`` if it is not a proxy."""
        if not self.trusts(peer):
            return peer
        forwarded = headers.get("X-Forwarded-For")
        if forwarded:
            entries = [e for e in forwarded.split(",") if e.strip()]
            if not entries or len(entries) > MAX_FORWARDED_ENTRIES:
                return peer
            client = peer
            for entry in reversed(entries):
                address = parse_address(entry)
                if address is None:
                    return client  # garbage from further left: stop at the last good hop
                client = str(address)
                if not self.trusts(address):
                    return client
            return client  # every hop is a proxy of ours: the leftmost is the client
        real = parse_address(headers.get("X-Real-Ip", ""))
        return str(real) if real is not None else peer

    def client_protocol(self, peer: str, headers: Mapping[str, str], default: str) -> str:
        """``https`` when a trusted proxy says the client used TLS (``X-Forwarded-Proto``)."""
        if not self.trusts(peer):
            return default
        said = headers.get("X-Forwarded-Proto") or headers.get("X-Scheme") or ""
        proto = said.split(",")[-1].strip().lower()
        return proto if proto in ("http", "https") else default


def host_name(host_header: str) -> str:
    """The name part of a ``Host`` header: no port, lower case, no trailing dot."""
    host = host_header.strip().lower()
    if host.startswith("["):  # [v6]:port
        return host[1 : host.find("]")] if "]" in host else host
    if host.count(":") == 1:
        host = host.partition(":")[0]
    return host.rstrip(".")


def valid_host_pattern(pattern: str) -> bool:
    """``name.example.com`` or ``*.example.com``: letters, digits, dots and dashes."""
    name = pattern.removeprefix("*.")
    labels = name.split(".")
    return bool(name) and all(
        label and len(label) <= 63 and all((c.isascii() and c.isalnum()) or c == "-" for c in label)
        for label in labels
    )


def valid_frame_ancestor(origin: str) -> bool:
    return FRAME_ANCESTOR.fullmatch(origin) is not None


class HostPolicy:
    """Which ``Host`` names the service answers to; everything when none are listed."""

    def __init__(self, allowed: Iterable[str] = ()) -> None:
        names = [a.strip().lower().rstrip(".") for a in allowed]
        self.enabled = bool(names)
        self.exact = {n for n in names if not n.startswith("*.")}
        self.suffixes = tuple(n[1:] for n in names if n.startswith("*."))  # ".example.com"

    def allows(self, host_header: str | None) -> bool:
        if not self.enabled or not host_header:
            # No Host at all is HTTP/1.0 or a hand-made request, never a browser.
            return True
        name = host_name(host_header)
        if parse_address(name) is not None:
            return True
        return name in self.exact or any(name.endswith(s) for s in self.suffixes)
