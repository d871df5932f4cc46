"""Change notifications end to end: a demo register change reaches a subscribed agency's webhook as a
signed CloudEvent (checked with the ``standardwebhooks`` package), minimised, recorded in the
person's history; refusals, retries and dead letters; the gRPC stream with acknowledgements."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
import pytest_asyncio
from standardwebhooks.webhooks import Webhook

from gateway._pb.passerelle.gateway.v1 import subscriptions_pb2 as pb
from gateway._pb.passerelle.gateway.v1 import subscriptions_pb2_grpc
from gateway.demo._model import Address
from tests.notification_stack import Stack, notification_stack, start_receiver

EVENT_TYPE = "registry.population.v1.PersonChanged"
NEW_ADDRESS = Address("12", "rue de la Gare", "L-1234", "Luxembourg", "Luxembourg")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    async with notification_stack(Path(tmp_path_factory.mktemp("notifications"))) as s:
        yield s


def _person(stack: Stack, n: int) -> str:
    return stack.data.households[n].members[0]


async def _subscribe(stack: Stack, url: str = "", consumer: str = "cedies") -> dict[str, object]:
    body = {"eventType": EVENT_TYPE, "purpose": "student-aid",
            "delivery": "DELIVERY_MODE_WEBHOOK" if url else "DELIVERY_MODE_STREAM", "webhookUrl": url}
    r = await stack.rest.post("/v1/subscriptions", json=body, headers=stack.headers(consumer))
    assert r.status_code == 200, r.text
    created: dict[str, object] = r.json()
    return created


async def _follow(stack: Stack, sub_id: str, *national_ids: str) -> dict[str, object]:
    r = await stack.rest.post(f"/v1/subscriptions/{sub_id}/follows", json={"nationalIds": list(national_ids)},
                              headers=stack.headers())
    assert r.status_code == 200, r.text
    answer: dict[str, object] = r.json()
    return answer


pytestmark = pytest.mark.asyncio(loop_scope="module")


async def test_a_change_reaches_the_webhook_as_a_signed_minimised_cloudevent(stack: Stack) -> None:
    receiver = await start_receiver()
    try:
        sub = await _subscribe(stack, receiver.url)
        secret = str(sub["signingSecret"])
        assert secret.startswith("whsec_")
        nid = _person(stack, 0)
        assert (await _follow(stack, str(sub["id"]), nid))["changed"] == 1
        change = stack.changes.record(nid, NEW_ADDRESS, dt.date(2026, 12, 1))
        await receiver.wait_for(1)
        headers, body = receiver.received[0]
        event = Webhook(secret).verify(body, headers)   # raises if the signature does not verify
        assert headers["content-type"].startswith("application/cloudevents+json")
        assert headers["webhook-id"] == change.event_id == event["id"]
        assert (event["specversion"], event["type"], event["subject"]) == ("1.0", EVENT_TYPE, nid)
        data = event["data"]
        assert data["person"]["address"]["street"] == "rue de la Gare"
        assert data["changed"] == ["DATA_CATEGORY_ADDRESS"]
        assert "birthDate" not in data["person"] and "householdMembers" not in data["person"]   # minimised
    finally:
        await receiver.stop()


async def test_the_person_sees_that_the_agency_was_notified(stack: Stack) -> None:
    nid = _person(stack, 0)
    r = await stack.rest.get("/v1/me/accesses", headers=stack.citizen(nid))
    notified = [a for a in r.json()["accesses"] if a.get("notification")]
    assert notified, r.json()
    entry = notified[0]
    assert entry["agency"]["id"] == "cedies" and entry["outcome"] == "ok"
    assert entry["changedCategories"] == ["ADDRESS"]
    assert {f["name"] for f in entry["dataFields"]} == {"given_names", "family_name", "address"}


async def test_an_unfollowed_person_is_not_notified(stack: Stack) -> None:
    receiver = await start_receiver()
    try:
        sub = await _subscribe(stack, receiver.url)
        await _follow(stack, str(sub["id"]), _person(stack, 1))
        stack.changes.record(_person(stack, 2), NEW_ADDRESS, dt.date(2026, 12, 1))   # not followed
        stack.changes.record(_person(stack, 1), NEW_ADDRESS, dt.date(2026, 12, 1))
        await receiver.wait_for(1)
        await asyncio.sleep(0.3)
        assert [h["webhook-id"] for h, _ in receiver.received] == [f"rnpp-{stack.changes.after_sync(0)[-1].sequence}"]
    finally:
        await receiver.stop()


async def test_stream_delivery_sends_until_acknowledged(stack: Stack) -> None:
    sub = await _subscribe(stack)
    sub_id = str(sub["id"])
    nid = _person(stack, 3)
    await _follow(stack, sub_id, nid)
    change = stack.changes.record(nid, NEW_ADDRESS, dt.date(2026, 12, 1))
    stub = subscriptions_pb2_grpc.SubscriptionsStub(stack.channel)  # type: ignore[no-untyped-call]  # no .pyi for *_pb2_grpc
    md = (("authorization", f"Bearer {stack.token()}"),)
    call = stub.StreamEvents(pb.StreamEventsRequest(subscription_id=sub_id), metadata=md)
    first = await asyncio.wait_for(call.read(), 10)
    assert isinstance(first, pb.NotificationEvent)
    assert (first.id, first.subject, first.type) == (change.event_id, nid, EVENT_TYPE)
    assert json.loads(first.data_json)["person"]["address"]["postcode"] == "L-1234"
    call.cancel()
    # Not acknowledged: sent again once the lease (2 s here) ran out.
    again = stub.StreamEvents(pb.StreamEventsRequest(subscription_id=sub_id), metadata=md)
    resent = await asyncio.wait_for(again.read(), 10)
    assert isinstance(resent, pb.NotificationEvent) and resent.id == change.event_id
    ack = await stub.AckEvents(pb.AckEventsRequest(subscription_id=sub_id, event_ids=[resent.id]), metadata=md)
    assert ack.acknowledged == 1
    again.cancel()


async def test_another_agency_cannot_see_or_follow_through_a_subscription(stack: Stack) -> None:
    sub = await _subscribe(stack)
    r = await stack.rest.post(f"/v1/subscriptions/{sub['id']}/follows", json={"nationalIds": [_person(stack, 4)]},
                              headers=stack.headers("procurement"))
    assert r.status_code == 404 and r.json()["reason"] == "NOT_FOUND"
    listed = await stack.rest.get("/v1/subscriptions", headers=stack.headers("procurement"))
    assert listed.json() == {}


async def test_a_plain_http_webhook_outside_demo_mode_is_refused_by_the_core_check(stack: Stack) -> None:
    body = {"eventType": EVENT_TYPE, "purpose": "student-aid", "delivery": "DELIVERY_MODE_WEBHOOK",
            "webhookUrl": "ftp://example.org/hook"}
    r = await stack.rest.post("/v1/subscriptions", json=body, headers=stack.headers())
    assert r.status_code == 400 and r.json()["reason"] == "INVALID_ARGUMENT"


async def test_grpc_door_serves_the_unary_methods(stack: Stack) -> None:
    stub = subscriptions_pb2_grpc.SubscriptionsStub(stack.channel)  # type: ignore[no-untyped-call]  # no .pyi for *_pb2_grpc
    md = (("authorization", f"Bearer {stack.token()}"),)
    created = await stub.CreateSubscription(pb.CreateSubscriptionRequest(
        event_type=EVENT_TYPE, purpose="student-aid", delivery=pb.DELIVERY_MODE_STREAM), metadata=md)
    follow = await stub.Follow(pb.FollowRequest(subscription_id=created.id, national_ids=[_person(stack, 5)]),
                               metadata=md)
    assert follow.follows == 1
    check = await stub.ListFollows(pb.ListFollowsRequest(subscription_id=created.id,
                                                         national_ids=[_person(stack, 5), _person(stack, 6)]),
                                   metadata=md)
    assert list(check.followed) == [_person(stack, 5)]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Follow(pb.FollowRequest(subscription_id=created.id, national_ids=["123"]), metadata=md)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (await stub.DeleteSubscription(pb.DeleteSubscriptionRequest(subscription_id=created.id),
                                          metadata=md)).deleted


async def test_a_follow_list_over_its_limit_is_refused_whole(stack: Stack) -> None:
    sub = await _subscribe(stack)
    ids = [_person(stack, n) for n in range(10, 16)]   # six: the stack allows five
    r = await stack.rest.post(f"/v1/subscriptions/{sub['id']}/follows", json={"nationalIds": ids},
                              headers=stack.headers())
    assert r.status_code == 413 and r.json()["reason"] == "REQUEST_TOO_LARGE"
    check = await stack.rest.post(f"/v1/subscriptions/{sub['id']}/follows:check", json={"nationalIds": ids},
                                  headers=stack.headers())
    assert check.json() == {}   # nothing was added


async def test_a_hanging_endpoint_does_not_delay_another_subscriber(stack: Stack) -> None:
    hanging, healthy = await start_receiver("hang"), await start_receiver()
    try:
        nid = _person(stack, 20)
        for receiver in (hanging, healthy):
            await _follow(stack, str((await _subscribe(stack, receiver.url))["id"]), nid)
        change = stack.changes.record(nid, NEW_ADDRESS, dt.date(2026, 12, 1))
        await healthy.wait_for(1, timeout=3)
        assert healthy.received[0][0]["webhook-id"] == change.event_id
    finally:
        await hanging.stop()
        await healthy.stop()


async def test_a_refusing_endpoint_ends_in_a_dead_letter_that_an_admin_redelivers(stack: Stack) -> None:
    receiver = await start_receiver("refuse")
    try:
        sub = await _subscribe(stack, receiver.url)
        nid = _person(stack, 21)
        await _follow(stack, str(sub["id"]), nid)
        change = stack.changes.record(nid, NEW_ADDRESS, dt.date(2026, 12, 1))
        await receiver.wait_for(3)   # max_attempts = 3 in this stack
        letters: list[dict[str, object]] = []
        async with asyncio.timeout(5):
            while not letters:
                r = await stack.rest.get("/v1/admin/dead-letters", headers=stack.staff("ops"))
                letters = [d for d in r.json().get("deadLetters", []) if d["subscriptionId"] == sub["id"]]
                await asyncio.sleep(0.05)
        assert letters[0]["eventId"] == change.event_id and letters[0]["lastError"] == "HTTP 503"
        assert (await stack.rest.post(f"/v1/admin/dead-letters/{letters[0]['deliveryId']}:redeliver",
                                      json={"reason": "agency fixed its endpoint"},
                                      headers=stack.headers())).status_code == 403   # an agency may not
        receiver.mode = "ok"
        r = await stack.rest.post(f"/v1/admin/dead-letters/{letters[0]['deliveryId']}:redeliver",
                                  json={"reason": "agency fixed its endpoint"}, headers=stack.staff("admin"))
        assert r.status_code == 200 and r.json() == {"requeued": True}
        await receiver.wait_for(4)
        Webhook(str(sub["signingSecret"])).verify(receiver.received[-1][1], receiver.received[-1][0])
    finally:
        await receiver.stop()


async def test_metrics_count_reads_and_deliveries_per_consumer(stack: Stack) -> None:
    text = (await stack.rest.get("/metrics")).text
    assert 'passerelle_notifications_events_read_total{registry="rnpp"}' in text
    assert 'passerelle_notifications_delivered_total{consumer="cedies"}' in text
    assert "passerelle_notifications_delivery_lag_seconds_bucket" in text
