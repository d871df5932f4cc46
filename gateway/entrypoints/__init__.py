"""Front doors (gRPC, REST), the CLI, and what they share."""
