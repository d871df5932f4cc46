"""Change notifications' edges: webhook delivery (CloudEvents + Standard Webhooks) and reading a
registry's change-event stream over gRPC."""
