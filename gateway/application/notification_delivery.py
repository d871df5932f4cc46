"""Change notifications, the background work: reading registries' change streams into the outbox, and
delivering the outbox (webhooks, gRPC streams).

Reading (``EventReader``, one task per registry with a change-event rpc): from the store's cursor,
events are ingested in batches, each batch with its deliveries and the new cursor in ONE store
transaction; a broken stream is read again from the cursor after a backoff. Only events of
followed persons are kept.

Delivering (``Deliverer``), per outbox row, at delivery time:

1. the subscription still exists; the mandate (consumer, the stream's rpc, purpose) is in force NOW;
2. the change touches a category the mandate allows (else nothing leaves: ``skipped``, no record);
3. the event is minimised to the mandate's fields; the subject's consent is checked as for a
   look-up where the mandate needs one;
4. a refusal is recorded (``refused``: one record, outcome refused) and nothing is sent;
5. otherwise ONE audit record ("<agency> was notified of your change of ...") is made durable
   before the first attempt (fail closed: no record, no sending), then the event is sent.

Webhook failures are retried with exponential backoff and jitter, and end as dead letters after
``max_attempts``; each attempt is bounded by the sender's timeouts, and one subscription holds at
most ``per_subscription`` of the ``workers``: a hanging endpoint never blocks the others. Events
are ordered per subscription and subject (the store never leases one while an older one is
pending), delivered at least once, each with its registry's stable event id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
from collections import Counter
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from google.protobuf import json_format
from google.protobuf.message import Message
from opentelemetry import trace

from consent import allowed_fields
from gateway._pb.passerelle.gateway.v1 import subscriptions_pb2 as pb
from gateway.application.notifications import NotificationSettings
from gateway.application.runtime import Gateway
from gateway.core.change_events import EventStream, categories_of, read_event, sequence_of
from gateway.core.errors import GatewayError
from gateway.core.notifications import (
    Delivery,
    NewDelivery,
    RecordFacts,
    StoredEvent,
    Subscription,
    SubscriptionBacklog,
    after_failure,
    authorise_delivery,
    consent_for_delivery,
    embargo,
    matching,
    minimise_change,
    notification_record,
    relevant_categories,
    signing_secret,
    tag_matches,
    third_party_records,
)
from gateway.core.ports import AuditQuery, ChangeFeed, NotificationStore, WebhookSender
from gateway.core.types import Outcome

__all__ = ["Deliverer", "EventReader", "NotificationStats", "Prepared"]

log = logging.getLogger("passerelle.notifications")
_tracer = trace.get_tracer("passerelle.notifications")


@dataclass
class NotificationStats:
    """Totals for metrics (``observability.notifications``): labels are registry and consumer ids only."""

    read: Counter[str] = field(default_factory=Counter)          # registry -> events read
    bad: Counter[str] = field(default_factory=Counter)           # registry -> events that could not be read
    delivered: Counter[str] = field(default_factory=Counter)     # consumer -> events delivered
    failed: Counter[str] = field(default_factory=Counter)        # consumer -> failed attempts
    refused: Counter[str] = field(default_factory=Counter)       # consumer -> refused at delivery time
    dead: Counter[str] = field(default_factory=Counter)          # consumer -> dead letters
    backlog: Sequence[SubscriptionBacklog] = ()                  # refreshed by the delivery loop
    #: Called with (consumer, seconds from the gateway reading the event to its delivery).
    on_delivered: list[Callable[[str, float], None]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Prepared:
    """A delivery allowed and recorded: what leaves, for either mode."""

    delivery: Delivery
    subscription: Subscription
    event: dict[str, object]     # CloudEvents attributes and data
    message: pb.NotificationEvent


class EventReader:
    """Reads one registry's change stream into the store, from the persisted cursor."""

    def __init__(self, registry: str, stream: EventStream, feed: ChangeFeed, store: NotificationStore,
                 gateway: Gateway, settings: NotificationSettings, stats: NotificationStats,
                 clock_us: Callable[[], int]) -> None:  # fmt: skip
        self.registry, self.stream, self.feed, self.store = registry, stream, feed, store
        self.gateway, self.settings, self.stats, self._clock_us = gateway, settings, stats, clock_us
        self.connected = asyncio.Event()

    async def run(self) -> None:
        """Until cancelled: read, ingest; reconnect from the cursor with backoff (0.5 s doubling to 30 s)."""
        backoff = 0.5
        while True:
            try:
                await self._read_once()
                backoff = 0.5
            except (ConnectionError, OSError) as exc:
                log.warning("change stream of %s interrupted (%s); reading again in %.1f s", self.registry,
                            type(exc).__name__, backoff)  # fmt: skip
            except GatewayError as exc:   # the store or the log refused: retry, the cursor did not move
                log.warning("change events of %s not ingested (%s)", self.registry, exc.reason)
            except Exception as exc:   # a store failure: the cursor did not move either; never the reader's end
                log.warning("change events of %s not ingested (%s)", self.registry, type(exc).__name__)
            self.connected.clear()
            await asyncio.sleep(backoff * (0.5 + random.random() / 2))
            backoff = min(backoff * 2, 30.0)

    async def _read_once(self) -> None:
        queue: asyncio.Queue[Message | None] = asyncio.Queue(maxsize=self.settings.read_batch * 4)

        async def pump() -> None:
            try:
                async for envelope in self.feed.watch(await self.store.cursor(self.registry)):
                    self.connected.set()
                    await queue.put(envelope)
            finally:
                await queue.put(None)

        task = asyncio.create_task(pump())
        try:
            self.connected.set()
            while True:
                first = await queue.get()
                if first is None:
                    break
                batch = [first]
                while len(batch) < self.settings.read_batch and not queue.empty():
                    nxt = queue.get_nowait()
                    if nxt is None:
                        await self.ingest(batch)
                        await task
                        return
                    batch.append(nxt)
                await self.ingest(batch)
            await task   # re-raises the stream's end
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError, OSError):
                await task

    async def ingest(self, envelopes: Sequence[Message]) -> int:
        """One transaction: the followed persons' events, their deliveries, the cursor after the batch."""
        now, events, cursor = self._clock_us(), [], 0
        for envelope in envelopes:
            cursor = max(cursor, sequence_of(envelope))   # an out-of-range sequence never moves it
            try:
                e = read_event(self.stream, envelope)
            except ValueError:
                self.stats.bad[self.registry] += 1
                continue
            events.append(StoredEvent(self.registry, e.event_id, e.sequence, e.event_type,
                                      self.gateway.pseudonymise(e.subject), e.categories, e.effective_date,
                                      e.change, now))  # fmt: skip
        self.stats.read[self.registry] += len(envelopes)
        with _tracer.start_as_current_span("notifications.ingest") as span:
            span.set_attribute("passerelle.registry", self.registry)
            span.set_attribute("passerelle.events", len(envelopes))
            span.set_attribute("passerelle.event_ids", [e.event_id for e in events][:100])   # no subject: ids only
            followers = await self.store.followers(self.stream.event_type, [e.subject for e in events])
            subs = {s.id: s for s in await self.store.subscriptions()} if followers else {}
            deliveries = [NewDelivery(s.id, s.consumer, s.mode, self.registry, e.event_id, e.subject)
                          for e in events for s in matching(e.event_type, subs.values(), followers.get(e.subject, ()))]
            kept = [e for e in events if e.subject in followers]
            return await self.store.ingest(self.registry, cursor, kept, deliveries)


def _internal(exc: Exception) -> str:
    """A dead letter's error for an exception: its type only (its text may hold data)."""
    return f"internal error ({type(exc).__name__})"


def _iso(us: int) -> str:
    return datetime.fromtimestamp(us / 1e6, UTC).isoformat().replace("+00:00", "Z")


class Deliverer:
    """Decides, records and delivers outbox rows (``mode`` webhook here; streams via ``stream``)."""

    def __init__(self, gateway: Gateway, store: NotificationStore, sender: WebhookSender,
                 streams: Mapping[str, tuple[str, EventStream]], settings: NotificationSettings,
                 stats: NotificationStats, clock_us: Callable[[], int]) -> None:  # fmt: skip
        self.gateway, self.store, self.sender, self.settings = gateway, store, sender, settings
        self.streams = {s.event_type: (registry, s) for registry, s in streams.values()}
        self.stats, self._clock_us = stats, clock_us
        self.owner = "w-" + secrets.token_hex(6)
        self._busy: Counter[str] = Counter()
        self._paused: dict[str, int] = {}
        self._wake = asyncio.Event()
        self._acked: dict[str, asyncio.Event] = {}

    # --- the decision, the record --------------------------------------------------------------

    async def prepare(self, d: Delivery, owner: str) -> Prepared | None:
        """Decide NOW; record the refusal or the delivery (once); None when nothing is to be sent."""
        sub = await self.store.subscription(d.subscription_id)
        found = self.streams.get(d.event.event_type)
        if sub is None or found is None:
            await self.store.finish(d.id, owner, "skipped", self._clock_us())
            return None
        if not tag_matches(sub, self.gateway.pseudonymise):   # written by someone without the gateway's key
            log.warning("notification subscription %s fails its integrity check; nothing sent", sub.id)
            await self.store.dead(d.id, owner, "subscription fails its integrity check", self._clock_us())
            self.stats.dead[sub.consumer] += 1
            return None
        registry, stream = found
        now = self._clock_us()
        message = stream.change_cls.FromString(d.event.change)
        subject_id = str(getattr(message, stream.subject_field))
        d = self._as_the_change_says(d, stream, message, subject_id)
        decision = authorise_delivery(self.gateway.policy, stream, sub, subject_id, now)
        if not decision.allowed or decision.mandate is None:
            await self._refuse(d, sub, stream, owner, decision.reason, now)
            return None
        mandate = decision.mandate
        allowed = allowed_fields(mandate, stream.payload.field_categories)
        categories = relevant_categories(d.event.categories, allowed, stream)
        if not categories:
            await self.store.finish(d.id, owner, "skipped", now)
            return None
        change, fields, disclosed = minimise_change(stream, d.event.change, allowed, categories)
        needed = frozenset(c for f in fields if (c := stream.payload.field_categories.get(f, "")))
        candidates = await self.gateway.consents.for_subject(d.event.subject, sub.consumer, sub.purpose) \
            if mandate.needs_consent else ()
        verdict = consent_for_delivery(mandate, candidates, sub, d.event.subject, needed, now)
        hidden_until, hidden_reason = embargo(mandate, now)   # as a look-up under this mandate
        if verdict is not None and (not verdict.allowed or verdict.consent is None):
            await self._refuse(d, sub, stream, owner, verdict.reason, now, hidden=(hidden_until, hidden_reason))
            return None
        consent_id = verdict.consent.id if verdict is not None and verdict.consent is not None else ""
        if d.audited and not await self._recorded(d, sub, stream, registry):
            log.warning("notification outbox row %s says recorded and has no record; recording it now", d.id)
            d = replace(d, audited=False)
        if not d.audited:
            if verdict is not None and verdict.consent is not None and verdict.consent.single_use \
                    and not await self.gateway.consents.spend(consent_id, now):
                await self._refuse(d, sub, stream, owner, "CONSENT_SPENT", now, hidden=(hidden_until, hidden_reason))
                return None
            facts = RecordFacts(Outcome.OK, fields=fields, legal_basis=mandate.legal_basis,
                                legal_reference=mandate.legal_reference, consent_id=consent_id,
                                hidden_until_us=hidden_until, hidden_reason=hidden_reason,
                                categories=categories)  # fmt: skip
            record = notification_record(sub, stream, d.event, facts, now_us=now, latency_us=now - d.created_us)
            others = third_party_records(record, disclosed, self.gateway.pseudonymise)
            await asyncio.gather(*map(self.gateway.audit.append, (record, *others)))   # fail closed: nothing sent
            if not await self.store.mark_audited(d.id, owner):
                return None   # the lease ran out meanwhile: another worker has the row, and sends it

        return self._prepared(d, sub, registry, stream, change)

    async def _recorded(self, d: Delivery, sub: Subscription, stream: EventStream, registry: str) -> bool:
        """Whether the log holds this delivery's record (outcome ok): the outbox's ``audited`` flag only
        spares a retry a second record, it never stands for one (a database writer can set it)."""
        request_id = notification_record(sub, stream, d.event, RecordFacts(Outcome.OK), now_us=0,
                                         latency_us=0).request_id  # fmt: skip
        q = AuditQuery(subject=d.event.subject, consumer=sub.consumer, purpose=sub.purpose, since_us=d.created_us,
                       limit=1000)  # fmt: skip
        while batch := list(await self.gateway.audit.query(q)):
            if any(s.record.request_id == request_id and s.record.extra.get("subscription") == sub.id
                   and s.record.outcome is Outcome.OK for s in batch):  # fmt: skip
                return True
            if len(batch) < q.limit:
                return False
            q = replace(q, after_seq=batch[-1].seq)
        return False

    def _as_the_change_says(self, d: Delivery, stream: EventStream, message: Message, subject_id: str) -> Delivery:
        """The row with the subject and categories its change message names: whose history gets the record,
        whose consent counts and what the agency is told changed are never what the outbox's columns say
        (a database writer could change them)."""
        subject, categories = self.gateway.pseudonymise(subject_id), categories_of(stream, message)
        if (subject, categories) == (d.event.subject, d.event.categories):
            return d
        log.warning("notification outbox row %s disagrees with its change message; the message is used", d.id)
        return replace(d, event=replace(d.event, subject=subject, categories=categories))

    def _prepared(self, d: Delivery, sub: Subscription, registry: str, stream: EventStream,
                  change: Message) -> Prepared:  # fmt: skip
        data = json_format.MessageToDict(change)
        subject = str(getattr(change, stream.subject_field))
        source = f"passerelle://registries/{registry}"
        time = datetime.fromtimestamp(d.event.recorded_us / 1e6, UTC)
        event: dict[str, object] = {"id": d.event.event_id, "source": source, "type": stream.event_type,
                                    "subject": subject, "time": time, "data": data,
                                    "dataschema": f"proto:{stream.event_type}"}  # fmt: skip
        message = pb.NotificationEvent(
            id=d.event.event_id, source=source, type=stream.event_type, subject=subject,
            time=_iso(d.event.recorded_us), data_json=json_format.MessageToJson(change, indent=None),
            data=change.SerializeToString(), subscription_id=sub.id,
        )  # fmt: skip
        return Prepared(d, sub, event, message)

    async def _refuse(self, d: Delivery, sub: Subscription, stream: EventStream, owner: str, reason: str,
                      now: int, *, hidden: tuple[int, str] = (0, "")) -> None:  # fmt: skip
        facts = RecordFacts(Outcome.REFUSED, reason=reason, hidden_until_us=hidden[0], hidden_reason=hidden[1])
        record = notification_record(sub, stream, d.event, facts, now_us=now, latency_us=now - d.created_us)
        await self.gateway.audit.append(record)   # AUDIT_UNAVAILABLE: the row stays leased, tried again later
        await self.store.finish(d.id, owner, "refused", now)
        self.stats.refused[sub.consumer] += 1

    # --- webhooks ----------------------------------------------------------------------------

    async def run_webhooks(self) -> None:
        """Until cancelled: lease due webhook rows and deliver them, bounded per subscription."""
        workers = asyncio.Semaphore(self.settings.workers)
        tasks: set[asyncio.Task[None]] = set()
        while True:
            free = self.settings.workers - len(tasks)
            try:
                rows = await self._lease(free) if free > 0 else []
            except Exception as exc:   # the outbox is unreachable: try again after a pause, never stop
                log.warning("notification outbox not readable (%s)", type(exc).__name__)
                rows = []
            for d in rows:
                task = asyncio.create_task(self._deliver(d, workers))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            if not rows:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.settings.poll_s)

    async def deliver_due(self) -> int:
        """One pass: lease what is due now and deliver it, waiting for every attempt (tests, tools)."""
        rows = await self._lease(self.settings.workers)
        workers = asyncio.Semaphore(self.settings.workers)
        await asyncio.gather(*(self._deliver(d, workers) for d in rows))
        return len(rows)

    async def _lease(self, n: int) -> list[Delivery]:
        now = self._clock_us()
        lease_us = int(self.settings.lease_s * 1e6)
        rows = await self.store.lease(self.owner, now, lease_us, n, mode="webhook")
        out = []
        for d in rows:
            paused = self._paused.get(d.subscription_id, 0)
            if paused > now or self._busy[d.subscription_id] >= self.settings.per_subscription:
                # Given back at once, not an attempt: this subscription has its share in flight or is backing off.
                await self.store.release(d.id, self.owner, max(paused, now + int(self.settings.poll_s * 1e6)))
                continue
            self._busy[d.subscription_id] += 1
            out.append(d)
        return out

    def wake(self) -> None:
        self._wake.set()

    async def _deliver(self, d: Delivery, workers: asyncio.Semaphore) -> None:
        try:
            async with workers:
                with _tracer.start_as_current_span("notifications.deliver") as span:
                    span.set_attribute("passerelle.consumer", d.consumer)
                    span.set_attribute("passerelle.subscription", d.subscription_id)
                    span.set_attribute("passerelle.delivery", "webhook")
                    span.set_attribute("passerelle.event_id", d.event.event_id)   # the ingest span names it too
                    outcome = await self._deliver_webhook(d)
                    span.set_attribute("passerelle.outcome", outcome)
        except GatewayError as exc:   # the log or a store refused: the lease runs out, tried again
            log.warning("notification not delivered now (%s)", exc.reason)
        except Exception as exc:   # the type only: an exception's text may hold data
            log.warning("notification delivery failed (%s)", type(exc).__name__)
            with contextlib.suppress(Exception):   # an attempt, so that a row that always fails ends as a dead letter
                await self._failed(d, d.subscription_id, d.consumer, _internal(exc))
        finally:
            self._busy[d.subscription_id] -= 1
            if self._busy[d.subscription_id] <= 0:
                del self._busy[d.subscription_id]
            self._wake.set()   # a slot is free, and the subject's next event may be due: lease again now

    async def _deliver_webhook(self, d: Delivery) -> str:
        prepared = await self.prepare(d, self.owner)
        if prepared is None:
            return "not-sent"
        sub = prepared.subscription
        secret = signing_secret(sub, self.gateway.pseudonymise)
        result = await self.sender.send(sub.webhook_url, secret, prepared.event, d.event.event_id)
        now = self._clock_us()
        if result.ok:
            if await self.store.finish(d.id, self.owner, "delivered", now):
                self._delivered(sub.consumer, d, now)
            self._paused.pop(sub.id, None)
            return "delivered"
        return await self._failed(d, sub.id, sub.consumer, result.error, permanent=result.permanent)

    async def _failed(self, d: Delivery, subscription_id: str, consumer: str, error: str, *,
                      permanent: bool = False) -> str:  # fmt: skip
        """A failed attempt: again after a backoff, or a dead letter after ``max_attempts`` (or at once)."""
        now = self._clock_us()
        self.stats.failed[consumer] += 1
        step = after_failure(d.attempts + 1, max_attempts=self.settings.max_attempts, now_us=now,
                             base_s=self.settings.retry_base_s, max_s=self.settings.retry_max_s,
                             jitter=random.random())  # fmt: skip
        if step.dead or permanent:
            await self.store.dead(d.id, self.owner, error, now)
            self.stats.dead[consumer] += 1
            return "dead"
        await self.store.retry_later(d.id, self.owner, step.due_us, error)
        self._paused[subscription_id] = step.due_us   # the subscription's other rows wait too: no hammering
        return "retry"

    def _delivered(self, consumer: str, d: Delivery, now: int) -> None:
        self.stats.delivered[consumer] += 1
        for listener in self.stats.on_delivered:
            listener(consumer, max(0.0, (now - d.created_us) / 1e6))

    # --- streams -----------------------------------------------------------------------------

    def acked(self, sub: Subscription, delivery_ids: list[int]) -> None:
        """Told by ``AckEvents`` in this process: the events count as delivered; a waiting stream may send more."""
        self.stats.delivered[sub.consumer] += len(delivery_ids)
        event = self._acked.get(sub.id)
        if event is not None:
            event.set()

    async def stream(self, sub: Subscription, max_unacked: int,
                     check: Callable[[], None]) -> AsyncGenerator[pb.NotificationEvent, None]:  # fmt: skip
        """The subscription's events, each recorded before it is yielded; at most ``max_unacked`` sent
        and not acknowledged (an event unacknowledged for ``lease_s`` is sent again). ``check`` runs
        before each event is decided (the caller's token, again): what it raises ends the stream."""
        owner = "s-" + secrets.token_hex(6)
        lease_us = int(self.settings.lease_s * 1e6)
        sent: dict[int, int] = {}   # delivery id -> lease end
        wake = self._acked.setdefault(sub.id, asyncio.Event())
        while True:
            now = self._clock_us()
            acked = await self.store.unacked(sub.id, owner, list(sent)) if sent else set()
            sent = {i: until for i, until in sent.items() if i in acked and until > now}
            room = max_unacked - len(sent)
            rows = await self.store.lease(owner, now, lease_us, room, mode="stream", subscription_id=sub.id) \
                if room > 0 else []
            for d in rows:
                check()
                with _tracer.start_as_current_span("notifications.deliver") as span:
                    span.set_attribute("passerelle.consumer", d.consumer)
                    span.set_attribute("passerelle.subscription", d.subscription_id)
                    span.set_attribute("passerelle.delivery", "stream")
                    span.set_attribute("passerelle.event_id", d.event.event_id)
                    try:
                        prepared = await self.prepare(d, owner)
                    except GatewayError:   # the log refused: the stream ends with its reason
                        raise
                    except Exception as exc:   # this row cannot be sent: a dead letter, not the stream's end
                        log.warning("notification not streamed (%s)", type(exc).__name__)
                        await self.store.dead(d.id, owner, _internal(exc), now)
                        self.stats.dead[d.consumer] += 1
                        continue
                if prepared is None:
                    continue
                sent[d.id] = now + lease_us
                yield prepared.message
            if not rows:
                wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), self.settings.poll_s)
