"""Fuzzing the gRPC door: random and mutated protobuf messages for every method it lists.

The methods are those the server's reflection service lists. Each gets random bytes
and mutations of a valid message of its input type (truncated, bytes flipped, unknown
fields appended, fields repeated), under a consumer, citizen, staff, junk or no token.
No answer may be UNKNOWN or INTERNAL, and the gateway must still be healthy after.
"""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf import descriptor_pool, message_factory
from google.protobuf.descriptor import FieldDescriptor, MethodDescriptor
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.core.contracts import load_generated_modules
from gateway.demo.setup import demo_token
from tests.security.conftest import SecurityStack
from tests.security.test_one_meaning import UNKNOWN_FIELD, grpc_raw

pytestmark = pytest.mark.asyncio(loop_scope="module")

EXAMPLES_PER_METHOD = 25
_T = FieldDescriptor


async def listed_methods(s: SecurityStack) -> list[MethodDescriptor]:
    """Unary methods of every service the reflection service lists."""
    stub = reflection_pb2_grpc.ServerReflectionStub(s.channel)
    names: list[str] = []
    async for answer in stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")])):
        names += [svc.name for svc in answer.list_services_response.service]
    load_generated_modules()
    pool = descriptor_pool.Default()
    return [m for name in names for m in pool.FindServiceByName(name).methods
            if not (m.client_streaming or m.server_streaming)]


def _filled(m: MethodDescriptor, draw: Any) -> bytes:
    """A message of the method's input type with each scalar field set to a drawn value (or not)."""
    msg = message_factory.GetMessageClass(m.input_type)()
    for f in m.input_type.fields:
        if f.is_repeated or f.type in (_T.TYPE_MESSAGE, _T.TYPE_GROUP) or not draw(st.booleans()):
            continue
        if f.type == _T.TYPE_STRING:
            setattr(msg, f.name, draw(st.text(max_size=40)))
        elif f.type == _T.TYPE_BYTES:
            setattr(msg, f.name, draw(st.binary(max_size=40)))
        elif f.type == _T.TYPE_BOOL:
            setattr(msg, f.name, draw(st.booleans()))
        elif f.type in (_T.TYPE_FLOAT, _T.TYPE_DOUBLE):
            setattr(msg, f.name, draw(st.floats(allow_nan=True, allow_infinity=True, width=32)))
        elif f.type == _T.TYPE_ENUM:
            setattr(msg, f.name, draw(st.integers(-5, 50)))
        elif f.type in (_T.TYPE_UINT32, _T.TYPE_FIXED32):
            setattr(msg, f.name, draw(st.integers(0, 2**32 - 1)))
        elif f.type in (_T.TYPE_UINT64, _T.TYPE_FIXED64):
            setattr(msg, f.name, draw(st.integers(0, 2**64 - 1)))
        elif f.type in (_T.TYPE_INT32, _T.TYPE_SINT32, _T.TYPE_SFIXED32):
            setattr(msg, f.name, draw(st.integers(-(2**31), 2**31 - 1)))
        else:
            setattr(msg, f.name, draw(st.integers(-(2**63), 2**63 - 1)))
    return msg.SerializeToString()


def _mutated(raw: bytes, draw: Any) -> bytes:
    kind = draw(st.sampled_from(["as is", "truncate", "flip", "unknown", "twice", "random"]))
    if kind == "truncate" and raw:
        return raw[: draw(st.integers(0, len(raw) - 1))]
    if kind == "flip" and raw:
        i = draw(st.integers(0, len(raw) - 1))
        return raw[:i] + bytes([raw[i] ^ draw(st.integers(1, 255))]) + raw[i + 1:]
    if kind == "unknown":
        return raw + UNKNOWN_FIELD
    if kind == "twice":
        return raw + raw
    if kind == "random":
        return draw(st.binary(max_size=2048))  # type: ignore[no-any-return]
    return raw


def generated(m: MethodDescriptor) -> list[tuple[bytes, str]]:
    out: list[tuple[bytes, str]] = []

    @settings(max_examples=EXAMPLES_PER_METHOD, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def collect(data: Any) -> None:
        raw = _mutated(_filled(m, data.draw), data.draw)
        out.append((raw, data.draw(st.sampled_from(["consumer", "citizen", "admin", "ops", "junk", "none"]))))

    collect()
    return out


def tokens(s: SecurityStack) -> dict[str, list[tuple[str, str]]]:
    nid = s.data.households[0].members[0]
    staff = {who: demo_token(s.data_dir, issuer_id="demo-staff", subject=who, scope=who) for who in ("admin", "ops")}
    bearer = {
        "consumer": s.token(),
        "citizen": demo_token(s.data_dir, issuer_id="demo-citizens", subject=nid, scope="citizen"),
        **staff,
        "junk": "junk",
    }
    out = {k: [("authorization", f"Bearer {v}"), ("x-purpose", "student-aid")] for k, v in bearer.items()}
    out["none"] = [("x-purpose", "student-aid")]
    return out


async def test_no_generated_message_gets_unknown_or_internal_and_the_gateway_stays_healthy(
    stack: SecurityStack,
) -> None:
    methods = await listed_methods(stack)
    assert len(methods) >= 10
    metadata = tokens(stack)
    bad: list[str] = []
    codes: set[str] = set()
    for m in methods:
        for raw, who in generated(m):
            code, _, _ = await grpc_raw(stack, f"/{m.containing_service.full_name}/{m.name}", raw, metadata[who])
            codes.add(code)
            if code in ("UNKNOWN", "INTERNAL"):
                bad.append(f"{m.full_name} as {who}: {code} for {raw[:64]!r}")
    assert not bad, "\n".join(bad[:20])
    assert {"OK", "INVALID_ARGUMENT", "UNAUTHENTICATED"} <= codes
    health = stack.channel.unary_unary(
        "/grpc.health.v1.Health/Check",
        request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
        response_deserializer=health_pb2.HealthCheckResponse.FromString,
    )
    assert (await health(health_pb2.HealthCheckRequest(), timeout=5)).status == health_pb2.HealthCheckResponse.SERVING
    assert (await stack.rest.get("/healthz")).json() == {"status": "ok"}
