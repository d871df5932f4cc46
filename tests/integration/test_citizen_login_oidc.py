"""The citizen sign-in's use cases and Authlib client against a real OpenID Provider (npm oidc-provider).

The provider runs in node (tests/browser/oidc/provider.mjs); its own sign-in form is filled in over
HTTP and the redirect back to the gateway is read, not followed: no gateway process is needed here.
Skipped, with the reason, without node or ``npm ci --prefix tests/browser``; with ``CI=true`` it fails.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc.jwk import ECKey

from adapters.oidc.client import AuthlibOpenIdProvider, OidcClientSettings
from adapters.stores.session_memory import InMemorySessionStore
from gateway.application.citizen_login import SIGNED_IN, SIGNED_OUT, CitizenLogin, SignInPolicy
from gateway.core.errors import GatewayError, Reason
from gateway.demo.data import generate
from tests.gateway_process import PERSONS, SEED
from tests.oidc_provider import ACR_LOW, ACR_SUBSTANTIAL, OidcProviderProcess, missing, oidc_provider, sign_in_with_form

CALLBACK = "http://127.0.0.1:9/me/auth/callback"   # never listened on: the redirect is read, not followed
AFTER_LOGOUT = "http://127.0.0.1:9/me/"
NID = generate(SEED, persons=PERSONS).persons[3].national_id
_KEY = ec.generate_private_key(ec.SECP256R1())
KEY_PEM = _KEY.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())  # fmt: skip


class RecordedEvents:
    """``SecurityEvents`` that keeps what it is told."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def record(self, reason: str, protocol: str, detail: str = "") -> None:
        self.seen.append(str(reason))


Parts = tuple["CitizenLogin", InMemorySessionStore, "RecordedEvents"]


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProviderProcess]:
    reason = missing()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and the OpenID Provider tests are mandatory: {reason}")
        pytest.skip(reason)
    public = ECKey.import_key(KEY_PEM).as_dict(private=False)
    clients: list[Mapping[str, Any]] = [
        {"client_id": "passerelle", "client_secret": "a-long-test-secret-0123456789",
         "redirect_uris": [CALLBACK], "post_logout_redirect_uris": [AFTER_LOGOUT]},
        {"client_id": "passerelle-jwt", "jwks": {"keys": [{**public, "alg": "ES256", "use": "sig"}]},
         "redirect_uris": [CALLBACK], "post_logout_redirect_uris": [AFTER_LOGOUT]},
    ]  # fmt: skip
    accounts = {"citizen": {"national_id": NID, "acr": ACR_SUBSTANTIAL},
                "weak": {"national_id": NID, "acr": ACR_LOW},
                "stranger": {"national_id": "1234"}}  # fmt: skip
    with oidc_provider(clients, accounts, tmp_path_factory.mktemp("oidc") / "provider.log") as p:
        yield p


@pytest.fixture
async def parts(provider: OidcProviderProcess, request: pytest.FixtureRequest
                ) -> AsyncIterator[tuple[CitizenLogin, InMemorySessionStore, RecordedEvents]]:  # fmt: skip
    jwt_client = getattr(request, "param", "") == "private_key_jwt"
    settings = OidcClientSettings(
        issuer=provider.issuer, client_id="passerelle-jwt" if jwt_client else "passerelle",
        redirect_uri=CALLBACK, post_logout_redirect_uri=AFTER_LOGOUT, acr_values=(ACR_SUBSTANTIAL,),
        client_secret="" if jwt_client else "a-long-test-secret-0123456789",
        private_key_pem=KEY_PEM if jwt_client else b"",
    )  # fmt: skip
    store, events = InMemorySessionStore(), RecordedEvents()
    async with httpx.AsyncClient(timeout=10) as http:
        policy = SignInPolicy(subject_claim="national_id", acr_values=(ACR_SUBSTANTIAL,))
        login = CitizenLogin(AuthlibOpenIdProvider(settings, http), store, store, events, policy,
                             lambda: time.time_ns() // 1000)  # fmt: skip
        yield login, store, events


def _back(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


async def _through_the_form(login: CitizenLogin, account: str) -> dict[str, str]:
    """The callback's query, and the browser's binding secret (its sign-in cookie) as ``binding``."""
    started = await login.start("192.0.2.1")
    return _back(sign_in_with_form(started.url, account, CALLBACK)) | {"binding": started.binding}


@pytest.mark.parametrize("parts", ["client_secret", "private_key_jwt"], indirect=True)
async def test_a_citizen_signs_in_through_the_providers_form_and_out_again(parts: Parts) -> None:
    login, _, events = parts
    back = await _through_the_form(login, "citizen")
    signed_in = await login.finish(state=back["state"], code=back["code"], binding=back["binding"])
    assert (signed_in.session.national_id, signed_in.session.acr) == (NID, ACR_SUBSTANTIAL)
    assert await login.session(signed_in.session_id) == signed_in.session
    logout = await login.sign_out(signed_in.session_id)
    assert logout is not None and "/session/end?" in logout and "id_token_hint=" in logout
    assert await login.session(signed_in.session_id) is None
    assert events.seen == [SIGNED_IN, SIGNED_OUT]


def _callback(back: dict[str, str]) -> dict[str, str]:
    """What the browser brings back: the query's state and code, and its sign-in cookie."""
    return {k: back[k] for k in ("state", "code", "binding")}


async def _refused(login: CitizenLogin, **kwargs: str) -> Reason:
    with pytest.raises(GatewayError) as caught:
        await login.finish(**kwargs)
    return caught.value.reason


async def test_a_callback_with_another_state_is_refused_and_recorded(parts: Parts) -> None:
    login, _, events = parts
    back = await _through_the_form(login, "citizen")
    assert await _refused(login, state="not-" + back["state"], code=back["code"],
                          binding=back["binding"]) == Reason.SIGN_IN_STATE_INVALID  # fmt: skip
    assert events.seen == [Reason.SIGN_IN_STATE_INVALID]


async def test_a_replayed_callback_and_a_replayed_code_are_refused(parts: Parts) -> None:
    login, _, events = parts
    back = await _through_the_form(login, "citizen")
    await login.finish(state=back["state"], code=back["code"], binding=back["binding"])
    assert await _refused(login, **_callback(back)) == Reason.SIGN_IN_STATE_INVALID
    fresh = await _through_the_form(login, "citizen")      # a new sign-in's state with the old code
    assert await _refused(login, state=fresh["state"], code=back["code"],
                          binding=fresh["binding"]) == Reason.SIGN_IN_CODE_REFUSED  # fmt: skip
    assert events.seen == [SIGNED_IN, Reason.SIGN_IN_STATE_INVALID, Reason.SIGN_IN_CODE_REFUSED]


async def test_a_sign_in_below_the_required_assurance_is_refused(parts: Parts) -> None:
    login, _, events = parts
    back = await _through_the_form(login, "weak")
    assert await _refused(login, **_callback(back)) == Reason.SIGN_IN_ASSURANCE_TOO_LOW
    assert events.seen == [Reason.SIGN_IN_ASSURANCE_TOO_LOW]


async def test_a_subject_claim_that_is_not_a_national_id_is_refused(parts: Parts) -> None:
    login, _, events = parts
    back = await _through_the_form(login, "stranger")
    assert await _refused(login, **_callback(back)) == Reason.SIGN_IN_SUBJECT_INVALID
    assert events.seen == [Reason.SIGN_IN_SUBJECT_INVALID]


async def test_an_error_from_the_provider_is_a_failed_sign_in(parts: Parts) -> None:
    login, _, events = parts
    started = await login.start()
    state = _back(started.url)["state"]
    assert await _refused(login, state=state, code="", error="access_denied",
                          binding=started.binding) == Reason.SIGN_IN_PROVIDER_ERROR  # fmt: skip
    assert events.seen == [Reason.SIGN_IN_PROVIDER_ERROR]
