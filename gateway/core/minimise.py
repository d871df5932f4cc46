"""Minimisation by contract: clear every top-level response field the caller may not have."""

from __future__ import annotations

from google.protobuf.message import Message

__all__ = ["minimise"]


def minimise(message: Message, allowed: frozenset[str]) -> tuple[str, ...]:
    """Clear fields outside ``allowed`` in place; return the names of the fields left set."""
    kept: list[str] = []
    for fd, _ in message.ListFields():
        if fd.name in allowed:
            kept.append(fd.name)
        else:
            message.ClearField(fd.name)
    return tuple(kept)
