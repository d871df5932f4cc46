"""Change notifications' pure decisions (``gateway.core.notifications``, ``gateway.core.change_events``)."""

from __future__ import annotations

import pytest

from consent import Mandate, Policy, Purpose
from consent.model import Consent
from gateway._pb.passerelle.options.v1 import options_pb2
from gateway._pb.registry.population.v1 import population_pb2 as pop
from gateway.core.change_events import EventStream, load_event_streams, read_event
from gateway.core.notifications import (
    RecordFacts,
    StoredEvent,
    Subscription,
    address_problem,
    after_failure,
    authorise_delivery,
    consent_for_delivery,
    matching,
    minimise_change,
    notification_record,
    relevant_categories,
    retry_delay_s,
    third_party_records,
    webhook_url_problem,
)
from gateway.core.types import Outcome

SERVICE = "registry.population.v1.PopulationRegistry/WatchChanges"
NID, MEMBER = "1990010112345", "2015030412345"


@pytest.fixture(scope="module")
def stream() -> EventStream:
    return load_event_streams(["registry.population.v1.PopulationRegistry"])[SERVICE]


def _sub(**kw: str) -> Subscription:
    base = {"id": "sub_1", "consumer": "cedies", "event_type": "registry.population.v1.PersonChanged",
            "purpose": "student-aid", "mode": "webhook", "webhook_url": "https://agency.example/hook"}
    return Subscription(**(base | kw))  # type: ignore[arg-type]


def _change() -> pop.PersonChanged:
    return pop.PersonChanged(
        national_id=NID, changed=[options_pb2.DATA_CATEGORY_ADDRESS],
        person=pop.Person(national_id=NID, given_names="Anne", family_name="Muller", birth_place="Esch",
                          address=pop.Address(street="rue de la Gare", postcode="L-1234"),
                          household_members=[pop.HouseholdMember(national_id=MEMBER, given_names="Tom")]),
    )  # fmt: skip


def _mandate(**kw: object) -> Mandate:
    base: dict[str, object] = {"id": "m", "consumer": "cedies", "service": SERVICE,
                               "purposes": frozenset({"student-aid"}), "legal_basis": "A6-1-e",
                               "fields": frozenset({"given_names", "address"})}  # fmt: skip
    return Mandate(**(base | kw))  # type: ignore[arg-type]


def _policy(*mandates: Mandate) -> Policy:
    return Policy.of([Purpose("student-aid", {"en": "Student aid"}, {})], mandates)


def test_the_contract_marks_the_population_registers_change_stream(stream: EventStream) -> None:
    assert (stream.event_type, stream.cursor_field, stream.subject_field, stream.payload_field) == (
        "registry.population.v1.PersonChanged", "after_sequence", "national_id", "person")
    assert stream.payload.field_categories["address"] == "ADDRESS"


def test_a_change_event_rpc_is_never_a_consumer_operation() -> None:
    from gateway.core.contracts import load_operations

    assert SERVICE not in load_operations(["registry.population.v1.PopulationRegistry"])


def test_read_event_takes_sequence_id_subject_and_categories(stream: EventStream) -> None:
    envelope = pop.PersonChangeEvent(sequence=7, event_id="rnpp-7", change=_change())
    event = read_event(stream, envelope)
    assert (event.sequence, event.event_id, event.subject, event.categories) == (7, "rnpp-7", NID, ("ADDRESS",))


def test_an_event_without_subject_or_id_cannot_be_read(stream: EventStream) -> None:
    with pytest.raises(ValueError):
        read_event(stream, pop.PersonChangeEvent(sequence=1, event_id="", change=_change()))
    with pytest.raises(ValueError):
        read_event(stream, pop.PersonChangeEvent(sequence=1, event_id="x", change=pop.PersonChanged()))


def test_matching_needs_the_event_type_and_the_follow_list() -> None:
    a, b, c = _sub(id="a"), _sub(id="b"), _sub(id="c", event_type="registry.business.v1.CompanyChanged")
    assert matching("registry.population.v1.PersonChanged", [a, b, c], {"a", "c"}) == [a]


def test_delivery_is_refused_without_a_mandate_for_the_stream(stream: EventStream) -> None:
    decision = authorise_delivery(_policy(), stream, _sub(), NID, now_us=1)
    assert (decision.allowed, decision.reason) == (False, "NO_MANDATE")


def test_delivery_is_refused_for_another_purpose(stream: EventStream) -> None:
    decision = authorise_delivery(_policy(_mandate()), stream, _sub(purpose="other"), NID, now_us=1)
    assert not decision.allowed


def test_delivery_is_allowed_by_a_mandate_in_force(stream: EventStream) -> None:
    assert authorise_delivery(_policy(_mandate()), stream, _sub(), NID, now_us=1).allowed


def test_a_consent_mandate_needs_a_live_consent_at_delivery(stream: EventStream) -> None:
    mandate = _mandate(legal_basis="A6-1-a")
    live = Consent("c1", "pseudo", "cedies", "student-aid", granted_us=1)
    revoked = Consent("c1", "pseudo", "cedies", "student-aid", granted_us=1, revoked_us=5)
    assert consent_for_delivery(_mandate(), [], _sub(), "pseudo", frozenset(), 10) is None
    ok = consent_for_delivery(mandate, [live], _sub(), "pseudo", frozenset(), 10)
    assert ok is not None and ok.allowed
    refused = consent_for_delivery(mandate, [revoked], _sub(), "pseudo", frozenset(), 10)
    assert refused is not None and (refused.allowed, refused.reason) == (False, "CONSENT_REVOKED")


def test_minimisation_keeps_the_mandates_fields_and_the_visible_categories(stream: EventStream) -> None:
    message, fields, disclosed = minimise_change(stream, _change().SerializeToString(),
                                                 frozenset({"given_names", "address"}), ["ADDRESS"])  # fmt: skip
    assert isinstance(message, pop.PersonChanged)
    assert set(fields) == {"given_names", "address"}
    assert message.national_id == NID and message.person.address.street == "rue de la Gare"
    assert not message.person.birth_place and not message.person.household_members and not message.person.family_name
    assert disclosed == ()


def test_a_household_member_whose_data_left_gets_a_record_of_their_own(stream: EventStream) -> None:
    _, _, disclosed = minimise_change(stream, _change().SerializeToString(),
                                      frozenset({"address", "household_members.given_names"}), ["ADDRESS"])
    assert [(d.identifier, d.fields) for d in disclosed] == [(MEMBER, ("given_names",))]
    event = StoredEvent("rnpp", "rnpp-1", 1, "registry.population.v1.PersonChanged", "p-subject", ("ADDRESS",),
                        "", b"", 0)  # fmt: skip
    record = notification_record(_sub(), stream, event, RecordFacts(Outcome.OK, fields=("address",)),
                                 now_us=5, latency_us=1)  # fmt: skip
    others = third_party_records(record, disclosed, lambda v: "p-" + v)
    assert [(r.subject, r.fields, r.extra["subject_role"]) for r in others] == [
        (f"p-{MEMBER}", ("given_names",), "third_party")]
    assert others[0].request_id.startswith("tp-") and others[0].request_id != record.request_id


def test_a_change_the_mandate_cannot_see_is_not_delivered(stream: EventStream) -> None:
    assert relevant_categories(["CIVIL_STATUS"], {"given_names", "address"}, stream) == ()
    assert relevant_categories(["ADDRESS", "CIVIL_STATUS"], {"address"}, stream) == ("ADDRESS",)


def test_the_record_says_notification_and_what_changed(stream: EventStream) -> None:
    event = StoredEvent("rnpp", "rnpp-9", 9, "registry.population.v1.PersonChanged", "p", ("ADDRESS",), "", b"", 0)
    refused = notification_record(_sub(), stream, event, RecordFacts(Outcome.REFUSED, reason="NO_MANDATE",
                                                                      fields=("address",)), now_us=5, latency_us=1)
    assert refused.service == SERVICE and refused.subject == "p" and refused.fields == ()
    assert refused.extra["notification"] == "1" and refused.extra["changed"] == "ADDRESS"
    assert refused.extra["event_id"] == "rnpp-9" and refused.protocol == "webhook"


def test_retries_back_off_exponentially_with_jitter_up_to_the_cap() -> None:
    low = [retry_delay_s(n, base_s=1, max_s=60, jitter=0.0) for n in (1, 2, 3, 4, 10)]
    high = [retry_delay_s(n, base_s=1, max_s=60, jitter=0.999) for n in (1, 2, 3, 4, 10)]
    assert low == [0.5, 1.0, 2.0, 4.0, 30.0]
    assert all(lo <= hi < 2 * lo + 1e-9 for lo, hi in zip(low, high, strict=True))
    assert high[-1] <= 60


def test_the_last_allowed_attempt_ends_as_a_dead_letter() -> None:
    assert after_failure(2, max_attempts=3, now_us=0, base_s=1, max_s=10, jitter=0).due_us == 1_000_000
    assert after_failure(3, max_attempts=3, now_us=0, base_s=1, max_s=10, jitter=0).dead


@pytest.mark.parametrize("url", ["http://agency.example/hook", "ftp://agency.example/", "https://user:pw@a.example/",
                                 "https:///nohost", "https://a.example/h#frag", "https://a.example/ hook",
                                 "https://exämple.org/hook", "https://a.example/\u202ekooh"])
def test_webhook_urls_outside_demo_mode_are_https_with_a_host(url: str) -> None:
    assert webhook_url_problem(url, demo=False) is not None


def test_demo_mode_accepts_http_on_loopback() -> None:
    assert webhook_url_problem("http://127.0.0.1:9000/hook", demo=True) is None
    assert address_problem(["127.0.0.1"], demo=True) is None
    assert webhook_url_problem("https://agency.example/hook", demo=False) is None


@pytest.mark.parametrize("address", ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254",
                                     "224.0.0.1", "0.0.0.0", "::1", "fe80::1", "fc00::1", "::ffff:10.0.0.1",
                                     "100.64.0.1"])  # fmt: skip
def test_ssrf_no_internal_address_is_called_outside_demo_mode(address: str) -> None:
    assert address_problem(["93.184.215.14", address], demo=False) is not None


def test_a_public_address_may_be_called() -> None:
    assert address_problem(["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"], demo=False) is None
    assert address_problem([], demo=False) is not None


@pytest.mark.parametrize("address", ["2002:7f00:1::1", "2002:a00:1::1", "2002:c0a8:101::1", "2002:a9fe:a9fe::",
                                     "fec0::1", "::127.0.0.1", "64:ff9b::a00:1",
                                     "2001:0:4136:e378:8000:63bf:3fff:fdd2"])  # fmt: skip
def test_ssrf_an_ipv6_address_that_carries_an_internal_ipv4_one_is_not_called(address: str) -> None:
    """6to4 (2002::/16) routes to the IPv4 address it embeds; site-local (fec0::/10) is internal."""
    assert address_problem([address], demo=False) is not None


def test_ssrf_a_6to4_address_of_a_public_ipv4_one_may_be_called() -> None:
    assert address_problem(["2002:5db8:d70e::1"], demo=False) is None   # 93.184.215.14
