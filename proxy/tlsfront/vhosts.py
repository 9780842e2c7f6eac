"""Which vhost serves a connection: by the local address and port, as mod_ssl did before SNI.

Theory of operation
-------------------
Every vhost has one `listen` address, an exact IP or `*` (all local addresses),
and a port. A connection that arrived on local address A, port P is served by
the vhosts listening on exactly A:P if there are any, else by those on `*:P`
(Apache's rule: the most specific address wins). Within that group:

- a TLS group holds exactly one vhost: its certificate must be chosen before
  the handshake, and so before any Host header could be read (the mod_ssl
  FAQ's "chicken and egg"); the SNI name is deliberately ignored;
- a plain-HTTP group may hold several vhosts told apart by the Host header
  (name-based virtual hosting), the first one in the file being the default.

A group mixing TLS and plain vhosts is refused: the same bytes cannot be both.

`bind_addresses()` lists the sockets to open. When a port has a `*` vhost,
the exact IPv4 addresses on that port are served by the same wildcard socket
(Linux refuses to bind 0.0.0.0:P beside 127.0.0.1:P), and the local address
the client connected to (`transport.getHost()`) picks the vhost. `*` is bound
as 0.0.0.0, so IPv6 addresses keep sockets of their own.
"""

from __future__ import annotations

import fnmatch
import ipaddress
from collections import defaultdict
from typing import Iterable

from .errors import Problem
from .model import WILDCARD, Address, VHost

FAQ_REASON = (
    "the certificate is chosen during the TLS handshake, before any Host header can be read, "
    "so only the address and port can tell TLS vhosts apart (mod_ssl FAQ: name-based virtual "
    "hosting is impossible with SSL)"
)
FAQ_WORKAROUNDS = (
    "give each TLS vhost its own IP address (e.g. 127.0.0.1:443 and 127.0.0.2:443) "
    "or its own port (e.g. *:443 and *:8443)"
)


class VHostConflict(ValueError):
    """The vhosts cannot coexist; `problems` say which and why (key paths without the file)."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n\n".join(str(p) for p in problems))


def normalize_ip(ip: str) -> str:
    """'::ffff:127.0.0.1' -> '127.0.0.1'; canonical text for any IP; other text unchanged."""
    try:
        addr = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return ip
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped)
    return str(addr)


def host_from_header(host_header: str | bytes | None) -> str | None:
    """The name part of a Host header, lower case, without port or trailing dot."""
    if host_header is None:
        return None
    if isinstance(host_header, bytes):
        host_header = host_header.decode("latin-1")
    host = host_header.strip().lower()
    if host.startswith("["):
        host = host[1:].split("]", 1)[0]
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.rstrip(".") or None


class VHostTable:
    """Address-based selection over a fixed list of vhosts (see the module docstring)."""

    def __init__(self, vhosts: Iterable[VHost]) -> None:
        self.vhosts: tuple[VHost, ...] = tuple(vhosts)
        self._groups: dict[Address, list[VHost]] = defaultdict(list)
        for v in self.vhosts:
            self._groups[v.listen].append(v)
        problems = self._conflicts()
        if problems:
            raise VHostConflict(problems)

    def _conflicts(self) -> list[Problem]:
        problems = []
        for address, group in self._groups.items():
            tls = [v for v in group if v.is_tls]
            plain = [v for v in group if not v.is_tls]
            if len(tls) > 1:
                first = tls[0]
                for other in tls[1:]:
                    problems.append(Problem(
                        f"vhost[{other.index}].listen",
                        f"{address} is already the address of TLS vhost[{first.index}] "
                        f"({first.server_name}); two TLS vhosts cannot share an IP:PORT, because "
                        + FAQ_REASON,
                        FAQ_WORKAROUNDS,
                    ))
            if tls and plain:
                t = tls[0]
                for p in plain:
                    later, earlier = (p, t) if p.index > t.index else (t, p)
                    problems.append(Problem(
                        f"vhost[{later.index}].listen",
                        f"{address} is used by TLS vhost[{t.index}] and plain-HTTP vhost[{p.index}]; "
                        f"one port speaks either TLS or plain HTTP (vhost[{earlier.index}] came first)",
                        "give the plain-HTTP vhost another port (e.g. :80 beside :443)",
                    ))
        return problems

    def bind_addresses(self) -> list[Address]:
        """Distinct addresses to listen on, in file order; `*:P` absorbs every `IP:P`."""
        wild_ports = {a.port for a in self._groups if a.is_wildcard}
        out: list[Address] = []
        for v in self.vhosts:
            a = v.listen
            # The data path binds `*` as 0.0.0.0 (IPv4): an IPv6 address keeps its own socket
            # (an AF_INET6 socket on [::1]:P coexists with 0.0.0.0:P).
            if not a.is_wildcard and a.port in wild_ports and ":" not in a.host:
                a = Address(WILDCARD, a.port)
            if a not in out:
                out.append(a)
        return out

    def group_for(self, local_ip: str, port: int) -> list[VHost]:
        """The vhosts that share the address a connection arrived on (exact before wildcard)."""
        exact = self._groups.get(Address(normalize_ip(local_ip), port))
        if exact:
            return exact
        return self._groups.get(Address(WILDCARD, port), [])

    def tls_for(self, local_ip: str, port: int) -> VHost | None:
        """The TLS vhost for a connection on local_ip:port, or None when that address is plain."""
        group = self.group_for(local_ip, port)
        return group[0] if group and group[0].is_tls else None

    def plain_for(self, local_ip: str, port: int, host_header: str | bytes | None) -> VHost | None:
        """The plain vhost for a request: by Host among that address's vhosts, else the first."""
        group = self.group_for(local_ip, port)
        if not group or group[0].is_tls:
            return None
        name = host_from_header(host_header)
        if name is not None:
            for v in group:
                if v.server_name.lower() == name:
                    return v
            for v in group:
                # ServerAlias accepts * and ? wildcards (e.g. "*.example.com").
                if any(fnmatch.fnmatchcase(name, a.lower()) for a in v.server_aliases):
                    return v
        return group[0]
