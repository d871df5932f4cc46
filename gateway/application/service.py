"""How a feature describes a service of ``proto/passerelle/...``, whatever door serves it.

A ``ServiceBinding`` pairs a proto service with handler coroutines
``(request, call) -> response`` and states, per method, which principal may call
it: a consumer, a citizen, staff with a scope, or anyone. It knows nothing of
gRPC or HTTP: ``gateway.entrypoints.binding`` serves it on both doors from the
descriptors alone (generic gRPC handlers; REST routes from ``google.api.http``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import descriptor_pool
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message

from gateway.core.auth import Principal
from gateway.core.contracts import load_generated_modules
from gateway.core.pipeline import CallContext

__all__ = ["Access", "Call", "Handler", "ServiceBinding"]


@dataclass(frozen=True, slots=True)
class Access:
    """Who may call a method: ``kind`` is consumer | citizen | staff | public; staff need ``scope``."""

    kind: str
    scope: str = ""


@dataclass(slots=True)
class Call:
    principal: Principal | None
    ctx: CallContext


Handler = Callable[[Any, Call], Awaitable[Message]]


@dataclass
class ServiceBinding:
    service: str  # "passerelle.gateway.v1.ServiceCatalogue"
    handlers: Mapping[str, Handler]  # method name -> coroutine
    access: Mapping[str, Access]  # method name -> who may call it
    tags: list[str] = field(default_factory=list)
    #: REST answers show every field, also false, zero and empty ones (stable JSON shapes for pages).
    print_defaults: bool = False

    def methods(self) -> list[MethodDescriptor]:
        """The service's unary methods (a streaming one is served apart: ``Gateway.grpc_services``)."""
        load_generated_modules()
        svc = descriptor_pool.Default().FindServiceByName(self.service)
        unary = [m for m in svc.methods if not (m.client_streaming or m.server_streaming)]
        missing = {m.name for m in unary} ^ set(self.handlers)
        if missing:
            raise ValueError(f"{self.service}: handlers and methods differ: {sorted(missing)}")
        return unary
