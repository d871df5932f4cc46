"""Protobuf timestamps in the answers of the gateway's own services (proto/passerelle/gateway/...)."""

from google.protobuf.timestamp_pb2 import Timestamp

__all__ = ["timestamp"]


def timestamp(us: int) -> Timestamp | None:
    """A protobuf Timestamp for epoch microseconds; None (field left unset) for 0."""
    if not us:
        return None
    ts = Timestamp()
    ts.FromMicroseconds(us)
    return ts
