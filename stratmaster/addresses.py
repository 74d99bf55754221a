"""The one address policy for connections a mission can aim (webhook targets, S3 source endpoints):
public unicast addresses only, unless the operator allows private ones. A name is resolved and
every address it gives is checked (no mixed answers); IPv6 forms that embed an IPv4 address are
checked as that address."""
from __future__ import annotations

import asyncio
import ipaddress
import socket


class TargetRefused(ValueError):
    """An address (or URL) a mission may not make the platform connect to."""


def _embedded_v4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped:
        return ip.ipv4_mapped
    if ip.sixtofour:
        return ip.sixtofour
    if ip.teredo:
        return ip.teredo[1]
    if ip in ipaddress.ip_network("64:ff9b::/96") or ip in ipaddress.ip_network("64:ff9b:1::/48"):  # NAT64
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def address_problem(address: str) -> str | None:
    """Why an IP address is not a public unicast address (None when it is)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return f"{address!r} is not an IP address"
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_v4(ip)
        if inner is not None:
            why = address_problem(str(inner))
            return f"{address} embeds {inner}: {why}" if why else None
    for attr, what in (("is_loopback", "loopback"), ("is_link_local", "link-local"), ("is_private", "a private range"),
                       ("is_multicast", "multicast"), ("is_unspecified", "unspecified"), ("is_reserved", "reserved")):
        if getattr(ip, attr):
            return f"{address} is {what}"
    if not ip.is_global:
        return f"{address} is not globally routable"
    return None


async def resolve_host(host: str, port: int, allow_private: bool, rule: str) -> list[str]:
    """The addresses of `host`, each checked unless `allow_private`. Raises TargetRefused (its
    message ends with `rule`, what is allowed and how to change it), or OSError when the name does
    not resolve."""
    try:
        addresses = [str(ipaddress.ip_address(host))]
    except ValueError:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except UnicodeError as exc:  # e.g. an empty label ("a..b"): the name itself is invalid, not the network
            raise TargetRefused(f"{host!r} is not a valid host name ({exc})") from None
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise OSError(f"{host} has no address")
    if not allow_private:
        for a in addresses:
            why = address_problem(a)
            if why:
                raise TargetRefused(f"{host} resolves to {why}; {rule}")
    return addresses
