"""The REST door's bulk line for an item is the proto3 JSON of the item the gRPC door sends."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway._pb.registry.population.v1 import population_pb2
from gateway.application.bulk import ItemAnswer
from gateway.core.errors import GatewayError, Reason
from gateway.entrypoints.bulk import answer_json, item_json, item_message

_TEXT = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=12)


@settings(max_examples=80, deadline=None)
@given(index=st.integers(0, 100_000), nid=_TEXT, given=_TEXT, family=_TEXT, year=st.integers(0, 9999),
       members=st.lists(st.tuples(_TEXT, _TEXT), max_size=3))
def test_an_answered_item_is_the_same_line(index: int, nid: str, given: str, family: str, year: int,
                                           members: list[tuple[str, str]]) -> None:
    person = population_pb2.Person(national_id=nid, given_names=given, family_name=family)
    person.birth_date.year = year
    for m_nid, m_given in members:
        person.household_members.add(national_id=m_nid, given_names=m_given)
    result = ItemAnswer(index, person, None)
    expected = item_json(item_message(result, "rid-1"))
    assert json.dumps(answer_json(result, "rid-1")) == json.dumps(expected)


def test_a_refused_item_is_the_same_line() -> None:
    result = ItemAnswer(7, None, GatewayError(Reason.NO_MANDATE, "no mandate"))
    assert answer_json(result, "rid-2") == item_json(item_message(result, "rid-2"))


def test_the_collector_is_paused_while_any_body_is_parsed_and_restored_after() -> None:
    import gc

    from gateway.entrypoints.bulk import _CyclicGcPaused, _parsed_without_cyclic_gc

    assert gc.isenabled()
    with _CyclicGcPaused():
        assert not gc.isenabled()
        with _CyclicGcPaused():   # two bodies at once: the second's end does not enable it early
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(GatewayError):
        _parsed_without_cyclic_gc(b'{"items": [1, 2', "application/json", None)
    assert gc.isenabled()   # also after a body that does not parse
    gc.disable()
    try:
        with _CyclicGcPaused():
            pass
        assert not gc.isenabled()   # a collector paused by someone else stays paused
    finally:
        gc.enable()


def test_bodies_parsed_back_to_back_do_not_keep_the_collector_from_running(monkeypatch: pytest.MonkeyPatch) -> None:
    """Overlapping parses (two bulk calls of one agency started half a parse apart, or a busy hour of
    them) keep the pause open: reference cycles the rest of the process makes are still collected."""
    import gc
    import weakref

    from gateway.entrypoints import bulk

    now = [1000.0]
    monkeypatch.setattr(bulk._CyclicGcPaused, "_clock", staticmethod(lambda: now[0]), raising=False)

    class Node:
        pass

    assert gc.isenabled()
    first = bulk._CyclicGcPaused()
    first.__enter__()
    node = Node()
    node.self = node   # type: ignore[attr-defined]
    garbage = weakref.ref(node)
    del node
    try:
        for _ in range(10):   # each parse starts before the previous one ends: the pause never ends by itself
            now[0] += 1.0
            nxt = bulk._CyclicGcPaused()
            nxt.__enter__()
            first.__exit__(None, None, None)
            first = nxt
        assert garbage() is None   # collected within the longest pause
    finally:
        first.__exit__(None, None, None)
    assert gc.isenabled()
