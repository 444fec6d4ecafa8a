"""The HTTP client notifications go out through: it connects only to addresses it checked.

Checking a URL and then letting the client resolve it again leaves a window in which a name
can be made to resolve elsewhere (DNS rebinding). Here the check happens inside the
connection itself: an httpcore network backend resolves the host (off the event loop),
refuses it unless every address is allowed (readmodel.outbound), and opens the socket to
one of exactly those addresses. Everything above the socket is untouched, so the Host
header, TLS SNI and certificate verification still use the URL's host name, and
keep-alive connections stay keyed by that name.

Why not a library: of the httpx SSRF guards on the package index, httpx-secure picks one
address by opening TCP probes (to denied addresses too) and checks only the one it picked;
drawbridge is an alpha that rewrites the URL to the address (so it must turn keep-alive
off) and lets ``::127.0.0.1`` through; egressweave requires a host allow-list and refuses
IP hosts and plain http. The part written here is one small backend on httpcore's public
``AsyncNetworkBackend`` interface; the only private touch is handing httpx's transport our
pool, and the send-time tests fail if that stops taking effect.

Redirects are not followed (the client's ``follow_redirects=False``); environment proxies are
ignored (``trust_env=False``), since a proxy would make the connection for us unchecked.
"""

from __future__ import annotations

import functools
import ssl
import typing
from collections.abc import Iterable

import anyio
import httpcore
import httpx

from readmodel import outbound
from readmodel.outbound import IPAddress, OutboundPolicy, RefusedAddress


async def allowed_addresses(policy: OutboundPolicy, host: str, port: int) -> list[IPAddress]:
    """The host's addresses once every one is allowed; the resolver runs in a thread."""
    addr = outbound.numeric_host(host)
    if addr is not None:
        return policy.check_all(host, [addr])
    try:
        found = await anyio.to_thread.run_sync(
            functools.partial(outbound.resolve, host, port), abandon_on_cancel=True
        )
    except OSError as exc:
        raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
    return policy.check_all(host, found)


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """Connects only to checked addresses; raises RefusedAddress for the rest."""

    def __init__(self, policy: OutboundPolicy) -> None:
        self._policy = policy
        self._backend = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        with anyio.move_on_after(timeout) as scope:
            addresses = await allowed_addresses(self._policy, host, port)
        if scope.cancelled_caught:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out")
        last: Exception | None = None
        for addr in addresses:
            try:
                return await self._backend.connect_tcp(
                    str(addr),
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None  # check_all never returns an empty list
        raise last

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise RefusedAddress(path, "a Unix socket")

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


def guarded_transport(
    policy: OutboundPolicy,
    limits: httpx.Limits | None = None,
    verify: ssl.SSLContext | bool = True,
) -> httpx.AsyncHTTPTransport:
    """httpx's own transport (its error mapping and streams) over a pool using our backend."""
    limits = limits or httpx.Limits(max_connections=100, max_keepalive_connections=20)
    transport = httpx.AsyncHTTPTransport(trust_env=False, limits=limits)
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=httpx.create_ssl_context(verify=verify, trust_env=False),
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=GuardedBackend(policy),
    )
    return transport


def guarded_client(
    policy: OutboundPolicy, verify: ssl.SSLContext | bool = True, **kwargs: typing.Any
) -> httpx.AsyncClient:
    """An AsyncClient that sends only where ``policy`` allows, follows no redirect and uses
    no proxy from the environment; other keyword arguments (timeout...) go to httpx."""
    return httpx.AsyncClient(
        transport=guarded_transport(policy, verify=verify),
        follow_redirects=False,
        trust_env=False,
        **kwargs,
    )
