"""Quotas shared by several processes: the share decision (pure), resized buckets, the heartbeat loop."""

from __future__ import annotations

import math

import pytest

from adapters.stores.quota_memory import InMemoryQuotaBoard
from gateway.core.errors import GatewayError, Reason
from gateway.core.quotas import SHARE_FLOOR, Admission, Quota, TokenBucket, fair_shares, local_concurrency
from gateway.quota_sync import QuotaSync


def test_alone_a_process_admits_the_whole_quota() -> None:
    assert fair_shares("a", {}) == (1.0, {})
    assert fair_shares("a", {"a": {"cedies": 50.0}}) == (1.0, {"cedies": 1.0})


def test_without_demand_the_quota_is_split_evenly() -> None:
    default, per = fair_shares("a", {"a": {}, "b": {}, "c": {"cedies": 0.0}})
    assert default == pytest.approx(1 / 3) and per == {}


def test_shares_follow_demand_keep_a_floor_and_sum_to_one() -> None:
    rows = {"a": {"cedies": 90.0, "sandbox": 1.0}, "b": {"cedies": 10.0}, "c": {}}
    shares = {p: fair_shares(p, rows)[1] for p in rows}
    for consumer in ("cedies", "sandbox"):
        assert sum(s[consumer] for s in shares.values()) == pytest.approx(1.0)
    assert shares["a"]["cedies"] == pytest.approx(SHARE_FLOOR / 3 + (1 - SHARE_FLOOR) * 0.9)
    assert shares["c"]["cedies"] == pytest.approx(SHARE_FLOOR / 3)  # idle, but can admit at once
    assert shares["a"]["sandbox"] > shares["b"]["sandbox"] == shares["c"]["sandbox"]


def test_a_process_missing_from_the_rows_counts_itself() -> None:
    default, per = fair_shares("new", {"old": {"cedies": 10.0}})
    assert default == 0.5 and per["cedies"] == pytest.approx(SHARE_FLOOR / 2)


def test_local_concurrency_is_split_and_never_zero() -> None:
    assert local_concurrency(0, 0.5) == 0  # no limit stays no limit
    assert local_concurrency(10, 1.0) == 10
    assert local_concurrency(10, 0.5) == 5
    assert local_concurrency(10, 0.01) == 1


def test_a_resized_bucket_keeps_its_tokens_up_to_the_new_burst_and_never_gains_any() -> None:
    bucket = TokenBucket(rate=10.0, burst=10, now=0.0)
    bucket.resize(5.0, 4, now=0.0)
    assert [bucket.take(0.0) for _ in range(5)][-2:] == [0.0, pytest.approx(0.2)]
    bucket.resize(100.0, 100, now=0.0)
    assert bucket.take(0.0) > 0  # a bigger burst is earned at the rate, not granted
    assert bucket.take(0.01) == 0.0


def test_admission_applies_its_share_to_rate_burst_and_concurrency() -> None:
    adm = Admission(Quota(10.0, 10, 4))
    adm.set_shares(0.5, {}, now=0.0)
    for _ in range(2):
        adm.acquire("x", 0.0)
    with pytest.raises(GatewayError) as exc:
        adm.acquire("x", 0.0)
    assert exc.value.reason == Reason.CONCURRENCY_LIMITED
    adm.release("x")
    adm.release("x")
    for _ in range(3):
        adm.acquire("x", 0.0)
        adm.release("x")
    with pytest.raises(GatewayError) as exc:
        adm.acquire("x", 0.0)  # burst 10 * 0.5 = 5 tokens, 5 taken
    assert exc.value.reason == Reason.RATE_LIMITED
    assert adm.take_demand() == {"x": 7} and adm.take_demand() == {}


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


async def test_two_processes_on_one_board_admit_the_global_quota_once() -> None:
    """A burst split over two processes: the sum admitted is the quota, not twice it."""
    clock, quota = Clock(), Quota(rate_per_s=10.0, burst=20, max_concurrent=0)
    board = InMemoryQuotaBoard(ttl_s=2.5, clock=clock)
    procs = [Admission(quota) for _ in range(2)]
    syncs = [QuotaSync(board, adm, f"p{i}", clock) for i, adm in enumerate(procs)]
    for s in syncs:
        await s.step()
    for s in syncs:  # the first one learns about the second at its next beat
        assert await s.step() == 2
    admitted = 0
    for tick in range(40):  # 4 s: each 0.1 s, 20 requests to each process; beat every 0.5 s
        clock.t = tick * 0.1
        for adm in procs:
            for _ in range(20):
                try:
                    adm.acquire("cedies", clock.t)
                    adm.release("cedies")
                    admitted += 1
                except GatewayError:
                    pass
        if tick % 5 == 4:
            for s in syncs:
                await s.step()
    bound = quota.burst + quota.rate_per_s * clock.t
    assert bound * 0.9 <= admitted <= bound + 2  # one process alone would admit it all: 2x without the board


async def test_a_silent_process_drops_out_and_the_others_take_its_share() -> None:
    clock = Clock()
    board = InMemoryQuotaBoard(ttl_s=2.5, clock=clock)
    a, b = Admission(Quota(10.0, 10, 8)), Admission(Quota(10.0, 10, 8))
    sa, sb = QuotaSync(board, a, "a", clock), QuotaSync(board, b, "b", clock)
    await sa.step()
    await sb.step()
    assert await sa.step() == 2 and a.share("cedies") == 0.5
    clock.t = 2.0
    assert await sa.step() == 2  # b last beat at 0.0: still within the TTL
    clock.t = 2.6
    assert await sa.step() == 1 and a.share("cedies") == 1.0
    await sb.stop()
    assert "b" not in board.rows


async def test_leaving_the_board_hands_the_share_over_at_the_next_beat() -> None:
    clock = Clock()
    board = InMemoryQuotaBoard(clock=clock)
    a, b = Admission(Quota(10.0, 10, 8)), Admission(Quota(10.0, 10, 8))
    sa, sb = QuotaSync(board, a, "a", clock), QuotaSync(board, b, "b", clock)
    await sb.step()
    assert await sa.step() == 2
    await sb.stop()
    assert await sa.step() == 1 and a.share("x") == 1.0


async def test_a_board_outage_keeps_the_last_shares() -> None:
    clock = Clock()
    board = InMemoryQuotaBoard(clock=clock)
    a = Admission(Quota(10.0, 10, 8))
    sa = QuotaSync(board, a, "a", clock)
    board.rows["other"] = (0.0, {})
    assert await sa.step() == 2
    board.broken = True
    with pytest.raises(ConnectionError):
        await sa.step()
    assert a.share("x") == 0.5 and not math.isnan(a.share("x"))
