"""Handlers of the gateway's own services (proto/passerelle/gateway/...), bound by ``binding``."""
