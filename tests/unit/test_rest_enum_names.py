"""An enum given by name in a REST body or query names one value exactly: the protobuf runtime (upb)
looks names up as C strings, so ``"BULK_ORDER_COMPLETION\\u0000anything"`` would parse as
``BULK_ORDER_COMPLETION``: one request, two meanings (the gateway's and any JSON reader's before it)."""

from __future__ import annotations

import pytest

from gateway._pb.passerelle.gateway.v1 import bulk_pb2
from gateway.core.errors import GatewayError, Reason
from gateway.entrypoints._rest_mapping import rest_message


@pytest.mark.parametrize("name", ["BULK_ORDER_COMPLETION\x00", "BULK_ORDER_COMPLETION\x00zzz", "BULK_ORDER_INDEX\x00x"])
def test_an_enum_name_with_a_nul_is_refused_in_a_body(name: str) -> None:
    with pytest.raises(GatewayError) as raised:
        rest_message(bulk_pb2.BulkLookupRequest, path={}, query=[], body={"order": name})
    assert raised.value.reason == Reason.INVALID_ARGUMENT


@pytest.mark.parametrize("name", ["BULK_ORDER_COMPLETION\x00", "BULK_ORDER_COMPLETION\x00zzz"])
def test_an_enum_name_with_a_nul_is_refused_in_a_query(name: str) -> None:
    with pytest.raises(GatewayError) as raised:
        rest_message(bulk_pb2.BulkLookupRequest, path={}, query=[("order", name)])
    assert raised.value.reason == Reason.INVALID_ARGUMENT


@pytest.mark.parametrize(("value", "expected"), [
    ("BULK_ORDER_COMPLETION", bulk_pb2.BULK_ORDER_COMPLETION), ("BULK_ORDER_INDEX", bulk_pb2.BULK_ORDER_INDEX),
    (2, bulk_pb2.BULK_ORDER_COMPLETION),
])
def test_an_exact_enum_name_or_number_is_read(value: object, expected: int) -> None:
    message = rest_message(bulk_pb2.BulkLookupRequest, path={}, query=[], body={"order": value})
    assert isinstance(message, bulk_pb2.BulkLookupRequest) and message.order == expected
    by_query = rest_message(bulk_pb2.BulkLookupRequest, path={}, query=[("order", str(value))])
    assert isinstance(by_query, bulk_pb2.BulkLookupRequest) and by_query.order == expected
