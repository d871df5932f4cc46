"""The token verifier, key sets, DPoP, sender constraints and quotas as pure units (no sockets)."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from adapters.keys import JwksFileKeys, JwksUrlKeys, parse_jwks
from gateway.core.auth import Issuer, TokenVerifier
from gateway.core.cnf import SenderEvidence, cert_thumbprint, sender_refusal
from gateway.core.dpop import ReplayCache, jwk_thumbprint, key_thumbprint, make_proof, normalise_htu, verify_proof
from gateway.core.errors import GatewayError, Reason
from gateway.core.quotas import (
    AddressQuotas,
    Admission,
    KeyedBuckets,
    PrincipalQuotas,
    Quota,
    TokenBucket,
    authenticated,
    refund_when_authenticated,
    refunds_ended,
)

ISS, AUD = "https://idp.test", "urn:passerelle:gateway"


class Clock:
    def __init__(self, t: float = 1_800_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class CountingKeys(dict[str, Any]):
    lookups = 0

    def get(self, kid: str, default: Any = None) -> Any:
        self.lookups += 1
        return super().get(kid, default)


def make(
    clock: Clock, keys: CountingKeys | None = None, **kw: Any
) -> tuple[TokenVerifier, ec.EllipticCurvePrivateKey, CountingKeys]:
    private = ec.generate_private_key(ec.SECP256R1())
    keyset = keys if keys is not None else CountingKeys()
    keyset["k1"] = private.public_key()
    issuer = Issuer("idp", ISS, "agency", frozenset({"ES256"}), keyset)
    return (
        TokenVerifier({"idp": issuer}, {("idp", "cedies"): "cedies"}, audience=AUD, clock=clock, **kw),
        private,
        keyset,
    )


def token(private: Any, clock: Clock, *, ttl: int = 300, kid: str = "k1", **claims: Any) -> str:
    now = int(clock())
    body = {"iss": ISS, "aud": AUD, "sub": "cedies", "iat": now, "exp": now + ttl, "jti": uuid.uuid4().hex, **claims}
    return jwt.encode(body, private, algorithm="ES256", headers={"kid": kid})


def reason(fn: Any, *args: Any, **kw: Any) -> Reason:
    with pytest.raises(GatewayError) as exc:
        fn(*args, **kw)
    return exc.value.reason


# --- the verified-token cache --------------------------------------------------------------------------


def test_a_cached_token_is_not_verified_again() -> None:
    clock = Clock()
    v, private, keys = make(clock)
    t = token(private, clock)
    v.verify(t)
    lookups = keys.lookups
    assert v.verify(t).id == "cedies"
    assert keys.lookups == lookups


def test_verify_uncached_does_the_whole_check_every_time() -> None:
    clock = Clock()
    v, private, keys = make(clock)
    t = token(private, clock)
    v.verify_uncached(t)
    v.verify_uncached(t)
    assert keys.lookups == 2


def test_a_cached_token_expires_with_its_token() -> None:
    clock = Clock()
    v, private, _ = make(clock, leeway_s=30)
    t = token(private, clock, ttl=60)
    v.verify(t)
    clock.t += 60 + 29
    assert v.verify(t).id == "cedies"  # inside the leeway
    clock.t += 2
    assert reason(v.verify, t) == Reason.TOKEN_EXPIRED


def test_the_cache_is_bounded_in_size() -> None:
    clock = Clock()
    v, private, _ = make(clock, cache_size=2)
    for _ in range(5):
        v.verify(token(private, clock))
    assert len(v._cache) == 2


@pytest.mark.parametrize("what", ["jti", "consumer", "key"])
def test_revocation_reaches_a_cached_token_at_once(what: str) -> None:
    clock = Clock()
    v, private, _ = make(clock)
    t = token(private, clock, jti="j-1")
    v.verify(t)
    getattr(v.revocations, {"jti": "jtis", "consumer": "consumers", "key": "keys"}[what]).add(
        {"jti": "j-1", "consumer": "cedies", "key": "k1"}[what]
    )
    assert reason(v.verify, t) == Reason.TOKEN_REVOKED


def test_a_key_removed_by_rotation_refuses_its_cached_tokens() -> None:
    clock = Clock()
    v, private, keys = make(clock)
    t = token(private, clock)
    v.verify(t)
    del keys["k1"]
    assert reason(v.verify, t) == Reason.UNKNOWN_KEY


def test_times_use_the_injected_clock() -> None:
    clock = Clock()
    v, private, _ = make(clock)
    t = token(private, clock)
    clock.t -= 120
    assert reason(v.verify_uncached, t) == Reason.TOKEN_NOT_YET_VALID


@pytest.mark.parametrize(
    ("claims", "expected"),
    [
        ({"exp": "tomorrow"}, Reason.TOKEN_CLAIM_INVALID),
        ({"sub": ""}, Reason.TOKEN_CLAIM_INVALID),
        ({"aud": "urn:other"}, Reason.TOKEN_WRONG_AUDIENCE),
    ],
)
def test_odd_claims_are_refused(claims: dict[str, Any], expected: Reason) -> None:
    clock = Clock()
    v, private, _ = make(clock)
    assert reason(v.verify, token(private, clock, **claims)) == expected


def test_an_unknown_critical_header_is_refused() -> None:
    clock = Clock()
    v, private, _ = make(clock)
    now = int(clock())
    t = jwt.encode(
        {"iss": ISS, "aud": AUD, "sub": "cedies", "iat": now, "exp": now + 60, "jti": "j"},
        private,
        algorithm="ES256",
        headers={"kid": "k1", "crit": ["x-unknown"], "x-unknown": 1},
    )
    assert reason(v.verify, t) in (Reason.TOKEN_INVALID, Reason.TOKEN_MALFORMED)


def test_an_oversized_kid_is_unknown_without_lookup() -> None:
    clock = Clock()
    v, private, keys = make(clock)
    assert reason(v.verify, token(private, clock, kid="k" * 1000)) == Reason.UNKNOWN_KEY
    assert keys.lookups == 0


# --- key sets ----------------------------------------------------------------------------------------------


def jwk(private: Any, kid: str) -> dict[str, Any]:
    algo = (
        jwt.algorithms.ECAlgorithm if isinstance(private, ec.EllipticCurvePrivateKey) else jwt.algorithms.RSAAlgorithm
    )
    public: dict[str, Any] = json.loads(algo.to_jwk(private.public_key()))
    public["kid"] = kid
    return public


def test_parse_jwks_loads_only_public_signing_keys_of_allowed_types() -> None:
    ec_key = ec.generate_private_key(ec.SECP256R1())
    short_rsa = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    private_jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(ec_key))
    doc = {
        "keys": [
            jwk(ec_key, "good"),
            {**private_jwk, "kid": "leaked-private"},
            jwk(short_rsa, "short-rsa"),
            {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
            {**jwk(ec_key, "enc"), "use": "enc"},
            {"kty": "EC", "kid": "broken"},
            jwk(ec_key, ""),
        ]
    }
    assert set(parse_jwks(doc)) == {"good"}


def test_jwks_file_is_reread_when_it_changes_at_most_once_per_interval(tmp_path: Path) -> None:
    clock = Clock(0.0)
    a, b = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [jwk(a, "a")]}))
    keys = JwksFileKeys(path, check_interval_s=1.0, clock=clock)
    path.write_text(json.dumps({"keys": [jwk(a, "a"), jwk(b, "b")]}))
    assert "b" not in keys  # not checked again yet
    clock.t = 1.0
    assert "b" in keys and "a" in keys
    path.write_text("{ half a file")
    clock.t = 2.0
    assert "b" in keys  # the last good set stays


async def test_jwks_file_unknown_kid_reloads_at_once(tmp_path: Path) -> None:
    a, b = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [jwk(a, "a")]}))
    keys = JwksFileKeys(path, check_interval_s=3600)
    path.write_text(json.dumps({"keys": [jwk(b, "b")]}))
    assert await keys.refresh() is True
    assert set(keys) == {"b"}


class Idp:
    """An identity provider's JWKS endpoint behind httpx.MockTransport."""

    def __init__(self) -> None:
        self.keys = [ec.generate_private_key(ec.SECP256R1())]
        self.hits = 0

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.hits += 1
        return httpx.Response(200, json={"keys": [jwk(k, f"k{n}") for n, k in enumerate(self.keys)]})


async def test_jwks_url_unknown_kid_triggers_at_most_one_rate_limited_fetch() -> None:
    idp, clock = Idp(), Clock(0.0)
    client = httpx.AsyncClient(transport=httpx.MockTransport(idp.handler))
    keys = JwksUrlKeys("https://idp.test/jwks", client=client, ttl_s=300, min_refresh_s=30, clock=clock)
    await keys.refresh()
    issuer = Issuer("idp", ISS, "agency", frozenset({"ES256"}), keys)
    v = TokenVerifier({"idp": issuer}, {("idp", "cedies"): "cedies"}, audience=AUD, clock=time.time)
    now = Clock(time.time())
    assert (await v.verify_async(token(idp.keys[0], now, kid="k0"))).id == "cedies"
    idp.keys.append(ec.generate_private_key(ec.SECP256R1()))  # rotation at the IdP
    clock.t = 31.0
    rotated = token(idp.keys[1], now, kid="k1")
    assert (await v.verify_async(rotated)).id == "cedies"  # one fetch picked it up
    hits = idp.hits
    for _ in range(50):
        with pytest.raises(GatewayError) as exc:
            await v.verify_async(token(idp.keys[1], now, kid="forged"))
        assert exc.value.reason == Reason.UNKNOWN_KEY
    assert idp.hits == hits  # no fetch storm: within min_refresh_s
    await client.aclose()


async def test_jwks_url_refreshes_in_the_background_once_stale_and_keeps_keys_on_failure() -> None:
    idp, clock = Idp(), Clock(0.0)
    failing = {"on": False}

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503) if failing["on"] else idp.handler(request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        keys = JwksUrlKeys("https://idp.test/jwks", client=client, ttl_s=10, min_refresh_s=1, clock=clock)
        await keys.refresh()
        failing["on"] = True
        clock.t = 11.0
        assert "k0" in keys  # stale: schedules a background refresh, answers from memory
        assert keys._inflight is not None
        await keys._inflight
        assert "k0" in keys  # the failed fetch kept the last good keys


# --- DPoP and sender constraints ----------------------------------------------------------------------------


def test_jwk_thumbprint_matches_rfc_7638_example() -> None:
    rfc = {
        "kty": "RSA",
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCi"
        "FV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZg"
        "nYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniI"
        "qbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
    }
    assert jwk_thumbprint(rfc) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


@pytest.mark.parametrize(
    ("url", "htu"),
    [
        ("HTTPS://API.Example.LU:443/v1/x?q=1#f", "https://api.example.lu/v1/x"),
        ("http://127.0.0.1:8080/v1/x", "http://127.0.0.1:8080/v1/x"),
        ("http://host:80", "http://host/"),
    ],
)
def test_htu_is_normalised(url: str, htu: str) -> None:
    assert normalise_htu(url) == htu


def test_a_dpop_proof_is_accepted_once() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    replay = ReplayCache(ttl_s=120)
    proof = make_proof(key, "GET", "https://gw.test/v1/x?y=1", "tok")
    args = dict(
        method="GET",
        url="https://gw.test/v1/x",
        access_token="tok",
        now=time.time(),
        max_age_s=60,
        leeway_s=5,
        replay=replay,
    )
    assert verify_proof(proof, **args) == key_thumbprint(key)  # type: ignore[arg-type]
    assert reason(verify_proof, proof, **args) == Reason.DPOP_PROOF_INVALID


def test_a_dpop_proof_with_a_private_key_in_its_header_is_refused() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    private_jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key))
    proof = jwt.encode(
        {"jti": "1", "htm": "GET", "htu": "https://gw.test/", "iat": int(time.time()), "ath": ""},
        key,
        algorithm="ES256",
        headers={"typ": "dpop+jwt", "jwk": private_jwk},
    )
    assert (
        reason(
            verify_proof,
            proof,
            method="GET",
            url="https://gw.test/",
            access_token="t",
            now=time.time(),
            max_age_s=60,
            leeway_s=5,
            replay=ReplayCache(60),
        )
        == Reason.DPOP_PROOF_INVALID
    )


CERT, JKT = cert_thumbprint(b"cert"), "jkt-1"


@pytest.mark.parametrize(
    ("cnf", "mode", "evidence", "expected"),
    [
        (None, "optional", SenderEvidence(), None),
        (None, "required", SenderEvidence(CERT), Reason.SENDER_CONSTRAINT_FAILED),
        ({"x5t#S256": CERT}, "optional", SenderEvidence(CERT), None),
        ({"x5t#S256": CERT}, "optional", SenderEvidence(cert_thumbprint(b"other")), Reason.SENDER_CONSTRAINT_FAILED),
        ({"x5t#S256": CERT}, "required", SenderEvidence(), Reason.SENDER_CONSTRAINT_FAILED),
        ({"jkt": JKT}, "optional", SenderEvidence(dpop_jkt=JKT), None),
        ({"jkt": JKT}, "optional", SenderEvidence(), Reason.DPOP_PROOF_INVALID),
        ({"jkt": JKT}, "optional", SenderEvidence(dpop_jkt="other"), Reason.SENDER_CONSTRAINT_FAILED),
        ({"x5t#S256": CERT, "jkt": JKT}, "required", SenderEvidence(dpop_jkt=JKT), None),
        ({"unknown": "x"}, "optional", SenderEvidence(CERT), Reason.SENDER_CONSTRAINT_FAILED),
        ("not-an-object", "optional", SenderEvidence(CERT), Reason.SENDER_CONSTRAINT_FAILED),
        ({"x5t#S256": CERT}, "off", SenderEvidence(), None),
    ],
)
def test_sender_constraint_decisions(cnf: object, mode: str, evidence: SenderEvidence, expected: Reason | None) -> None:
    refusal = sender_refusal(cnf, mode, evidence)
    assert (refusal[0] if refusal else None) == expected


# --- quotas --------------------------------------------------------------------------------------------------


def test_token_bucket_admits_a_burst_then_the_rate() -> None:
    bucket = TokenBucket(rate=2.0, burst=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [0.0, 0.0, 0.0, 0.5]
    assert bucket.take(0.5) == 0.0


def test_admission_keeps_consumers_apart_and_releases_slots() -> None:
    adm = Admission(Quota(1.0, 1, 1), {"big": Quota(100.0, 100, 10)})
    adm.acquire("small", 0.0)
    with pytest.raises(GatewayError) as exc:
        adm.acquire("small", 0.0)
    assert (exc.value.reason, exc.value.retry_after) == (Reason.CONCURRENCY_LIMITED, 1.0)
    adm.release("small")
    with pytest.raises(GatewayError) as exc:
        adm.acquire("small", 0.1)
    assert (exc.value.reason, exc.value.retry_after) == (Reason.RATE_LIMITED, 1.0)
    for _ in range(10):
        adm.acquire("big", 0.0)
    assert adm.in_flight("big") == 10 and adm.in_flight("small") == 0


def test_a_dpop_proof_with_a_broken_jwk_is_refused_not_crashed() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    proof = jwt.encode(
        {"jti": "1", "htm": "GET", "htu": "https://gw.test/", "iat": int(time.time())},
        key,
        algorithm="ES256",
        headers={"typ": "dpop+jwt", "jwk": {"kty": "EC", "crv": "P-256"}},
    )
    assert (
        reason(
            verify_proof,
            proof,
            method="GET",
            url="https://gw.test/",
            access_token="t",
            now=time.time(),
            max_age_s=60,
            leeway_s=5,
            replay=ReplayCache(60),
        )
        == Reason.DPOP_PROOF_INVALID
    )


# --- the public URL and the shared replay store ---------------------------------------------------------


def test_htu_is_built_from_the_public_url_and_the_request_path_only() -> None:
    v, _, _ = make(Clock())
    v.public_url = "https://gw.example/prefix"
    assert v.htu_for("http://127.0.0.1:8080/v1/x?y=1") == "https://gw.example/prefix/v1/x"
    assert v.htu_for("http://evil.example/v1/x") == "https://gw.example/prefix/v1/x"
    v.public_url = ""
    assert v.htu_for("http://127.0.0.1:8080/v1/x?y=1") == "http://127.0.0.1:8080/v1/x"


class FlakyStore:
    def __init__(self, fail: bool = False) -> None:
        self.fail, self.keys = fail, set[str]()

    async def first_use(self, key: str, expires_at: float, now: float) -> bool:
        if self.fail:
            raise OSError("store down")
        new = key not in self.keys
        self.keys.add(key)
        return new

    async def close(self) -> None: ...


async def test_a_proof_used_by_another_process_is_refused() -> None:
    clock = Clock()
    v, private, _ = make(clock)
    shared = FlakyStore()
    v.replay_store = shared
    key = ec.generate_private_key(ec.SECP256R1())
    t = token(private, clock, cnf={"jkt": key_thumbprint(key)})
    proof = make_proof(key, "GET", "http://127.0.0.1:8080/v1/x", t, now=clock())
    principal = v.verify(t)
    await v.check_sender_async(principal, token=t, dpop_proof=proof, method="GET", url="http://127.0.0.1:8080/v1/x")
    # Another process: its own verifier (and local cache), the same keys and the same store.
    other = TokenVerifier({"idp": Issuer("idp", ISS, "agency", frozenset({"ES256"}), {"k1": private.public_key()})},
                          {("idp", "cedies"): "cedies"}, audience=AUD, clock=clock)
    other.replay_store = shared
    with pytest.raises(GatewayError) as exc:
        await other.check_sender_async(other.verify(t), token=t, dpop_proof=proof, method="GET",
                                       url="http://127.0.0.1:8080/v1/x")
    assert exc.value.reason is Reason.DPOP_PROOF_INVALID
    assert len(shared.keys) == 1


async def test_an_unreachable_replay_store_refuses_the_proof() -> None:
    clock = Clock()
    v, private, _ = make(clock)
    v.replay_store = FlakyStore(fail=True)
    key = ec.generate_private_key(ec.SECP256R1())
    t = token(private, clock, cnf={"jkt": key_thumbprint(key)})
    proof = make_proof(key, "GET", "http://127.0.0.1:8080/v1/x", t, now=clock())
    with pytest.raises(GatewayError) as exc:
        await v.check_sender_async(v.verify(t), token=t, dpop_proof=proof, method="GET",
                                   url="http://127.0.0.1:8080/v1/x")
    assert (exc.value.reason, exc.value.retry_after) == (Reason.DPOP_REPLAY_UNAVAILABLE, 1.0)


def test_keyed_buckets_stay_bounded_whatever_the_number_of_keys() -> None:
    buckets = KeyedBuckets(1.0, 2, max_keys=100)
    for n in range(10_000):
        buckets.take(f"203.0.{n // 256}.{n % 256}", 0.0)
    assert len(buckets) == 100


def test_an_address_over_its_failed_authentications_is_refused_even_with_a_token() -> None:
    limits = AddressQuotas(KeyedBuckets(100.0, 100), KeyedBuckets(0.1, 2))
    for _ in range(2):
        limits.admit("a", now=0.0)
        limits.failed("a", 0.0)
    assert reason(limits.admit, "a", now=0.0) == Reason.RATE_LIMITED
    limits.admit("b", now=0.0)
    assert reason(limits.admit, "a", now=1.0) == Reason.RATE_LIMITED
    limits.admit("a", now=11.0)   # one failure's worth came back


def test_an_address_charge_is_given_back_only_once_the_call_authenticated() -> None:
    """Every call is charged to its address; ``authenticated()`` (the verifier's) gives it back, once."""
    limits = AddressQuotas(KeyedBuckets(0.001, 2), KeyedBuckets(0.1, 100))
    for _ in range(5):
        limits.admit("agency", now=0.0)
        token = refund_when_authenticated(lambda: limits.refund("agency"))
        authenticated()
        authenticated()   # a second verification in the same call gives nothing more back
        refunds_ended(token)
    limits.admit("public", now=0.0)
    limits.admit("public", now=0.0)
    assert reason(limits.admit, "public", now=0.0) == Reason.RATE_LIMITED


def test_principal_quotas_are_per_person_and_leave_agencies_to_admission() -> None:
    quotas = PrincipalQuotas({"citizen": KeyedBuckets(0.001, 1)})
    quotas.take("citizen", "1991062434054", 0.0)
    assert reason(quotas.take, "citizen", "1991062434054", 0.0) == Reason.RATE_LIMITED
    quotas.take("citizen", "1997123078000", 0.0)
    for _ in range(5):
        quotas.take("consumer", "cedies", 0.0)
