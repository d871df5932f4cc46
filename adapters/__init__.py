"""Edges of the gateway: registry clients and stores, each behind a port of ``gateway.core.ports``."""
