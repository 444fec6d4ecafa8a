"""Where the worker may send: public addresses, and the private ranges an operator allows.

Both the configuration check (readmodel.channels) and the check at send time
(activities.outbound) ask this module, so a URL accepted at configuration is refused at send
time only when its name has come to resolve somewhere else.

Numeric hosts are read the way the C resolver reads them (``inet_aton``: one to four parts,
each decimal, octal with a leading 0 or hexadecimal with 0x, the last filling the remaining
bytes), so ``127.1``, ``0177.0.0.1``, ``0x7f.1`` and ``2130706433`` are all 127.0.0.1 here
as they are to ``getaddrinfo``. Ranges are listed explicitly rather than taken from
``ipaddress``'s ``is_global`` alone: before Python 3.12.4 that calls ``::127.0.0.1`` and
``64:ff9b::127.0.0.1`` global.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network


class RefusedAddress(ValueError):
    """A host that is, or resolves to, an address outbound requests may not reach."""

    def __init__(self, host: str, reason: str) -> None:
        super().__init__(f"{host} is not a public address ({reason})")
        self.host = host
        self.reason = reason


_V4_REFUSED: tuple[tuple[IPv4Network, str], ...] = tuple(
    (IPv4Network(net), reason)
    for net, reason in (
        ("0.0.0.0/8", "unspecified"),
        ("10.0.0.0/8", "private"),
        ("100.64.0.0/10", "shared address space (CGNAT)"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("172.16.0.0/12", "private"),
        ("192.0.0.0/24", "reserved"),
        ("192.0.2.0/24", "documentation"),
        ("192.88.99.0/24", "reserved"),
        ("192.168.0.0/16", "private"),
        ("198.18.0.0/15", "benchmarking"),
        ("198.51.100.0/24", "documentation"),
        ("203.0.113.0/24", "documentation"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved"),
    )
)

_V6_MAPPED = IPv6Network("::ffff:0:0/96")
_V6_NAT64 = IPv6Network("64:ff9b::/96")
_V6_REFUSED: tuple[tuple[IPv6Network, str], ...] = tuple(
    (IPv6Network(net), reason)
    for net, reason in (
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("::/96", "reserved (IPv4-compatible)"),
        ("64:ff9b:1::/48", "private (local-use NAT64)"),
        ("::/8", "reserved"),
        ("100::/64", "reserved (discard)"),
        ("2001::/32", "reserved (Teredo)"),
        ("2001::/23", "reserved"),
        ("2001:db8::/32", "documentation"),
        ("3fff::/20", "documentation"),
        ("fc00::/7", "private (unique local)"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "private (site-local)"),
        ("ff00::/8", "multicast"),
    )
)

_PART = re.compile(r"0[xX][0-9a-fA-F]*|0[0-7]*|[1-9][0-9]*")
_NUMERIC_LOOKING = re.compile(r"[0-9][0-9a-fA-FxX]*(\.[0-9][0-9a-fA-FxX]*)*\.?")


def numeric_host(host: str) -> IPAddress | None:
    """The address a numeric host spells, in any notation the resolver accepts; None for a
    name. A host that looks numeric but is no valid address is refused outright, since
    resolvers differ on what they make of it."""
    bare = host.strip().removeprefix("[").removesuffix("]")
    try:
        return ipaddress.ip_address(bare)
    except ValueError:
        pass
    if not _NUMERIC_LOOKING.fullmatch(bare):
        return None
    parts = bare.removesuffix(".").split(".")
    if len(parts) > 4 or not all(_PART.fullmatch(p) for p in parts):
        raise RefusedAddress(host, "not a valid numeric address")
    values = [
        int(p, 16) if p[:2].lower() == "0x" else int(p, 8 if p[:1] == "0" else 10) for p in parts
    ]
    *leading, last = values
    if any(v > 0xFF for v in leading) or last >= 256 ** (5 - len(values)):
        raise RefusedAddress(host, "not a valid numeric address")
    number = 0
    for v in leading:
        number = number << 8 | v
    number = number << 8 * (5 - len(values)) | last
    return IPv4Address(number)


def _v4_refusal(addr: IPv4Address) -> str | None:
    for net, reason in _V4_REFUSED:
        if addr in net:
            return reason
    return None if addr.is_global else "not global"


def address_refusal(addr: IPAddress) -> str | None:
    """Why an address is not public, or None when it is. IPv4 addresses embedded in IPv6
    (mapped, 6to4, NAT64) are judged as the IPv4 address they lead to."""
    if isinstance(addr, IPv4Address):
        return _v4_refusal(addr)
    if addr in _V6_MAPPED or addr in _V6_NAT64 or addr.sixtofour is not None:
        embedded = addr.sixtofour or IPv4Address(addr.packed[-4:])
        reason = _v4_refusal(embedded)
        return None if reason is None else f"embeds {embedded}: {reason}"
    for net, reason in _V6_REFUSED:
        if addr in net:
            return reason
    return None if addr.is_global else "not global"


def parse_allow(raw: str) -> tuple[IPNetwork, ...]:
    """Comma-separated CIDRs, e.g. ``10.20.0.0/16,192.168.5.0/24``; empty allows none."""
    nets: list[IPNetwork] = []
    for item in raw.split(","):
        if item.strip():
            try:
                nets.append(ipaddress.ip_network(item.strip()))
            except ValueError as exc:
                raise ValueError(f"outbound allow-list entry {item.strip()!r}: {exc}") from exc
    return tuple(nets)


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address ``getaddrinfo`` gives for a host, in its order. Blocking: call it from
    a thread. Tests replace this function to make a name resolve where they want."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    found: list[IPAddress] = []
    for *_, sockaddr in infos:
        addr = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if addr not in found:
            found.append(addr)
    return found


@dataclass(frozen=True)
class OutboundPolicy:
    """Public addresses pass; so do the ranges in ``allow`` (a closed network's own)."""

    allow: tuple[IPNetwork, ...] = ()

    def allows(self, addr: IPAddress) -> bool:
        mapped = addr.ipv4_mapped if isinstance(addr, IPv6Address) else None
        return any(addr in net or (mapped is not None and mapped in net) for net in self.allow)

    def check(self, host: str, addr: IPAddress) -> None:
        if self.allows(addr):
            return
        reason = address_refusal(addr)
        if reason is not None:
            raise RefusedAddress(host, f"{addr}, {reason}")

    def check_all(self, host: str, addresses: list[IPAddress]) -> list[IPAddress]:
        """The addresses, once every one of them is allowed: a name with one bad address
        could be steered to it, so one refuses the name."""
        if not addresses:
            raise RefusedAddress(host, "no address")
        for addr in addresses:
            self.check(host, addr)
        return addresses

    def addresses_for(self, host: str, port: int) -> list[IPAddress]:
        """Resolve (blocking) and check; raises RefusedAddress or OSError from the resolver."""
        addr = numeric_host(host)
        if addr is not None:
            return self.check_all(host, [addr])
        return self.check_all(host, resolve(host, port))
