"""Talking to transparency-log witnesses: fetching and checking their cosignatures."""
