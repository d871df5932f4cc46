"""Passerelle: a once-only data-exchange gateway for public administrations."""

__version__ = "0.1.0"
