"""A repeated ``traceparent`` has one meaning on both doors: gRPC's core keeps the last, so the REST door does too."""

from __future__ import annotations

import pytest

from tests.security.conftest import SecurityStack
from tests.security.test_differential import Case, grpc_request, headers_of, rest_path
from tests.security.test_one_meaning import grpc_raw

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.mark.parametrize(("n", "subject"), list(enumerate(["_١A_53", "abc", "GOOD"])))
async def test_a_repeated_traceparent_means_the_same_on_both_doors(stack: SecurityStack, n: int, subject: str) -> None:
    subject = stack.data.households[0].members[0] if subject == "GOOD" else subject
    case = Case(op="person", subject=subject, year=2024, consumer="cedies", purpose="student-aid", field_mask="",
                case_id="", duplicated="traceparent", unknown_field=False, oversized=False)  # fmt: skip
    r = await stack.rest.get(rest_path(case), headers=headers_of(stack, case, f"tp-rest-{n}"))
    rest_reason = "" if r.status_code == 200 else str(r.json()["reason"])
    method, raw, _ = grpc_request(case)
    _, grpc_reason, _ = await grpc_raw(stack, method, raw, headers_of(stack, case, f"tp-grpc-{n}"))
    assert rest_reason == grpc_reason
    assert rest_reason != "DUPLICATE_HEADER"
