"""One HTTP delivery of a webhook, refusing targets on private networks.

Server-side request forgery: a webhook URL is chosen by whoever configures it, and the
server sends from inside its own network. Unless `webhooks.allow_private_targets` is on,
every address the target's host resolves to is checked at delivery time, and a host with
any private, loopback, link-local, multicast, reserved or unspecified address is refused
(an IPv4-mapped IPv6 address is checked as the IPv4 address it maps). The check is in the
resolver aiohttp connects through, so the address checked is the address connected to (a
DNS answer cannot change in between). Redirects are not followed (a 3xx is a failed
attempt), proxies from the environment are ignored, the whole attempt is bounded by
`webhooks.timeout`, and at most `MAX_RESPONSE` bytes of the answer are read.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

__all__ = ["MAX_RESPONSE", "Attempt", "TargetRefused", "WebhookClient", "refused_address"]

MAX_RESPONSE = 64 * 1024
_KEPT_RESPONSE = 500


class TargetRefused(Exception):
    """The target resolves to an address webhooks may not reach."""


def refused_address(text: str) -> str | None:
    """Why `text` (an IP address) may not be a webhook target, or None when it may."""
    address = ipaddress.ip_address(text.split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    for kind, flag in (
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("private", address.is_private),
        ("multicast", address.is_multicast),
        ("reserved", address.is_reserved),
        ("unspecified", address.is_unspecified),
    ):
        if flag:
            return f"{address} is a {kind} address"
    return None


class _CheckedResolver(AbstractResolver):
    """The default resolver, refusing a host when any of its addresses is refused."""

    def __init__(self) -> None:
        self._inner = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        for entry in found:
            reason = refused_address(entry["host"])
            if reason is not None:
                raise TargetRefused(f"{host} resolves to {reason}; webhooks.allow_private_targets allows it")
        return found

    async def close(self) -> None:
        await self._inner.close()


@dataclass(frozen=True, slots=True)
class Attempt:
    """What one attempt got: an HTTP status (None when no answer), its time, a problem."""

    status: int | None
    duration_ms: float
    error: str | None

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class WebhookClient:
    """The HTTP client of webhook deliveries (one per server process)."""

    def __init__(self, *, timeout: float, allow_private: bool) -> None:
        self.timeout = timeout
        self.allow_private = allow_private
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            resolver: AbstractResolver = DefaultResolver() if self.allow_private else _CheckedResolver()
            connector = aiohttp.TCPConnector(resolver=resolver, use_dns_cache=False, limit=100)
            self._session = aiohttp.ClientSession(connector=connector, trust_env=False)
        return self._session

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> Attempt:
        """POST `body` to `url`; never raises for the target's faults (they are the Attempt)."""
        started = time.perf_counter()
        try:
            host = urlsplit(url).hostname or ""
            if not self.allow_private and _is_ip(host):
                # aiohttp connects to an address literal without asking the resolver.
                reason = refused_address(host)
                if reason is not None:
                    raise TargetRefused(f"{reason}; webhooks.allow_private_targets allows it")
            request = self._client().post(
                url, data=body, headers=headers, allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=self.timeout),
            )  # fmt: skip
            async with request as response:
                answer = await response.content.read(MAX_RESPONSE)
                status = response.status
        except TargetRefused:
            raise
        except aiohttp.ClientConnectorError as e:
            if isinstance(e.os_error, TargetRefused):
                raise e.os_error from e
            return Attempt(None, _ms(started), f"cannot connect: {e}")
        except TimeoutError:
            return Attempt(None, _ms(started), f"no answer within {self.timeout:g}s")
        except (aiohttp.ClientError, OSError, ValueError) as e:
            return Attempt(None, _ms(started), f"{type(e).__name__}: {e}")
        error = None
        if not 200 <= status < 300:
            text = answer[:_KEPT_RESPONSE].decode("utf-8", "replace")
            error = f"HTTP {status}" + (" (redirects are not followed)" if 300 <= status < 400 else "")
            error += f": {text}" if text else ""
        return Attempt(status, _ms(started), error)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)
