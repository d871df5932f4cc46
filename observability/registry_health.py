"""Per-registry health: what the exchanges saw, plus an active probe at each readiness check.

Passive (X-Road style): last success and failure, counts, consecutive failures.
Active, within a deadline: the standard gRPC health check for gRPC registries, an
HTTP ``HEAD`` for REST ones (a REST dialect has no standard health path, so any HTTP
answer, even 404, counts as serving; an open port that never answers, as a hung or
stopped process gives, is ``timeout``, a refused connection ``unreachable``). Each registry is
reported, and exported as ``passerelle_registry_up``; whether one that is down
makes the gateway unready is the ``[gateway] readiness`` policy: ``all`` (the
default: every configured registry must answer its probe), ``any`` (at least one)
or ``ignore-registries`` (only the gateway's own stores count).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

__all__ = ["READINESS_POLICIES", "RegistryHealth", "RegistryProbe", "registry_result"]

_REGISTRY_RESULTS = {
    "": "ok",
    "SUBJECT_NOT_FOUND": "not_found",
    "REGISTRY_UNAVAILABLE": "unavailable",
    "REGISTRY_TIMEOUT": "timeout",
    "REGISTRY_BAD_RESPONSE": "bad_response",
    "INVALID_ARGUMENT": "invalid_argument",
}
#: Results that count against a registry's availability.
FAILED = frozenset({"unavailable", "timeout", "bad_response"})
READINESS_POLICIES = ("all", "any", "ignore-registries")


def registry_result(reason: str) -> str:
    """The registry's part in an exchange that called it; a later refusal (audit ...) is not its fault."""
    return _REGISTRY_RESULTS.get(reason, "ok")


@dataclass(slots=True)
class _Seen:
    successes: int = 0
    failures: int = 0
    consecutive_failures: int = 0
    last_success_us: int = 0
    last_failure_us: int = 0
    probe: str = ""  # "serving" | "not_serving" | "unreachable" | "timeout" | "" (not probed yet)


@dataclass(frozen=True, slots=True)
class RegistryProbe:
    id: str
    kind: str  # "grpc" | "rest"
    address: str  # host:port or base URL
    service: str  # gRPC service name for the health check


class RegistryHealth:
    def __init__(
        self,
        probes: list[RegistryProbe],
        *,
        clock_us: Callable[[], int],
        timeout_s: float = 1.0,
        breakers: dict[str, Any] | None = None,
        policy: str = "all",
    ) -> None:
        if policy not in READINESS_POLICIES:
            raise ValueError(f"readiness policy {policy!r}; one of {READINESS_POLICIES}")
        self._policy = policy
        self._probes = probes
        self._seen = {p.id: _Seen() for p in probes}
        self._clock_us = clock_us
        self._timeout = timeout_s
        self._breakers = breakers or {}
        self._channels: dict[str, grpc.aio.Channel] = {}

    def observe(self, registry: str, result: str) -> None:
        seen = self._seen.setdefault(registry, _Seen())
        if result in FAILED:
            seen.failures += 1
            seen.consecutive_failures += 1
            seen.last_failure_us = self._clock_us()
        else:
            seen.successes += 1
            seen.consecutive_failures = 0
            seen.last_success_us = self._clock_us()

    def up(self) -> list[tuple[dict[str, str], float]]:
        """1 per registry believed up: its last probe serving, or (not probed) fewer than 3 failures in a row."""
        out = []
        for rid, seen in self._seen.items():
            ok = seen.probe == "serving" if seen.probe else seen.consecutive_failures < 3
            out.append(({"registry": rid}, 1.0 if ok else 0.0))
        return out

    async def readiness(self) -> dict[str, Any]:
        results = await asyncio.gather(*(self._probe(p) for p in self._probes))
        report = {}
        for probe, state in zip(self._probes, results, strict=True):
            seen = self._seen[probe.id]
            seen.probe = state
            breaker = self._breakers.get(probe.id)
            report[probe.id] = {
                "probe": state,
                "successes": seen.successes,
                "failures": seen.failures,
                "consecutive_failures": seen.consecutive_failures,
                "last_success_us": seen.last_success_us,
                "last_failure_us": seen.last_failure_us,
                **({"breaker": str(breaker.state)} if breaker is not None else {}),
            }
        serving = [state == "serving" for state in results]
        ok = self._policy == "ignore-registries" or not serving or (all if self._policy == "all" else any)(serving)
        # "ready" only when false: the gateway's own report (audit store ...) keeps the last word otherwise.
        out = {"registries": report, "registries_ready": ok, "readiness": self._policy}
        return out if ok else out | {"ready": False}

    async def _probe(self, p: RegistryProbe) -> str:
        try:
            async with asyncio.timeout(self._timeout):
                return await (self._grpc(p) if p.kind == "grpc" else self._http(p))
        except TimeoutError:
            return "timeout"
        except grpc.aio.AioRpcError as exc:
            return "timeout" if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED else "unreachable"
        except (OSError, ValueError):
            return "unreachable"

    async def _grpc(self, p: RegistryProbe) -> str:
        channel = self._channels.get(p.id)
        if channel is None:
            channel = self._channels[p.id] = grpc.aio.insecure_channel(p.address)
        answer = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=p.service), timeout=self._timeout
        )
        return "serving" if answer.status == health_pb2.HealthCheckResponse.SERVING else "not_serving"

    async def _http(self, p: RegistryProbe) -> str:
        """Serving when the registry answers an HTTP ``HEAD`` at all; the caller's deadline bounds the wait."""
        url = urlsplit(p.address)
        host, port = url.hostname or "127.0.0.1", url.port or (443 if url.scheme == "https" else 80)
        reader, writer = await asyncio.open_connection(host, port, ssl=url.scheme == "https" or None)
        try:
            writer.write(f"HEAD {url.path or '/'} HTTP/1.1\r\nHost: {url.netloc}\r\nConnection: close\r\n\r\n".encode())
            await writer.drain()
            status = await reader.readline()
        finally:
            writer.close()
        return "serving" if status.startswith(b"HTTP/") else "not_serving"

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()
