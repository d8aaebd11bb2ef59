"""The caller's address: the socket's peer, or what trusted proxies say in front of it.

A reverse proxy appends the address it received a request from to ``limits.client_ip_header``
(``X-Forwarded-For``); whatever the client sent itself comes before that. Only entries added by
the proxies of ``limits.trusted_proxies`` are believed: from the peer leftwards, the client is
the first address that is not a trusted proxy. With none configured the peer is the client,
whatever the header says.

Serve's HTTP server (uvicorn, in Serve's proxy and, behind HAProxy, in the ingress replica) may
already have replaced the peer: when the peer is one uvicorn trusts (``FORWARDED_ALLOW_IPS``,
loopback by default) it reports the right-most header entry it does not trust instead, with
that entry's port (0 when it has none). ``ClientAddresses`` undoes that: a reported peer equal to
what uvicorn picks from the header was such a replacement; the real peer was one uvicorn trusts,
a trusted proxy here only if every address uvicorn trusts is one. Every peer uvicorn trusts and
this server does not then counts as one client, named by ``FORWARDED_ALLOW_IPS``'s value.
"""

from __future__ import annotations

import ipaddress
import os
from typing import Optional, Sequence

# NOTE(hubserve): uvicorn's own parsing, so that its replacement is recognised exactly as it made it.
from uvicorn.middleware.proxy_headers import _parse_host_port, _TrustedHosts

from hubserve.config.limits import LimitsConfig

#: uvicorn's ``forwarded_allow_ips`` when ``FORWARDED_ALLOW_IPS`` is not set.
UVICORN_DEFAULT_TRUST = "127.0.0.1,::1"


class ClientAddresses:
    """Finds the client address of requests under ``limits``.

    Args:
        limits: ``trusted_proxies`` and ``client_ip_header``.
        server_trust: what Serve's uvicorn trusts (default: ``FORWARDED_ALLOW_IPS``, else loopback).
    """

    def __init__(self, limits: LimitsConfig, server_trust: Optional[str] = None) -> None:
        self.header = limits.client_ip_header.lower()
        self.networks = [ipaddress.ip_network(entry) for entry in limits.trusted_proxies]
        self.server_trust = os.environ.get("FORWARDED_ALLOW_IPS", UVICORN_DEFAULT_TRUST) \
            if server_trust is None else server_trust
        self.server = _TrustedHosts(self.server_trust)
        literals = self.server.trusted_literals - {""}
        server_networks = [*map(ipaddress.ip_network, self.server.trusted_hosts), *self.server.trusted_networks]
        self.server_rewrites = self.server.always_trust or bool(literals or server_networks)
        self.server_trusted_here = not self.server.always_trust and not literals and all(
            any(net.version == ours.version and net.subnet_of(ours) for ours in self.networks)
            for net in server_networks)

    def trusted(self, host: str) -> bool:
        """Whether ``host`` is one of the trusted proxies."""
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self.networks)

    def of(self, peer: Optional[tuple[str, int]], forwarded: Sequence[str]) -> str:
        """The client address of a request from ``peer`` (as Serve reports it) with the values of
        its ``client_ip_header`` headers ``forwarded``."""
        joined = ", ".join(forwarded)
        hosts = [_parse_host_port(entry.strip())[0] for entry in joined.split(",")] if joined.strip() else []
        host, port = (peer[0], peer[1]) if peer else ("unknown", 0)
        if hosts and self.server_rewrites and self.server.get_trusted_client_address(joined) == (host, port):
            if not self.server_trusted_here:
                return self.server_trust
        elif not self.trusted(host) or not hosts:
            return host
        for entry in reversed(hosts):
            if not self.trusted(entry):
                return entry
        return hosts[0]
