"""Eviction from the local store, to the second: an item leaves only when every required target
holds a proven copy, once ``local_keep`` has run since it was stored, not on hold, and only from
the station that stored it."""

from __future__ import annotations

from collections.abc import Set
from datetime import UTC, datetime, timedelta

import pytest

from ingestd.domain import policy

STORED = datetime(2026, 3, 1, 2, 0, 0, tzinfo=UTC)
KEEP = timedelta(days=30)
SECOND = timedelta(seconds=1)
DUE = STORED + KEEP
REQUIRED = frozenset({"nas", "cloud"})


def may(*, now: datetime = DUE, required: Set[str] = REQUIRED, proven: Set[str] = REQUIRED,
        hold: bool = False, local_present: bool = True, ours: bool = True,
        local_keep: timedelta = KEEP) -> bool:
    return policy.may_evict(required=required, proven=proven, stored_at=STORED, now=now,
                            local_keep=local_keep, hold=hold, local_present=local_present,
                            ours=ours)


def test_local_keep_runs_to_the_second() -> None:
    assert not may(now=DUE - SECOND)
    assert may(now=DUE)
    assert may(now=DUE + SECOND)
    assert not may(now=STORED)


def test_local_keep_comes_from_the_setting() -> None:
    assert may(now=STORED, local_keep=timedelta(0))
    assert not may(now=DUE, local_keep=KEEP + SECOND)


@pytest.mark.parametrize("proven", [set(), {"nas"}, {"cloud"}, {"nas", "other"}])
def test_every_required_target_must_hold_a_proven_copy(proven: set[str]) -> None:
    assert not may(proven=proven, now=DUE + timedelta(days=3650))


def test_proven_copies_on_more_targets_than_required_are_enough() -> None:
    assert may(proven=REQUIRED | {"spare"})
    assert may(required={"nas"}, proven={"nas"})


def test_nothing_leaves_when_no_target_is_required() -> None:
    # No required target: nothing is safe off-site, however many copies are proven.
    assert not may(required=set(), proven={"nas", "cloud"})
    assert not may(required=set(), proven=set())


def test_a_hold_keeps_an_item_whatever_else_allows() -> None:
    assert not may(hold=True)
    assert not may(hold=True, now=DUE + timedelta(days=3650))


def test_only_an_item_still_here_and_stored_by_this_station_leaves() -> None:
    assert not may(local_present=False)
    assert not may(ours=False)
