"""The application layer: the gateway's own features as use cases over the core and its ports."""
