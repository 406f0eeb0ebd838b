"""The audit cycle's rules, to the second: how many copies a run takes, and when a copy is
past its cycle (with a clock that jumps back and forward)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ingestd import config
from ingestd.domain.policy import audit_overdue, cycle_batch, proof_age
from ingestd.errors import ConfigError

T = datetime(2026, 3, 1, 2, 0, 0, tzinfo=UTC)
SECOND = timedelta(seconds=1)
DAY = timedelta(days=1)
SIX_HOURS = timedelta(hours=6)
CYCLE = timedelta(days=30)  # 120 runs of 6 h


@pytest.mark.parametrize(("items", "expected"), [
    (0, 0), (1, 1), (119, 1), (120, 1), (121, 2), (240, 2), (241, 3), (12_000, 100),
    (12_001, 101),
])
def test_a_run_takes_its_share_of_the_cycle_rounded_up(items: int, expected: int) -> None:
    assert cycle_batch(items=items, overdue=0, every=SIX_HOURS, cycle=CYCLE) == expected


def test_the_share_is_exact_to_the_second() -> None:
    # 120 items, runs 6 h apart: one a run when the cycle is 30 d; a second shorter and
    # the 120 runs no longer fit, so two a run.
    assert cycle_batch(items=120, overdue=0, every=SIX_HOURS, cycle=CYCLE) == 1
    assert cycle_batch(items=120, overdue=0, every=SIX_HOURS, cycle=CYCLE - SECOND) == 2
    assert cycle_batch(items=120, overdue=0, every=SIX_HOURS + SECOND, cycle=CYCLE) == 2


def test_everything_past_its_cycle_comes_on_top_and_no_more_than_there_is() -> None:
    assert cycle_batch(items=1200, overdue=7, every=SIX_HOURS, cycle=CYCLE) == 10 + 7
    assert cycle_batch(items=10, overdue=10, every=SIX_HOURS, cycle=CYCLE) == 10
    assert cycle_batch(items=10, overdue=0, every=CYCLE * 2, cycle=CYCLE) == 10


def test_a_floor_raises_the_batch_but_never_past_the_items() -> None:
    assert cycle_batch(items=1200, overdue=0, every=SIX_HOURS, cycle=CYCLE, at_least=20) == 20
    assert cycle_batch(items=1200, overdue=30, every=SIX_HOURS, cycle=CYCLE, at_least=20) == 40
    assert cycle_batch(items=5, overdue=0, every=SIX_HOURS, cycle=CYCLE, at_least=20) == 5


def test_runs_of_the_batch_cover_every_item_within_the_cycle() -> None:
    for items in (1, 7, 119, 120, 121, 1000):
        per_run = cycle_batch(items=items, overdue=0, every=SIX_HOURS, cycle=CYCLE)
        assert per_run * (CYCLE // SIX_HOURS) >= items
        assert (per_run - 1) * (CYCLE // SIX_HOURS) < items  # and no more than that takes


def test_a_copy_is_overdue_only_past_its_cycle() -> None:
    proven = T - CYCLE
    assert not audit_overdue(proven_at=proven, stored_at=T - 400 * DAY, now=T, cycle=CYCLE)
    assert audit_overdue(proven_at=proven - SECOND, stored_at=T - 400 * DAY, now=T,
                         cycle=CYCLE)


def test_a_copy_never_proven_counts_from_its_storage() -> None:
    assert not audit_overdue(proven_at=None, stored_at=T - CYCLE, now=T, cycle=CYCLE)
    assert audit_overdue(proven_at=None, stored_at=T - CYCLE - SECOND, now=T, cycle=CYCLE)
    # a proof, however recent its storage, is what counts once there is one
    assert not audit_overdue(proven_at=T - DAY, stored_at=T - 400 * DAY, now=T, cycle=CYCLE)


def test_a_clock_set_back_makes_no_age_negative_and_forward_makes_copies_due() -> None:
    proven = T
    # the clock jumps back a year: the proof is ahead of it, as old as nothing
    back = T - 365 * DAY
    assert proof_age(proven_at=proven, stored_at=T - DAY, now=back) == timedelta(0)
    assert not audit_overdue(proven_at=proven, stored_at=T - DAY, now=back, cycle=CYCLE)
    # ... and, once it passes the proof again, counts from it, to the second
    assert not audit_overdue(proven_at=proven, stored_at=T - DAY, now=T + CYCLE, cycle=CYCLE)
    assert audit_overdue(proven_at=proven, stored_at=T - DAY, now=T + CYCLE + SECOND,
                         cycle=CYCLE)
    # the clock jumps forward past the cycle: the copy is due at once
    assert audit_overdue(proven_at=proven, stored_at=T - DAY, now=T + 2 * CYCLE, cycle=CYCLE)


def test_the_audit_keys_and_their_defaults(tmp_path: Path) -> None:
    defaults = config.from_mapping({}, home=tmp_path).audit
    assert (defaults.cycle, defaults.offsite_cycle, defaults.max_rate) == (
        timedelta(days=30), timedelta(days=365), 0)
    given = config.from_mapping({"audit": {"cycle": "7d", "offsite_cycle": "90d",
                                           "max_rate": "50MiB"}}, home=tmp_path).audit
    assert (given.cycle, given.offsite_cycle, given.max_rate) == (
        timedelta(days=7), timedelta(days=90), 50 * 2**20)
    with pytest.raises(ConfigError, match="audit.cycle"):
        config.from_mapping({"audit": {"cycle": "0s"}}, home=tmp_path)
