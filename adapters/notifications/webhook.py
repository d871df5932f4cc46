"""Webhook delivery: one CloudEvents 1.0 event (structured JSON, ``application/cloudevents+json``),
signed per Standard Webhooks (``webhook-id``, ``webhook-timestamp``, ``webhook-signature: v1,<HMAC-SHA256>``),
POSTed with httpx under strict timeouts.

SSRF: the host is resolved here, every address checked (``gateway.core.notifications.address_problem``:
outside demo mode no loopback, private, link-local, multicast or reserved one), and the request is
sent to the checked address itself (the URL's host stays the ``Host`` header and the TLS server name),
so that a second resolution cannot point elsewhere (DNS rebinding). No redirect is followed; the
answer's body is never read; a hanging, slow or garbage-answering endpoint ends as a failed result
within ``timeout_s``.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from urllib.parse import urlsplit, urlunsplit

import httpx
from cloudevents.core.bindings.http import to_structured_event
from cloudevents.core.v1.event import CloudEvent
from standardwebhooks.webhooks import Webhook

from gateway.core.notifications import address_problem, webhook_url_problem
from gateway.core.ports import WebhookResult

__all__ = ["HttpWebhookSender", "cloud_event_body", "resolve_host"]

Resolver = Callable[[str, int], Awaitable[list[str]]]


async def resolve_host(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (A and AAAA), in the resolver's order."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def cloud_event_body(event: dict[str, object]) -> tuple[dict[str, str], bytes]:
    """The structured-mode HTTP message of a CloudEvents 1.0 event: headers and JSON body.

    ``event`` holds the attributes (``id``, ``source``, ``type``, ``subject``, ``time`` as a datetime)
    and ``data`` (a JSON object).
    """
    attributes = {k: v for k, v in event.items() if k != "data"}
    attributes.setdefault("datacontenttype", "application/json")
    data = event.get("data")
    message = to_structured_event(CloudEvent(attributes, data if isinstance(data, dict) else None))
    return dict(message.headers), bytes(message.body)


def _pinned(url: str, address: str) -> str:
    parts = urlsplit(url)
    host = f"[{address}]" if ":" in address else address
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))


class HttpWebhookSender:
    """``gateway.core.ports.WebhookSender`` over httpx: one client, bounded connections."""

    def __init__(self, *, demo: bool, timeout_s: float = 5.0, connect_timeout_s: float = 2.0,
                 max_connections: int = 100, resolver: Resolver = resolve_host) -> None:  # fmt: skip
        self._demo, self._timeout_s, self._resolve = demo, timeout_s, resolver
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s), follow_redirects=False, trust_env=False,
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        )  # fmt: skip

    async def send(self, url: str, secret: str, event: dict[str, object], event_id: str) -> WebhookResult:
        problem = webhook_url_problem(url, demo=self._demo)
        if problem:
            return WebhookResult(False, "refused URL", permanent=True)
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
        try:
            async with asyncio.timeout(self._timeout_s):
                addresses = await self._resolve(host, port)
        except (OSError, TimeoutError):
            return WebhookResult(False, "name resolution failed")
        if address_problem(addresses, demo=self._demo):
            return WebhookResult(False, "refused address")
        headers, body = cloud_event_body(event)
        timestamp = datetime.now(UTC)
        signature = Webhook(secret).sign(event_id, timestamp, body.decode())
        headers |= {"webhook-id": event_id, "webhook-timestamp": str(int(timestamp.timestamp())),
                    "webhook-signature": signature, "host": parts.netloc.rsplit("@", 1)[-1]}  # fmt: skip
        return await self._post(_pinned(url, addresses[0]), host, headers, body)

    async def _post(self, url: str, host: str, headers: dict[str, str], body: bytes) -> WebhookResult:
        extensions = {"sni_hostname": host} if url.startswith("https:") else {}
        try:
            async with asyncio.timeout(self._timeout_s):   # the whole exchange, whatever the endpoint drips
                request = self._client.build_request("POST", url, headers=headers, content=body, extensions=extensions)
                response = await self._client.send(request, stream=True)
                await response.aclose()   # the body is never read
        except TimeoutError:
            return WebhookResult(False, "timeout")
        except httpx.TimeoutException:
            return WebhookResult(False, "timeout")
        except httpx.ConnectError:
            return WebhookResult(False, "connection refused")
        except httpx.HTTPError:
            return WebhookResult(False, "bad answer")
        if 200 <= response.status_code < 300:
            return WebhookResult(True, status=response.status_code)
        return WebhookResult(False, f"HTTP {response.status_code}", status=response.status_code)

    async def close(self) -> None:
        await self._client.aclose()
