"""A bulk look-up paces its items to the consumer's quota: ``Admission.would_wait`` asks without taking."""

from __future__ import annotations

from gateway.core.quotas import Admission, Quota


def test_would_wait_is_zero_while_the_quota_admits_and_takes_nothing() -> None:
    admission = Admission(Quota(rate_per_s=1.0, burst=2, max_concurrent=0))
    admission.acquire("cedies", 0.0)
    assert admission.would_wait("cedies", 0.0) == 0.0
    assert admission.would_wait("cedies", 0.0) == 0.0   # asking twice spends nothing
    admission.acquire("cedies", 0.0)


def test_would_wait_says_how_long_once_the_burst_is_spent() -> None:
    admission = Admission(Quota(rate_per_s=2.0, burst=1, max_concurrent=0))
    admission.acquire("cedies", 0.0)
    assert admission.would_wait("cedies", 0.0) == 0.5
    assert admission.would_wait("cedies", 0.5) == 0.0


def test_would_wait_while_the_consumer_is_at_its_concurrency_limit() -> None:
    admission = Admission(Quota(rate_per_s=0.0, burst=1, max_concurrent=1))
    admission.acquire("cedies", 0.0)
    assert admission.would_wait("cedies", 0.0) > 0
    admission.release("cedies")
    assert admission.would_wait("cedies", 0.0) == 0.0
