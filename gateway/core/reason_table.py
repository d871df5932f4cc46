"""The reason-code table as Markdown, generated from ``errors.REASONS`` (docs/errors.md is this text)."""

from __future__ import annotations

from gateway.core.errors import DOMAIN, REASONS

__all__ = ["reason_table_markdown"]

_HEAD = f"""# Error codes

Every refusal or failure carries one stable reason code, the same on both front doors:

* gRPC: the status code below, with a `google.rpc.Status` in the trailers whose details hold an
  `ErrorInfo` (`reason` = the code, `domain` = `{DOMAIN}`, `metadata` such as `field` or `claim`),
  a `RetryInfo` when retrying later can help, and a `RequestInfo` with the request id;
* REST: the HTTP status below with an RFC 9457 `application/problem+json` body whose `reason` is the
  code (`type` = `urn:passerelle:problem:<code>`), plus `Retry-After` when retrying later can help.

Messages are public and never hold personal data, tokens or internal detail.
This file is generated from `gateway/core/errors.py` (`gateway security errors-doc > docs/errors.md`);
a test fails when they differ.

| reason | gRPC status | HTTP | meaning |
|---|---|---|---|
"""


def reason_table_markdown() -> str:
    rows = [f"| `{reason}` | `{info.grpc.name}` | {info.http} | {info.title} |" for reason, info in REASONS.items()]
    return _HEAD + "\n".join(rows) + "\n"
