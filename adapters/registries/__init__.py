"""Registry adapters: each maps its transport's failures to gateway reasons, once, here."""

from adapters.registries.grpc_registry import GrpcRegistryAdapter
from adapters.registries.rest_registry import FieldMapping, RestOperationSpec, RestRegistryAdapter

__all__ = ["FieldMapping", "GrpcRegistryAdapter", "RestOperationSpec", "RestRegistryAdapter"]
