"""An immutable snapshot of purposes and mandates, indexed for the hot path."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from consent.decide import Decision, authorise
from consent.model import Mandate, Purpose

__all__ = ["Policy"]


@dataclass(frozen=True)
class Policy:
    purposes: Mapping[str, Purpose]
    mandates: tuple[Mandate, ...]
    _by_key: dict[tuple[str, str], tuple[Mandate, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        index: dict[tuple[str, str], list[Mandate]] = {}
        for m in self.mandates:
            index.setdefault((m.consumer, m.service), []).append(m)
        object.__setattr__(self, "_by_key", {k: tuple(v) for k, v in index.items()})

    @classmethod
    def of(cls, purposes: Iterable[Purpose], mandates: Iterable[Mandate]) -> Policy:
        return cls({p.code: p for p in purposes}, tuple(mandates))

    def decide(
        self,
        *,
        consumer: str,
        service: str,
        purpose: str,
        now_us: int,
        request_fields: Mapping[str, object] | None = None,
    ) -> Decision:
        candidates = self._by_key.get((consumer, service), ())
        return authorise(
            candidates,
            self.purposes,
            consumer=consumer,
            service=service,
            purpose=purpose,
            now_us=now_us,
            request_fields=request_fields,
        )

    def mandates_of(self, consumer: str) -> tuple[Mandate, ...]:
        return tuple(m for m in self.mandates if m.consumer == consumer)

    def consent_mandates(self, consumer: str, purpose: str) -> tuple[Mandate, ...]:
        """The consumer's mandates for ``purpose`` that need the data subject's consent."""
        return tuple(m for m in self.mandates if m.consumer == consumer and purpose in m.purposes and m.needs_consent)
