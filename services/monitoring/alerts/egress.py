"""Where an alert webhook may go: the public internet only (docs/security.md, "Webhooks").

A webhook URL is a request the platform makes on a tenant's behalf from inside its network, so
it is checked twice: when a rule is written (the URL's form: scheme, no user-info, no internal
name, no address outside the public internet, none of the odd spellings resolvers accept such as
`0x7f000001` or `127.1`), and when it is sent (every address the name resolves to at that moment
must be public, and the connection goes to the address that was checked, so a DNS answer that
changes in between cannot point it inside). Redirects are never followed.

`EgressPolicy(allow_loopback=True)` lets the tests reach their own receiver on 127.0.0.1; it is a
constructor argument, not a setting: no configuration can turn it on.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# names that only mean something inside a network (RFC 6761, RFC 8375, Kubernetes, cloud DNS)
INTERNAL_SUFFIXES = (
    "localhost", ".localhost", ".local", ".internal", ".intranet", ".lan", ".home.arpa", ".svc",
    ".cluster.local", ".in-addr.arpa", ".ip6.arpa",
)  # fmt: skip
# IPv6 ranges that carry an IPv4 address or reach one (NAT64, 6to4, Teredo)
TRANSLATED = tuple(
    ipaddress.ip_network(n) for n in ("64:ff9b::/96", "64:ff9b:1::/48", "2002::/16", "2001::/32")
)
EXTRA_BLOCKED = tuple(ipaddress.ip_network(n) for n in ("100.64.0.0/10", "192.0.0.0/24", "198.18.0.0/15"))


class UnsafeWebhook(ValueError):
    """The URL, or what its name resolves to, is not on the public internet."""


@dataclass(frozen=True)
class EgressPolicy:
    allow_loopback: bool = False  # tests only: their receivers listen on 127.0.0.1


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str  # a hostname (IDNA) or an IP literal, without brackets
    port: int
    path: str  # path and query, as sent


def address_allowed(address: IPAddress, policy: EgressPolicy) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address_allowed(address.ipv4_mapped, policy)
        if any(address in net for net in TRANSLATED):
            return False
    if address.is_loopback:
        return policy.allow_loopback
    if any(address in net for net in EXTRA_BLOCKED if address.version == net.version):
        return False
    return address.is_global and not address.is_multicast


def check_url(url: str, policy: EgressPolicy) -> Target:
    """The URL's form (no resolution): raises UnsafeWebhook with a reason a user can act on."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise UnsafeWebhook("not a valid URL") from None
    if parts.scheme not in ("http", "https"):
        raise UnsafeWebhook("only http and https URLs are allowed")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise UnsafeWebhook("credentials in the URL are not allowed (use webhook_secret)")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise UnsafeWebhook("the URL has no host")
    try:
        literal: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        if not address_allowed(literal, policy):
            raise UnsafeWebhook("the address is not on the public internet")
    else:
        host = _public_name(host)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return Target(parts.scheme, host, port or (443 if parts.scheme == "https" else 80), path)


def _public_name(host: str) -> str:
    if _numeric_spelling(host):
        raise UnsafeWebhook("numeric host names such as 0x7f000001 or 127.1 are not allowed")
    try:
        name = host.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise UnsafeWebhook("the host name is not valid") from None
    if "." not in name or name.endswith(INTERNAL_SUFFIXES) or name in ("localhost",):
        raise UnsafeWebhook("internal host names are not allowed (use a public DNS name)")
    return name


def _numeric_spelling(host: str) -> bool:
    """What inet_aton (and so many resolvers) reads as an address: 2130706433, 0x7f.1, 0177.0.0.1."""
    try:
        socket.inet_aton(host)
    except OSError:
        return all(part.isdigit() or part.lower().startswith("0x") for part in host.split(".") if part)
    return True


def resolve(target: Target, policy: EgressPolicy) -> str:
    """The address to connect to, chosen now: every address the name has must be public (a
    name that also resolves inside the network is refused, not half-trusted)."""
    try:
        literal = ipaddress.ip_address(target.host)
    except ValueError:
        literal = None
    if literal is not None:
        return str(literal)
    try:
        answers = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as error:
        raise UnsafeWebhook(f"the host name does not resolve ({error})") from None
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in answers]
    if not addresses:
        raise UnsafeWebhook("the host name does not resolve")
    blocked = [a for a in addresses if not address_allowed(a, policy)]
    if blocked:
        raise UnsafeWebhook(f"the host name resolves to an address that is not public ({blocked[0]})")
    return str(addresses[0])
