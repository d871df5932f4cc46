"""The exchange pipeline: use cases, ports, errors and plain data types. No I/O here."""
