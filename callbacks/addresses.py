"""Which addresses a customer's URL may reach: public ones only (no server-side request forgery).

A URL is checked when it is registered and again at each delivery, on the addresses the delivery
connects to (`GuardedResolver`): the name is resolved once, every address it gives must be
public, and the connection goes to those checked addresses, so a name whose DNS answer changes
between the check and the connection (rebinding) cannot point the request inside. TLS still
names the host (SNI and certificate check): only the lookup is ours.

CALLBACKS_ALLOW_PRIVATE_HOSTS lifts the rule, for development and tests, whose receivers listen
on 127.0.0.1.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any
from urllib.parse import urlsplit

from aiohttp.abc import ResolveResult
from aiohttp.resolver import ThreadedResolver
from django.conf import settings

SCHEMES = ("http", "https")
# Cloud metadata services: link-local already, named for clarity in the refusal.
METADATA_ADDRESSES = {
    ipaddress.ip_address("169.254.169.254"),
    ipaddress.ip_address("fd00:ec2::254"),
}


class AddressRefused(ValueError):
    """The URL may not be fetched; the message says why (in Spanish, the API's language)."""


def address_is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """True for an address on the public internet; False for loopback, private, link-local,
    CGNAT (100.64/10), multicast, reserved, unspecified, IPv6 ULA and link-local, and IPv4
    addresses mapped into IPv6 (or 6to4/Teredo-wrapped) that are any of those."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            # The connection goes to the IPv4 address: judge that one.
            return address_is_public(address.ipv4_mapped)
        embedded = address.sixtofour or (address.teredo[1] if address.teredo else None)
        if embedded is not None and not address_is_public(embedded):
            return False
    if address in METADATA_ADDRESSES:
        return False
    refused = (
        address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or (isinstance(address, ipaddress.IPv6Address) and address.is_site_local)
    )
    # is_global also leaves out what the flags above miss (100.64/10, 192.0.0/24, ...).
    return not refused and address.is_global


def private_hosts_allowed() -> bool:
    return bool(settings.CALLBACKS_ALLOW_PRIVATE_HOSTS)


def _refuse_unless_public(host: str, addresses: list[str]) -> None:
    if private_hosts_allowed():
        return
    for text in addresses:
        address = ipaddress.ip_address(text.split("%", 1)[0])
        if not address_is_public(address):
            raise AddressRefused(
                f"El host {host} resuelve a una dirección no pública ({address}): no se permite."
            )


def url_check(url: str) -> None:
    """Refuse a URL that is not http(s) or whose host resolves to a non-public address (or does
    not resolve). Resolves the name: call it outside of any transaction's hot path."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise AddressRefused("Solo se permiten URLs http o https.")
    host = parts.hostname
    if not host:
        raise AddressRefused("La URL no tiene host.")
    if parts.username or parts.password:
        raise AddressRefused("La URL no puede llevar usuario ni contraseña.")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise AddressRefused("El puerto de la URL no es válido.") from None
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise AddressRefused(f"No se pudo resolver el host {host}.") from None
    _refuse_unless_public(host, [str(info[4][0]) for info in infos])


def literal_address_check(host: str) -> None:
    """For a URL whose host is an IP address (no lookup happens: the resolver never sees it)."""
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return
    _refuse_unless_public(host, [host.strip("[]")])


class GuardedResolver(ThreadedResolver):
    """aiohttp's resolver, refusing names with a non-public address: the connector connects only
    to the addresses returned here, the ones that were checked."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await super().resolve(host, port, family)
        _refuse_unless_public(host, [str(result["host"]) for result in results])
        return results

    def __repr__(self) -> str:
        return "GuardedResolver()"


def refused_error(error: BaseException) -> AddressRefused | None:
    """The AddressRefused that `error` (as aiohttp wraps it) carries, if any."""
    seen: set[int] = set()
    current: Any = error
    while current is not None and id(current) not in seen:
        if isinstance(current, AddressRefused):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__ or getattr(current, "os_error", None)
    return None
