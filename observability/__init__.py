"""Telemetry: logs, security events, traces and metrics, and the interoperability report."""
