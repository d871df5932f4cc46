"""Change notifications, the decisions: plain functions over plain data (no I/O, time passed in).

- ``matching``: which subscriptions get an event (its type, the subscription's follow list);
- ``authorise_delivery`` / ``consent_for_delivery``: the mandate and consent checks at delivery time,
  as for a look-up (``consent.authorise``, ``consent.check_consent``);
- ``relevant_categories`` and ``minimise_change``: what of the change the subscriber may see;
- ``notification_record``: the one audit record of a delivery (or its refusal);
- ``retry_delay_s`` / ``after_failure``: exponential backoff with jitter, dead letter after N attempts;
- ``subscription_tag`` / ``signing_secret``: a subscription row's MAC and its webhook secret, both from
  the gateway's keyed hash, so that a writer of the store can neither redirect events nor sign as the gateway;
- ``webhook_url_problem`` / ``address_problem``: the webhook URL's checks (https outside demo mode;
  no loopback, private, link-local, multicast or reserved address after resolution: SSRF).

Subjects are keyed pseudonyms everywhere here except in the change message itself.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from urllib.parse import urlsplit

from google.protobuf.message import Message

from consent import ConsentDecision, Decision, Mandate, Policy, check_consent
from consent.model import Consent
from gateway.core.change_events import EventStream
from gateway.core.minimise import Disclosure, disclosures, minimise, nested_people
from gateway.core.transparency import MAX_HIDDEN_DAYS
from gateway.core.types import AuditRecord, EventKind, Outcome, SubjectRole

__all__ = [
    "MODES",
    "DeadLetter",
    "Delivery",
    "FailureStep",
    "NewDelivery",
    "RecordFacts",
    "StoredEvent",
    "Subscription",
    "SubscriptionBacklog",
    "address_problem",
    "after_failure",
    "authorise_delivery",
    "consent_for_delivery",
    "embargo",
    "matching",
    "minimise_change",
    "notification_record",
    "relevant_categories",
    "retry_delay_s",
    "signing_secret",
    "subscription_tag",
    "tag_matches",
    "third_party_records",
    "webhook_url_problem",
]

#: Delivery modes: CloudEvents over a signed webhook, or the gRPC stream with acknowledgements.
MODES = ("webhook", "stream")
_MAX_URL = 2048


@dataclass(frozen=True, slots=True)
class Subscription:
    id: str
    consumer: str
    event_type: str          # "registry.population.v1.PersonChanged"
    purpose: str
    mode: str                # "webhook" | "stream"
    webhook_url: str = ""
    #: The row's integrity tag (``subscription_tag``), whatever the mode; the Standard Webhooks signing
    #: secret is derived from the gateway's key at each delivery (``signing_secret``), never stored.
    secret: str = ""
    created_us: int = 0
    follows: int = 0         # persons followed, as the store counts them


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event as the outbox keeps it: the subject as a pseudonym, the change message as read."""

    registry: str
    event_id: str
    sequence: int
    event_type: str
    subject: str             # keyed pseudonym
    categories: tuple[str, ...]
    effective_date: str
    change: bytes
    recorded_us: int         # when the gateway read it


@dataclass(frozen=True, slots=True)
class NewDelivery:
    """One event for one subscription, written in the same transaction as the event and the cursor."""

    subscription_id: str
    consumer: str
    mode: str
    registry: str
    event_id: str
    subject: str


@dataclass(frozen=True, slots=True)
class Delivery:
    """An outbox row as leased: the event, the attempts so far, whether its audit record exists."""

    id: int
    subscription_id: str
    consumer: str
    mode: str
    event: StoredEvent
    attempts: int
    audited: bool
    created_us: int


@dataclass(frozen=True, slots=True)
class DeadLetter:
    id: int
    subscription_id: str
    consumer: str
    event_id: str
    event_type: str
    attempts: int
    last_error: str
    failed_us: int


@dataclass(frozen=True, slots=True)
class SubscriptionBacklog:
    """For metrics: a subscription's events not yet delivered, and the oldest one's age."""

    subscription_id: str
    consumer: str
    pending: int
    oldest_created_us: int   # 0 when nothing is pending
    dead: int = 0


def matching(event_type: str, subscriptions: Iterable[Subscription], following: Collection[str]) -> list[Subscription]:
    """The subscriptions an event goes to: of its type, with the subject on their follow list
    (``following``: the ids of the subscriptions that follow the event's subject)."""
    return [s for s in subscriptions if s.event_type == event_type and s.id in following]


def authorise_delivery(policy: Policy, stream: EventStream, sub: Subscription, subject_id: str,
                       now_us: int) -> Decision:  # fmt: skip
    """The mandate check of a delivery, now: a mandate of the subscriber for the stream's rpc and
    the subscription's purpose, in force, its limits evaluated on the subject's identifier."""
    return policy.decide(consumer=sub.consumer, service=stream.full_name, purpose=sub.purpose, now_us=now_us,
                         request_fields={stream.subject_field: subject_id})


def consent_for_delivery(mandate: Mandate, candidates: Sequence[Consent], sub: Subscription, subject: str,
                         needed: frozenset[str], now_us: int) -> ConsentDecision | None:  # fmt: skip
    """None when the mandate needs no consent; else the consent check of a look-up (no case id: a
    notification belongs to no procedure, so an explicit request never covers it)."""
    if not mandate.needs_consent:
        return None
    return check_consent(candidates, subject=subject, consumer=sub.consumer, purpose=sub.purpose, now_us=now_us,
                         needed_categories=needed, explicit_only=mandate.explicit_request)


def relevant_categories(changed: Iterable[str], allowed_paths: Iterable[str], stream: EventStream) -> tuple[str, ...]:
    """The changed categories the subscriber may see: those of at least one field its mandate allows.

    A change of nothing the mandate allows is not delivered at all (nothing about it leaves).
    """
    cats = stream.payload.field_categories
    visible = {cats.get(p, "") for p in allowed_paths} - {""}
    return tuple(c for c in changed if c in visible)


def minimise_change(stream: EventStream, change: bytes, allowed: frozenset[str],
                    categories: Sequence[str]) -> tuple[Message, tuple[str, ...], tuple[Disclosure, ...]]:  # fmt: skip
    """The change message cut to ``allowed`` payload paths and the visible ``categories``; the paths
    left; the other persons whose data is left in it (household members ...: ``disclosures``).

    The subject's identifier stays (the subscriber named it to follow the person), and so does the
    effective date; the payload keeps only the fields the mandate allows, as a look-up's answer would.
    """
    message = stream.change_cls.FromString(change)
    payload = getattr(message, stream.payload_field)
    subjects = stream.payload.nested_subjects
    people = nested_people(payload, subjects) if subjects else []   # before minimisation, as for an answer
    fields = minimise(payload, allowed)
    disclosed = disclosures(payload, people) if people else ()
    if not fields:
        message.ClearField(stream.payload_field)
    enum = message.DESCRIPTOR.fields_by_name[stream.categories_field].enum_type
    message.ClearField(stream.categories_field)
    getattr(message, stream.categories_field).extend(enum.values_by_name[f"DATA_CATEGORY_{c}"].number
                                                     for c in categories)  # fmt: skip
    return message, fields, disclosed


def third_party_records(record: AuditRecord, disclosed: Sequence[Disclosure],
                        pseudonymise: Callable[[str], str]) -> list[AuditRecord]:  # fmt: skip
    """A record in the history of each other person whose data the notification carried, with only
    their fields: as a look-up's third parties (``ExchangePipeline._third_party_records``)."""
    out = []
    for d in disclosed:
        subject = pseudonymise(d.identifier)
        if not subject or subject == record.subject:
            continue
        extra = {**record.extra, "subject_role": SubjectRole.THIRD_PARTY.value, "disclosed_in": d.path}
        # The same opaque id as ``gateway.core.pipeline.third_party_request_id`` (not imported: the
        # pipeline's module imports the ports, which import this one).
        request_id = "tp-" + pseudonymise(f"third-party request\n{record.request_id}\n{subject}")
        out.append(replace(record, subject=subject, fields=d.fields, consent_id="", trace_id="", extra=extra,
                           request_id=request_id))
    return out


@dataclass(frozen=True, slots=True)
class RecordFacts:
    """What a notification record says besides the subscription and event."""

    outcome: Outcome
    reason: str = ""
    fields: tuple[str, ...] = ()
    legal_basis: str = ""
    legal_reference: str = ""
    consent_id: str = ""
    hidden_until_us: int = 0
    hidden_reason: str = ""
    categories: tuple[str, ...] = ()
    extra: Mapping[str, str] = field(default_factory=dict)


def embargo(mandate: Mandate, now_us: int) -> tuple[int, str]:
    """(hidden until, why) of a record made under ``mandate`` now: its ``hidden_days`` (at most
    ``MAX_HIDDEN_DAYS``) hide a notification from the person's page as they hide a look-up."""
    if mandate.hidden_days <= 0:
        return 0, ""
    return now_us + min(mandate.hidden_days, MAX_HIDDEN_DAYS) * 86_400_000_000, mandate.hidden_reason


def notification_record(sub: Subscription, stream: EventStream, event: StoredEvent, facts: RecordFacts,
                        *, now_us: int, latency_us: int) -> AuditRecord:  # fmt: skip
    """The audit record of one delivery: the citizen's history shows "<agency> was notified of your
    change of <categories>" (``extra["notification"] = "1"``), or the refusal."""
    extra = {"notification": "1", "event_id": event.event_id, "subscription": sub.id, "delivery": sub.mode,
             "changed": ",".join(facts.categories or event.categories), **facts.extra}  # fmt: skip
    return AuditRecord(
        time_us=now_us, kind=EventKind.EXCHANGE, consumer=sub.consumer, service=stream.full_name,
        purpose=sub.purpose, legal_basis=facts.legal_basis, legal_reference=facts.legal_reference,
        subject=event.subject, consent_id=facts.consent_id, case_id="", officer_id="",
        request_id=f"ntf-{event.registry}-{event.event_id}"[:128], trace_id="",
        fields=facts.fields if facts.outcome is Outcome.OK else (), outcome=facts.outcome, reason=facts.reason,
        latency_us=latency_us, protocol="webhook" if sub.mode == "webhook" else "grpc-stream",
        hidden_until_us=facts.hidden_until_us, hidden_reason=facts.hidden_reason, extra=extra,
    )  # fmt: skip


def _fields(sub: Subscription) -> str:
    """What decides where a subscription's events go, and under whose mandate: the tag and secret cover it."""
    return json.dumps([sub.id, sub.consumer, sub.event_type, sub.purpose, sub.mode, sub.webhook_url, sub.created_us])


def subscription_tag(sub: Subscription, keyed: Callable[[str], str]) -> str:
    """``mac1:`` + the keyed hash (``gateway.core.pseudonym.Pseudonymiser``) of the subscription's fields:
    kept in the row's ``secret`` column, checked before each delivery (``tag_matches``)."""
    return "mac1:" + keyed("passerelle subscription\n" + _fields(sub))


def tag_matches(sub: Subscription, keyed: Callable[[str], str]) -> bool:
    return hmac.compare_digest(sub.secret.encode(), subscription_tag(sub, keyed).encode())


def signing_secret(sub: Subscription, keyed: Callable[[str], str]) -> str:
    """The subscription's Standard Webhooks secret, ``whsec_`` + base64 of 32 bytes derived from the
    gateway's key and the subscription's fields: the same on every gateway that shares the key, in no store."""
    fields = _fields(sub)
    material = keyed("passerelle webhook secret 1\n" + fields) + keyed("passerelle webhook secret 2\n" + fields)
    return "whsec_" + base64.b64encode(hashlib.sha256(material.encode()).digest()).decode()


def retry_delay_s(attempt: int, *, base_s: float, max_s: float, jitter: float) -> float:
    """Seconds before attempt ``attempt + 1`` after ``attempt`` failed ones (1, 2 ...): exponential,
    capped at ``max_s``, with "equal jitter" (``jitter`` in [0, 1): half fixed, half random), so that
    subscribers failing together do not retry together and no retry comes at once."""
    ceiling = min(max_s, base_s * 2 ** max(0, attempt - 1))
    return float(ceiling / 2 + max(0.0, min(jitter, 1.0)) * ceiling / 2)


@dataclass(frozen=True, slots=True)
class FailureStep:
    dead: bool
    due_us: int          # when to try again (when not dead)


def after_failure(attempts: int, *, max_attempts: int, now_us: int, base_s: float, max_s: float,
                  jitter: float) -> FailureStep:  # fmt: skip
    """What a failed attempt (the ``attempts``-th) leads to: a dead letter once ``max_attempts`` failed,
    else the next attempt's time."""
    if attempts >= max_attempts:
        return FailureStep(True, 0)
    return FailureStep(False, now_us + int(retry_delay_s(attempts, base_s=base_s, max_s=max_s, jitter=jitter) * 1e6))


def webhook_url_problem(url: str, *, demo: bool) -> str | None:
    """Why ``url`` cannot be a webhook, or None: printable ASCII (RFC 3986: an internationalised host in
    its ``xn--`` form, other characters percent-encoded), https only (http too in demo mode), a host, no
    user info, no fragment, at most 2048 characters. The host's addresses are checked after resolution
    (``address_problem``), at each delivery."""
    if len(url) > _MAX_URL or not all(33 <= ord(c) <= 126 for c in url):
        return "webhook_url must be a URL of at most 2048 printable ASCII characters (xn-- hosts, %-encoding)"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "webhook_url is not a valid URL"
    schemes = ("https", "http") if demo else ("https",)
    if parts.scheme not in schemes:
        return "webhook_url must be an https:// URL" + ("" if not demo else " (or http:// in demo mode)")
    if not parts.hostname or parts.username is not None or parts.password is not None:
        return "webhook_url needs a host and no user information"
    if parts.fragment or (port is not None and port == 0):
        return "webhook_url may have no fragment and no port 0"
    return None


def address_problem(addresses: Sequence[str], *, demo: bool) -> str | None:
    """Why a webhook host that resolved to ``addresses`` may not be called, or None.

    Outside demo mode every address must be global: no loopback, private, link-local, multicast,
    reserved or unspecified one (an agency must not make the gateway call inside its own network).
    """
    if not addresses:
        return "the webhook host has no address"
    if demo:
        return None
    for text in addresses:
        try:
            ip = ipaddress.ip_address(text.split("%", 1)[0])
        except ValueError:
            return "the webhook host resolved to something that is not an IP address"
        if not all(map(_global, _with_embedded(ip))):
            return "the webhook host resolves to a loopback, private, link-local, multicast or reserved address"
    return None


_IP = ipaddress.IPv4Address | ipaddress.IPv6Address


def _with_embedded(ip: _IP) -> list[_IP]:
    """The address and the IPv4 one it carries, if any: IPv4-mapped (::ffff:a.b.c.d) and 6to4 (2002::/16,
    routed to its embedded IPv4 address; Python 3.11 counts 2002::/16 as global)."""
    if isinstance(ip, ipaddress.IPv4Address):
        return [ip]
    return [ip, *(v4 for v4 in (ip.ipv4_mapped, ip.sixtofour) if v4 is not None)]


def _global(ip: _IP) -> bool:
    site_local = isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local   # fec0::/10: global for Python 3.11
    return ip.is_global and not (ip.is_loopback or ip.is_private or ip.is_link_local or ip.is_multicast
                                 or ip.is_reserved or ip.is_unspecified or site_local)  # fmt: skip
