"""ID token refusals a well-behaved provider never produces, with a provider served by ``httpx.MockTransport``.

The tokens are signed here with the provider's key (or another one); the relying party (Authlib,
joserfc) and the use cases are the real ones. Each refusal is a security event.
"""

from __future__ import annotations

import base64
import datetime
import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey

from adapters.oidc.client import AuthlibOpenIdProvider, OidcClientSettings
from adapters.stores.session_memory import InMemorySessionStore
from gateway.application.citizen_login import CitizenLogin, SignInPolicy
from gateway.core.citizen_sessions import EIDAS_LEVELS, acr_satisfies
from gateway.core.errors import GatewayError, Reason
from gateway.core.identifiers import make_national_id

ISSUER = "https://eid.example.lu"
NID = make_national_id(datetime.date(1991, 6, 24), 340)
PROVIDER_KEY = ECKey.generate_key("P-256", parameters={"kid": "k1", "alg": "ES256"})
OTHER_KEY = ECKey.generate_key("P-256", parameters={"kid": "k1", "alg": "ES256"})
Claims = dict[str, Any]


class RecordedEvents:
    def __init__(self) -> None:
        self.seen: list[str] = []

    def record(self, reason: str, protocol: str, detail: str = "") -> None:
        self.seen.append(str(reason))


def _provider(make_token: Callable[[Claims], str], nonce_box: dict[str, str]) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/.well-known/openid-configuration":
            return httpx.Response(200, json={"issuer": ISSUER, "authorization_endpoint": f"{ISSUER}/auth",
                                             "token_endpoint": f"{ISSUER}/token", "jwks_uri": f"{ISSUER}/jwks"})
        if path == "/jwks":
            return httpx.Response(200, json={"keys": [PROVIDER_KEY.as_dict(private=False)]})
        if path == "/token":
            now = int(time.time())
            claims = {"iss": ISSUER, "aud": "passerelle", "sub": NID, "iat": now, "exp": now + 300,
                      "nonce": nonce_box["nonce"], "acr": EIDAS_LEVELS[2]}  # fmt: skip
            return httpx.Response(200, json={"access_token": "at", "token_type": "Bearer",
                                             "id_token": make_token(claims)})
        return httpx.Response(404)

    return httpx.MockTransport(handle)


async def _sign_in(make_token: Callable[[Claims], str]) -> tuple[Reason | None, list[str]]:
    box: dict[str, str] = {}
    settings = OidcClientSettings(issuer=ISSUER, client_id="passerelle", redirect_uri="https://gw/me/auth/callback",
                                  post_logout_redirect_uri="https://gw/me/", client_secret="s",
                                  acr_values=(EIDAS_LEVELS[1],))  # fmt: skip
    store, events = InMemorySessionStore(), RecordedEvents()
    async with httpx.AsyncClient(transport=_provider(make_token, box)) as http:
        login = CitizenLogin(AuthlibOpenIdProvider(settings, http), store, store, events,
                             SignInPolicy(acr_values=(EIDAS_LEVELS[1],)), lambda: time.time_ns() // 1000)  # fmt: skip
        query = {k: v[0] for k, v in parse_qs(urlsplit(await login.start()).query).items()}
        assert query["code_challenge_method"] == "S256" and query["acr_values"] == EIDAS_LEVELS[1]
        box["nonce"] = query["nonce"]
        try:
            await login.finish(state=query["state"], code="the-code")
        except GatewayError as exc:
            return exc.reason, events.seen
    return None, events.seen


def _signed(change: Callable[[Claims], None], key: ECKey = PROVIDER_KEY) -> Callable[[Claims], str]:
    def make(claims: Claims) -> str:
        change(claims)
        return jwt.encode({"alg": "ES256", "kid": "k1"}, claims, key)

    return make


async def test_a_well_formed_id_token_signs_the_citizen_in() -> None:
    assert await _sign_in(_signed(lambda c: None)) == (None, ["CITIZEN_SIGNED_IN"])


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda c: c.update(aud="another-client"), Reason.SIGN_IN_WRONG_AUDIENCE),
        (lambda c: c.update(aud=["passerelle", "another-client"]), Reason.SIGN_IN_WRONG_AUDIENCE),  # no azp
        (lambda c: c.update(exp=int(time.time()) - 3600, iat=int(time.time()) - 7200), Reason.SIGN_IN_TOKEN_EXPIRED),
        (lambda c: c.update(nonce="another-sign-in"), Reason.SIGN_IN_NONCE_MISMATCH),
        (lambda c: c.pop("nonce"), Reason.SIGN_IN_NONCE_MISMATCH),
        (lambda c: c.update(iss="https://elsewhere.example"), Reason.SIGN_IN_TOKEN_INVALID),
        (lambda c: c.update(acr=EIDAS_LEVELS[0]), Reason.SIGN_IN_ASSURANCE_TOO_LOW),
        (lambda c: c.pop("acr"), Reason.SIGN_IN_ASSURANCE_TOO_LOW),
        (lambda c: c.update(sub="19910624340"), Reason.SIGN_IN_SUBJECT_INVALID),
    ],
    ids=["foreign-aud", "two-audiences-no-azp", "expired", "wrong-nonce", "no-nonce", "foreign-iss", "low-acr",
         "no-acr", "subject-not-a-national-id"],
)
async def test_an_id_token_that_fails_a_check_is_refused_and_recorded(change: Callable[[Claims], None],
                                                                      reason: Reason) -> None:  # fmt: skip
    assert await _sign_in(_signed(change)) == (reason, [reason])


async def test_an_id_token_signed_with_another_key_is_refused() -> None:
    assert await _sign_in(_signed(lambda c: None, OTHER_KEY)) == (Reason.SIGN_IN_TOKEN_INVALID,
                                                                   [Reason.SIGN_IN_TOKEN_INVALID])


async def test_an_unsigned_id_token_is_refused() -> None:
    def unsigned(claims: Claims) -> str:
        def part(obj: object) -> str:
            return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

        return f"{part({'alg': 'none'})}.{part(claims)}."

    assert (await _sign_in(unsigned))[0] == Reason.SIGN_IN_TOKEN_INVALID


def test_a_higher_eidas_level_satisfies_a_lower_requirement_and_not_the_reverse() -> None:
    low, substantial, high = EIDAS_LEVELS
    assert acr_satisfies(high, [substantial]) and acr_satisfies(substantial, [substantial])
    assert not acr_satisfies(low, [substantial]) and not acr_satisfies("urn:other", [substantial])
    assert acr_satisfies("", [])
