"""WORM lock dates, to the second: an off-site copy is locked until its retain-until date, never
less than its class's whole period from the day the lock is set, the long-term date when it
never expires, and never past the date a Ceph server can keep."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ingestd.domain import policy
from ingestd.domain.models import RetentionClass
from ingestd.domain.policy import LONG_TERM_LOCK, MAX_RETAIN_UNTIL, RetentionPolicy, WormLock

NOW = datetime(2026, 12, 1, 9, 30, 15, tzinfo=UTC)
RECORDED = datetime(2026, 11, 30, 22, 5, 0, tzinfo=UTC)
SECOND = timedelta(seconds=1)
P = RetentionPolicy()
ROUTINE, EVIDENCE, LONG_TERM = (RetentionClass.ROUTINE, RetentionClass.EVIDENCE,
                                RetentionClass.LONG_TERM)


def lock(retain_until: datetime | None, cls: RetentionClass = ROUTINE, *, hold: bool = False,
         recorded: datetime = RECORDED, now: datetime = NOW,
         cap: datetime = MAX_RETAIN_UNTIL) -> WormLock:
    return policy.worm_lock(retain_until=retain_until, cls=cls, hold=hold,
                            recorded_start=recorded, now=now, policy=P, cap=cap)


def until(retain_until: datetime | None, cls: RetentionClass = ROUTINE, **kw: object) -> datetime:
    return lock(retain_until, cls, **kw).retain_until  # type: ignore[arg-type]


@pytest.mark.parametrize(("cls", "period"), [
    (ROUTINE, P.routine), (EVIDENCE, P.evidence), (LONG_TERM, P.evidence)])
def test_never_less_than_the_class_period_from_the_day_it_is_set(
        cls: RetentionClass, period: timedelta) -> None:
    floor = NOW + period
    assert until(datetime(2001, 1, 1, tzinfo=UTC), cls) == floor  # a date long past
    assert until(floor - SECOND, cls) == floor
    assert until(floor, cls) == floor
    assert until(floor + SECOND, cls) == floor + SECOND  # a later date is kept as it is


def test_the_floor_moves_with_the_day_the_lock_is_set() -> None:
    date = NOW + P.routine
    assert until(date, now=NOW) == date
    assert until(date, now=NOW + SECOND) == date + SECOND


def test_a_class_raised_to_evidence_raises_the_lock_to_its_whole_period() -> None:
    date = NOW + P.routine + timedelta(days=3)
    assert until(date, ROUTINE) == date
    assert until(date, EVIDENCE) == NOW + P.evidence


def test_the_class_periods_come_from_the_policy() -> None:
    short = RetentionPolicy(routine=timedelta(days=30), evidence=timedelta(days=60))
    got = policy.worm_lock(retain_until=NOW, cls=EVIDENCE, hold=False, recorded_start=RECORDED,
                           now=NOW, policy=short)
    assert got.retain_until == NOW + timedelta(days=60)


def test_a_hold_is_set_beside_the_date_and_changes_it_not() -> None:
    date = NOW + P.routine + SECOND
    held, free = lock(date, hold=True), lock(date, hold=False)
    assert held == WormLock(retain_until=date, legal_hold=True)
    assert free == WormLock(retain_until=date, legal_hold=False)
    assert lock(None, LONG_TERM, hold=True).legal_hold is True


def test_what_never_expires_gets_the_long_term_date_from_the_later_clock() -> None:
    now = datetime(2001, 3, 4, 5, 6, 7, tzinfo=UTC)  # early enough to be under the cap
    # The recorder's clock behind (or unset): counted from ours.
    unset = datetime(1999, 12, 31, tzinfo=UTC)
    assert until(None, LONG_TERM, recorded=unset, now=now) == now + LONG_TERM_LOCK
    assert until(None, LONG_TERM, recorded=now, now=now) == now + LONG_TERM_LOCK
    # The recorder's clock ahead of ours: counted from the recording.
    ahead = now + SECOND
    assert until(None, LONG_TERM, recorded=ahead, now=now) == ahead + LONG_TERM_LOCK
    # A class with no date never expires, whatever its name says.
    assert until(None, ROUTINE, recorded=unset, now=now) == now + LONG_TERM_LOCK


def test_no_date_is_past_what_ceph_can_keep() -> None:
    # 2106-01-01 is the last date asked: a later one wraps round in 32-bit seconds.
    assert MAX_RETAIN_UNTIL == datetime(2106, 1, 1, tzinfo=UTC)
    assert until(MAX_RETAIN_UNTIL - SECOND) == MAX_RETAIN_UNTIL - SECOND
    assert until(MAX_RETAIN_UNTIL) == MAX_RETAIN_UNTIL
    assert until(MAX_RETAIN_UNTIL + SECOND) == MAX_RETAIN_UNTIL
    # Long-term from today would be 2126: capped.
    assert until(None, LONG_TERM) == MAX_RETAIN_UNTIL
    # Evidence locked in 2080 for 30 years would end after the cap.
    late = datetime(2080, 1, 1, tzinfo=UTC)
    assert until(late, EVIDENCE, now=late) == MAX_RETAIN_UNTIL


def test_the_cap_is_a_parameter() -> None:
    cap = NOW + timedelta(days=100)
    assert until(NOW + timedelta(days=400), cap=cap) == cap
    assert until(None, LONG_TERM, cap=cap) == cap
    assert policy.long_term_until(NOW, cap=cap) == cap
    early = datetime(2000, 1, 1, tzinfo=UTC)
    assert policy.long_term_until(early) == early + LONG_TERM_LOCK
    assert policy.long_term_until(MAX_RETAIN_UNTIL - LONG_TERM_LOCK + SECOND) == MAX_RETAIN_UNTIL
