"""Change notifications attacked by a hostile agency, on both doors: what its mandate does not cover it
may neither subscribe to nor follow people under, and the refusal is the same on gRPC and REST."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import cast

import grpc
import pytest
import pytest_asyncio
from google.rpc import error_details_pb2, status_pb2

from gateway._pb.passerelle.gateway.v1 import subscriptions_pb2 as pb
from gateway._pb.passerelle.gateway.v1 import subscriptions_pb2_grpc
from tests.notification_stack import Stack, notification_stack

EVENT_TYPE = "registry.population.v1.PersonChanged"
WATCH = "registry.population.v1.PopulationRegistry/WatchChanges"

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    async with notification_stack(Path(tmp_path_factory.mktemp("notification-attacks"))) as s:
        yield s


def _grpc_reason(err: grpc.aio.AioRpcError) -> str:
    for key, value in err.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            for detail in status_pb2.Status.FromString(cast(bytes, value)).details:
                if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                    info = error_details_pb2.ErrorInfo()
                    detail.Unpack(info)
                    return str(info.reason)
    raise AssertionError("no ErrorInfo detail")


def _stub(stack: Stack) -> subscriptions_pb2_grpc.SubscriptionsStub:
    return subscriptions_pb2_grpc.SubscriptionsStub(stack.channel)  # type: ignore[no-untyped-call]  # no .pyi for *_pb2_grpc


def _person(stack: Stack, n: int) -> str:
    return stack.data.households[n].members[0]


async def test_an_agency_without_a_mandate_for_the_change_stream_cannot_subscribe_on_either_door(stack: Stack) -> None:
    body = {"eventType": EVENT_TYPE, "purpose": "procurement-check", "delivery": "DELIVERY_MODE_STREAM"}
    r = await stack.rest.post("/v1/subscriptions", json=body, headers=stack.headers("procurement"))
    assert (r.status_code, r.json()["reason"]) == (403, "NO_MANDATE")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _stub(stack).CreateSubscription(
            pb.CreateSubscriptionRequest(event_type=EVENT_TYPE, purpose="procurement-check",
                                         delivery=pb.DELIVERY_MODE_STREAM),
            metadata=(("authorization", f"Bearer {stack.token('procurement')}"),))  # fmt: skip
    assert (err.value.code(), _grpc_reason(err.value)) == (grpc.StatusCode.PERMISSION_DENIED, "NO_MANDATE")
    listed = await stack.rest.get("/v1/subscriptions", headers=stack.headers("procurement"))
    assert listed.json() == {}


async def test_an_agency_whose_mandate_ended_may_follow_nobody_more_but_may_unfollow(stack: Stack) -> None:
    admin = stack.staff("admin")
    mandate = {"id": "procurement-changes", "consumer": "procurement", "service": WATCH,
               "purposes": ["procurement-check"], "legalBasis": "A6-1-e", "fields": ["address"]}
    put = await stack.rest.put("/v1/admin/mandates/procurement-changes", json=mandate, headers=admin)
    assert put.status_code == 200
    body = {"eventType": EVENT_TYPE, "purpose": "procurement-check", "delivery": "DELIVERY_MODE_STREAM"}
    created = await stack.rest.post("/v1/subscriptions", json=body, headers=stack.headers("procurement"))
    assert created.status_code == 200, created.text
    follows = f"/v1/subscriptions/{created.json()['id']}/follows"
    first = {"nationalIds": [_person(stack, 30)]}
    assert (await stack.rest.post(follows, json=first, headers=stack.headers("procurement"))).status_code == 200
    assert (await stack.rest.delete("/v1/admin/mandates/procurement-changes", headers=admin)).status_code == 200
    r = await stack.rest.post(follows, json={"nationalIds": [_person(stack, 31)]}, headers=stack.headers("procurement"))
    assert (r.status_code, r.json()["reason"]) == (403, "NO_MANDATE")
    gone = await stack.rest.post(f"{follows}:remove", json=first, headers=stack.headers("procurement"))
    assert gone.json() == {"changed": 1}


async def test_a_bad_request_id_is_refused_alike_by_streamevents_and_the_unary_methods(stack: Stack) -> None:
    created = await _stub(stack).CreateSubscription(
        pb.CreateSubscriptionRequest(event_type=EVENT_TYPE, purpose="student-aid", delivery=pb.DELIVERY_MODE_STREAM),
        metadata=(("authorization", f"Bearer {stack.token()}"),))  # fmt: skip
    md = (("authorization", f"Bearer {stack.token()}"), ("x-request-id", "not an id"))
    with pytest.raises(grpc.aio.AioRpcError) as unary:
        await _stub(stack).ListFollows(pb.ListFollowsRequest(subscription_id=created.id), metadata=md)
    stream = _stub(stack).StreamEvents(pb.StreamEventsRequest(subscription_id=created.id), metadata=md)
    with pytest.raises(grpc.aio.AioRpcError) as streamed:
        await asyncio.wait_for(stream.read(), 5)
    assert _grpc_reason(unary.value) == _grpc_reason(streamed.value) == "CALLER_FIELD_INVALID"
