"""The webhook sender against real endpoints on 127.0.0.1: CloudEvents structured mode, a Standard
Webhooks signature, SSRF refusals outside demo mode, and endpoints that hang, answer garbage or redirect."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook

from adapters.notifications.webhook import HttpWebhookSender, cloud_event_body
from tests.notification_stack import Receiver, start_receiver

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
EVENT: dict[str, object] = {"id": "rnpp-1", "source": "passerelle://registries/rnpp",
                            "type": "registry.population.v1.PersonChanged", "subject": "1990010112345",
                            "time": datetime(2026, 11, 29, 12, 0, tzinfo=UTC), "data": {"changed": ["X"]}}


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = await start_receiver()
    yield r
    await r.stop()


async def _resolve_loopback(host: str, port: int) -> list[str]:
    return ["127.0.0.1"]


async def test_the_body_is_a_cloudevent_in_structured_mode() -> None:
    headers, body = cloud_event_body(EVENT)
    assert headers["content-type"].startswith("application/cloudevents+json")
    assert b'"specversion": "1.0"' in body or b'"specversion":"1.0"' in body


async def test_a_delivery_is_signed_per_standard_webhooks(receiver: Receiver) -> None:
    sender = HttpWebhookSender(demo=True)
    try:
        result = await sender.send(receiver.url, SECRET, EVENT, "rnpp-1")
    finally:
        await sender.close()
    assert result.ok and result.status == 204
    headers, body = receiver.received[0]
    event = Webhook(SECRET).verify(body, headers)
    assert (event["id"], event["subject"], headers["webhook-id"]) == ("rnpp-1", "1990010112345", "rnpp-1")


async def test_outside_demo_mode_a_loopback_address_is_never_called(receiver: Receiver) -> None:
    sender = HttpWebhookSender(demo=False, resolver=_resolve_loopback)
    try:
        https = receiver.url.replace("http://127.0.0.1", "https://agency.example")
        result = await sender.send(https, SECRET, EVENT, "rnpp-1")
        plain = await sender.send(receiver.url, SECRET, EVENT, "rnpp-1")
    finally:
        await sender.close()
    assert (result.ok, result.error) == (False, "refused address")
    assert (plain.ok, plain.error, plain.permanent) == (False, "refused URL", True)
    assert receiver.received == []


async def test_the_checked_address_is_the_one_called_with_the_urls_host(receiver: Receiver) -> None:
    sender = HttpWebhookSender(demo=True, resolver=_resolve_loopback)
    try:
        url = receiver.url.replace("127.0.0.1", "agency.example")
        assert (await sender.send(url, SECRET, EVENT, "rnpp-1")).ok
    finally:
        await sender.close()
    assert receiver.received[0][0]["host"].startswith("agency.example:")


@pytest.mark.parametrize(("mode", "error"), [("hang", "timeout"), ("refuse", "HTTP 503")])
async def test_a_bad_endpoint_is_a_bounded_failure(mode: str, error: str) -> None:
    r = await start_receiver(mode)
    sender = HttpWebhookSender(demo=True, timeout_s=0.5, connect_timeout_s=0.5)
    try:
        started = time.monotonic()
        result = await sender.send(r.url, SECRET, EVENT, "rnpp-1")
        assert time.monotonic() - started < 2
    finally:
        await sender.close()
        await r.stop()
    assert (result.ok, result.error) == (False, error)


async def test_an_endpoint_answering_garbage_or_nothing_is_a_failure() -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        writer.write(b"\x16\x03\x01 this is not HTTP\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(garbage, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    sender = HttpWebhookSender(demo=True, timeout_s=1.0)
    try:
        result = await sender.send(f"http://127.0.0.1:{port}/hook", SECRET, EVENT, "rnpp-1")
        server.close()
        await server.wait_closed()
        closed = await sender.send(f"http://127.0.0.1:{port}/hook", SECRET, EVENT, "rnpp-1")
    finally:
        await sender.close()
    assert (result.ok, result.error) == (False, "bad answer")
    assert (closed.ok, closed.error) == (False, "connection refused")


async def test_a_webhook_url_that_is_not_ascii_ends_as_a_permanent_failure_instead_of_raising(
    receiver: Receiver,
) -> None:
    """A non-ASCII host made httpx raise UnicodeEncodeError: the row was neither retried nor dead-lettered,
    its lease ran out, and it was tried again every lease_s, for ever (blocking the person's later events)."""
    sender = HttpWebhookSender(demo=True, resolver=_resolve_loopback)
    try:
        result = await sender.send(receiver.url.replace("127.0.0.1", "exämple.org"), SECRET, EVENT, "rnpp-1")
    finally:
        await sender.close()
    assert (result.ok, result.permanent) == (False, True)
    assert receiver.received == []
