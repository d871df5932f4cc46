"""The REST registry adapter's URLs: prebuilt per operation, yet exactly the URLs httpx built before."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from adapters.registries import FieldMapping, RestOperationSpec, RestRegistryAdapter
from gateway._pb.registry.tax.v1 import tax_pb2
from gateway.core.contracts import load_operations
from gateway.core.errors import GatewayError, Reason

TAX = "registry.tax.v1.TaxRegistry"
ANSWER = b'{"exercice": 2024}'
IN_PATH = RestOperationSpec("GET", "/api/v2/revenus/{national_id}/{fiscal_year}",
                            response={"fiscal_year": FieldMapping("exercice", "int")})
IN_QUERY = RestOperationSpec("GET", "/api/v2/attestations-revenu",
                             {"matricule": "{national_id}", "annee": "{fiscal_year}"},
                             response={"fiscal_year": FieldMapping("exercice", "int")})
VALUES = ["1991062434054", "B123456", "a.b_c~d-e", "..", ".", "", "a b", "a/b", "a?b=c&d", "%2F", "é", "١٢٣", "x#y"]
BASES = ["http://127.0.0.1:9", "http://127.0.0.1:9/prefix", "http://localhost:9/a%20b/", "https://[::1]:9/"]


def adapter(base: str, spec: RestOperationSpec, seen: list[httpx.Request]) -> RestRegistryAdapter:
    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=ANSWER)

    ops = {o.method: o for o in load_operations([TAX]).values()}
    return RestRegistryAdapter(base, ops, {"GetIncomeCertificate": spec}, transport=httpx.MockTransport(answer))


def httpx_own_url(base: str, spec: RestOperationSpec, national_id: str) -> httpx.URL:
    """The URL the adapter built before: the relative path and params merged by httpx itself."""
    values = {"national_id": national_id, "fiscal_year": "2024"}
    path = spec.path.format_map(values)
    params = {k: v.format_map(values) for k, v in spec.query.items()}
    return httpx.AsyncClient(base_url=base).build_request("GET", path, params=params).url


def cases() -> Iterator[tuple[str, RestOperationSpec, str]]:
    for base in BASES:
        for spec in (IN_PATH, IN_QUERY):
            for value in VALUES:
                yield base, spec, value


@pytest.mark.parametrize(("base", "spec", "value"), list(cases()))
async def test_the_adapter_sends_the_url_httpx_built_before(base: str, spec: RestOperationSpec, value: str) -> None:
    seen: list[httpx.Request] = []
    a = adapter(base, spec, seen)
    request = tax_pb2.GetIncomeCertificateRequest(national_id=value, fiscal_year=2024)
    try:
        await a.call("GetIncomeCertificate", request, timeout=2, metadata=[("x-request-id", "r-1")])
    finally:
        await a.close()
    expected = httpx_own_url(base, spec, value)
    assert (str(seen[0].url), seen[0].url.raw_path, seen[0].headers["host"]) == (
        str(expected), expected.raw_path, expected.netloc.decode())
    assert seen[0].headers["x-request-id"] == "r-1"


@pytest.mark.parametrize("spec", [IN_PATH, IN_QUERY])
@pytest.mark.parametrize("base", BASES)
async def test_a_plain_identifier_does_not_make_httpx_parse_the_url_again(
    monkeypatch: pytest.MonkeyPatch, base: str, spec: RestOperationSpec
) -> None:
    """Prebuilt pieces: no URL parsing (nor address validation) per call once the client exists."""
    seen: list[httpx.Request] = []
    a = adapter(base, spec, seen)
    request = tax_pb2.GetIncomeCertificateRequest(national_id="1991062434054", fiscal_year=2024)
    await a.call("GetIncomeCertificate", request, timeout=2, metadata=())   # makes the client (parses once)
    parsed: list[str] = []
    real = httpx._urlparse.urlparse   # what httpx.URL calls to parse

    def counting(url: str = "", **kwargs: str | None) -> object:
        parsed.append(url)
        return real(url, **kwargs)

    monkeypatch.setattr(httpx._urls, "urlparse", counting)
    try:
        await a.call("GetIncomeCertificate", request, timeout=2, metadata=())
    finally:
        await a.close()
    assert parsed == []
    assert str(seen[-1].url) == str(httpx_own_url(base, spec, "1991062434054"))


async def test_a_template_httpx_would_encode_is_still_parsed_every_call(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[httpx.Request] = []
    spec = RestOperationSpec("GET", "/api/v2/les revenus/{national_id}/{fiscal_year}",
                             response={"fiscal_year": FieldMapping("exercice", "int")})
    a = adapter("http://127.0.0.1:9", spec, seen)
    request = tax_pb2.GetIncomeCertificateRequest(national_id="1991062434054", fiscal_year=2024)
    try:
        await a.call("GetIncomeCertificate", request, timeout=2, metadata=())
    finally:
        await a.close()
    assert seen[0].url.raw_path == b"/api/v2/les%20revenus/1991062434054/2024"


async def test_an_oversized_answer_stops_the_read_at_the_cap() -> None:
    """The answer is streamed: reading stops past ``max_response_bytes`` instead of buffering it all."""
    pulled = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal pulled
        for _ in range(10_000):
            pulled += 1
            yield b"x" * 65_536

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=endless())

    ops = {o.method: o for o in load_operations([TAX]).values()}
    a = RestRegistryAdapter("http://127.0.0.1:9", ops, {"GetIncomeCertificate": IN_PATH},
                            max_response_bytes=200_000, transport=httpx.MockTransport(answer))
    request = tax_pb2.GetIncomeCertificateRequest(national_id="1991062434054", fiscal_year=2024)
    try:
        with pytest.raises(GatewayError) as refused:
            await a.call("GetIncomeCertificate", request, timeout=5, metadata=())
    finally:
        await a.close()
    assert refused.value.reason is Reason.REGISTRY_BAD_RESPONSE
    assert pulled <= 5
