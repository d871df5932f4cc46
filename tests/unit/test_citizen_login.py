"""ID token refusals a well-behaved provider never produces, with a provider served by ``httpx.MockTransport``.

The tokens are signed here with the provider's key (or another one); the relying party (Authlib,
joserfc) and the use cases are the real ones. Each refusal is a security event.
"""

from __future__ import annotations

import asyncio
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
from gateway.config_citizen_login import CitizenLoginSection
from gateway.core.citizen_sessions import EIDAS_LEVELS, acr_satisfies, id_hash
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


def _provider(make_token: Callable[[Claims], str], nonce_box: dict[str, str],
              meta: Claims | None = None) -> httpx.MockTransport:  # fmt: skip
    def handle(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/.well-known/openid-configuration":
            return httpx.Response(200, json={"issuer": ISSUER, "authorization_endpoint": f"{ISSUER}/auth",
                                             "token_endpoint": f"{ISSUER}/token", "jwks_uri": f"{ISSUER}/jwks",
                                             **(meta or {})})  # fmt: skip
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
        started = await login.start()
        query = {k: v[0] for k, v in parse_qs(urlsplit(started.url).query).items()}
        assert query["code_challenge_method"] == "S256" and query["acr_values"] == EIDAS_LEVELS[1]
        box["nonce"] = query["nonce"]
        try:
            await login.finish(state=query["state"], code="the-code", binding=started.binding)
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
        (lambda c: c.update(azp="another-client"), Reason.SIGN_IN_WRONG_AUDIENCE),   # one audience, foreign azp
        (lambda c: c.update(aud=["passerelle", "x"], azp="x"), Reason.SIGN_IN_WRONG_AUDIENCE),
        (lambda c: c.update(exp=int(time.time()) - 3600, iat=int(time.time()) - 7200), Reason.SIGN_IN_TOKEN_EXPIRED),
        (lambda c: c.update(nonce="another-sign-in"), Reason.SIGN_IN_NONCE_MISMATCH),
        (lambda c: c.pop("nonce"), Reason.SIGN_IN_NONCE_MISMATCH),
        (lambda c: c.update(iss="https://elsewhere.example"), Reason.SIGN_IN_TOKEN_INVALID),
        (lambda c: c.update(acr=EIDAS_LEVELS[0]), Reason.SIGN_IN_ASSURANCE_TOO_LOW),
        (lambda c: c.pop("acr"), Reason.SIGN_IN_ASSURANCE_TOO_LOW),
        (lambda c: c.update(sub="19910624340"), Reason.SIGN_IN_SUBJECT_INVALID),
    ],
    ids=["foreign-aud", "two-audiences-no-azp", "one-audience-foreign-azp", "two-audiences-foreign-azp",
         "expired", "wrong-nonce", "no-nonce", "foreign-iss", "low-acr",
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


# --- the sign-in bound to its browser, sessions replaced and purged, the provider's endpoints -------------

class Clock:
    def __init__(self) -> None:
        self.us = time.time_ns() // 1000

    def __call__(self) -> int:
        return self.us


def _login(http: httpx.AsyncClient, store: InMemorySessionStore, events: RecordedEvents, clock: Clock,
           issuer: str = ISSUER) -> CitizenLogin:  # fmt: skip
    settings = OidcClientSettings(issuer=issuer, client_id="passerelle", redirect_uri="https://gw/me/auth/callback",
                                  post_logout_redirect_uri="https://gw/me/", client_secret="s")  # fmt: skip
    return CitizenLogin(AuthlibOpenIdProvider(settings, http), store, store, events,
                        SignInPolicy(idle_timeout_s=60, absolute_timeout_s=600), clock)  # fmt: skip


async def _started(login: CitizenLogin, box: dict[str, str]) -> tuple[str, str]:
    """A started sign-in's state and the browser's binding secret; the provider will sign its nonce."""
    started = await login.start("198.51.100.7")
    query = {k: v[0] for k, v in parse_qs(urlsplit(started.url).query).items()}
    box["nonce"] = query["nonce"]
    return query["state"], started.binding


@pytest.mark.parametrize("binding", ["", "another-browsers-secret"], ids=["no-cookie", "another-browser"])
async def test_a_callback_without_the_browsers_sign_in_secret_is_refused_and_spends_the_state(binding: str) -> None:
    """Login CSRF (RFC 9700 §4.7): the callback URL of A's sign-in opened by browser B signs B in as nobody."""
    box: dict[str, str] = {}
    store, events = InMemorySessionStore(), RecordedEvents()
    async with httpx.AsyncClient(transport=_provider(_signed(lambda c: None), box)) as http:
        login = _login(http, store, events, Clock())
        state, secret = await _started(login, box)
        with pytest.raises(GatewayError) as caught:
            await login.finish(state=state, code="the-code", binding=binding)
        assert caught.value.reason == Reason.SIGN_IN_STATE_INVALID
        with pytest.raises(GatewayError) as again:   # A's own browser, after B tried: the state is spent
            await login.finish(state=state, code="the-code", binding=secret)
        assert again.value.reason == Reason.SIGN_IN_STATE_INVALID
    assert events.seen == [Reason.SIGN_IN_STATE_INVALID, Reason.SIGN_IN_STATE_INVALID]


async def test_the_store_keeps_only_the_hash_of_the_browsers_secret() -> None:
    box: dict[str, str] = {}
    store = InMemorySessionStore()
    async with httpx.AsyncClient(transport=_provider(_signed(lambda c: None), box)) as http:
        login = _login(http, store, RecordedEvents(), Clock())
        state, secret = await _started(login, box)
        pending = await store.take(id_hash(state), 0)
    assert pending is not None and pending.binding_hash == id_hash(secret) and secret not in repr(pending)
    assert pending.client_hash == id_hash("198.51.100.7")


async def test_signing_in_again_ends_the_browsers_previous_session() -> None:
    box: dict[str, str] = {}
    store, events = InMemorySessionStore(), RecordedEvents()
    async with httpx.AsyncClient(transport=_provider(_signed(lambda c: None), box)) as http:
        login = _login(http, store, events, Clock())
        state, secret = await _started(login, box)
        first = await login.finish(state=state, code="c", binding=secret)
        state, secret = await _started(login, box)
        second = await login.finish(state=state, code="c", binding=secret, previous_session=first.session_id)
        assert await login.session(first.session_id) is None
        assert await login.session(second.session_id) == second.session
    assert events.seen == ["CITIZEN_SIGNED_IN", "CITIZEN_SIGNED_IN", "CITIZEN_SIGNED_OUT"]


async def test_expired_sessions_are_purged_on_sign_in_and_by_purge() -> None:
    box: dict[str, str] = {}
    store, clock = InMemorySessionStore(), Clock()
    async with httpx.AsyncClient(transport=_provider(_signed(lambda c: None), box)) as http:
        login = _login(http, store, RecordedEvents(), clock)
        state, secret = await _started(login, box)
        idle = await login.finish(state=state, code="c", binding=secret)
        clock.us += 61 * 1_000_000   # past the idle timeout, never looked at again
        state, secret = await _started(login, box)
        fresh = await login.finish(state=state, code="c", binding=secret)
        assert await store.get(idle.session.id_hash) is None   # gone with the next sign-in
        assert await store.get(fresh.session.id_hash) is not None
        for _ in range(10):   # kept alive, yet past the absolute timeout
            clock.us += 59 * 1_000_000
            await store.touch(fresh.session.id_hash, clock.us)
        await login.start()   # a sign-in in progress, about to expire too
        clock.us += 61 * 1_000_000
        assert await login.purge() == 1
        assert await store.get(fresh.session.id_hash) is None and await store.prune(0) == 0


async def test_the_id_token_is_kept_only_when_the_provider_ends_sessions() -> None:
    for meta, kept in (({}, False), ({"end_session_endpoint": f"{ISSUER}/logout"}, True)):
        box: dict[str, str] = {}
        async with httpx.AsyncClient(transport=_provider(_signed(lambda c: None), box, meta)) as http:
            login = _login(http, InMemorySessionStore(), RecordedEvents(), Clock())
            state, secret = await _started(login, box)
            signed = await login.finish(state=state, code="c", binding=secret)
            assert bool(signed.session.id_token) is kept
            out = await login.sign_out(signed.session_id)
            assert (out is not None and "id_token_hint=" in out) is kept


async def test_an_azp_naming_us_is_accepted() -> None:
    assert await _sign_in(_signed(lambda c: c.update(azp="passerelle"))) == (None, ["CITIZEN_SIGNED_IN"])
    assert (await _sign_in(_signed(lambda c: c.update(aud=["passerelle", "x"], azp="passerelle"))))[0] is None


@pytest.mark.parametrize("meta", [{"token_endpoint": "http://eid.example.lu/token"},
                                  {"authorization_endpoint": "javascript:alert(1)"},
                                  {"jwks_uri": "http://127.0.0.1.evil.example/jwks"},
                                  {"end_session_endpoint": "http://eid.example.lu/logout"}])  # fmt: skip
async def test_a_discovery_naming_a_plain_http_endpoint_is_refused(meta: Claims) -> None:
    async with httpx.AsyncClient(transport=_provider(_signed(lambda c: None), {}, meta)) as http:
        login = _login(http, InMemorySessionStore(), RecordedEvents(), Clock())
        with pytest.raises(GatewayError) as caught:
            await login.start()
    assert caught.value.reason == Reason.SIGN_IN_PROVIDER_UNAVAILABLE


async def test_an_issuer_with_a_trailing_slash_is_kept_exactly_and_signs_in() -> None:
    issuer = ISSUER + "/"
    section = CitizenLoginSection(issuer=issuer, client_id="passerelle", client_secret="s",
                                  public_url="https://gw.example.lu/")  # fmt: skip
    assert section.issuer == issuer and section.public_url == "https://gw.example.lu"
    box: dict[str, str] = {}
    seen: list[str] = []
    inner = _provider(_signed(lambda c: c.update(iss=issuer)), box, {"issuer": issuer})

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return inner.handle_request(request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handle)) as http:
        login = _login(http, InMemorySessionStore(), RecordedEvents(), Clock(), issuer=issuer)
        state, secret = await _started(login, box)
        assert (await login.finish(state=state, code="c", binding=secret)).session.national_id == NID
    assert seen[0] == f"{ISSUER}/.well-known/openid-configuration"


async def test_the_background_task_purges_periodically_and_outlives_a_failing_store() -> None:
    from gateway.bootstrap_citizen_login import _purge

    calls: list[int] = []

    class Login:
        async def purge(self) -> int:
            calls.append(1)
            if len(calls) == 1:
                raise OSError("the store is down")
            return 0

    task = asyncio.create_task(_purge(Login(), 0.001))  # type: ignore[arg-type]
    while len(calls) < 3:
        await asyncio.sleep(0.001)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
