"""The WORM lock an off-site copy gets: never shorter than its class's whole period from the
day it is set, whatever the recorder's clock said."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ingestd.domain.models import RetentionClass
from ingestd.domain.policy import MAX_RETAIN_UNTIL, RetentionPolicy
from ingestd.targets import Lock
from ingestd.usecases.replicate import lock_for

NOW = datetime(2026, 12, 1, 9, 30, 15, tzinfo=UTC)
P = RetentionPolicy()


def locked(retain_until: datetime | None, cls: str = "routine", *,
           recorded: datetime = datetime(2024, 6, 1, 8, 30, tzinfo=UTC),
           hold: bool = False) -> Lock:
    """The lock of an item with this retention, recorded then."""
    return lock_for(retain_until=retain_until, retention_class=RetentionClass(cls),
                    recorded_start=recorded, hold=hold, now=NOW, policy=P)


def test_a_date_already_past_is_locked_a_full_year_from_now() -> None:
    lock = locked(datetime(2000, 12, 30, 16, tzinfo=UTC))
    assert lock.retain_until == NOW + timedelta(days=365)
    assert lock.legal_hold is False


def test_a_later_retain_until_date_is_kept() -> None:
    later = NOW + timedelta(days=400, seconds=3)
    assert locked(later).retain_until == later


def test_evidence_is_locked_its_whole_period_from_now() -> None:
    lock = locked(datetime(2054, 5, 25, 8, 30, tzinfo=UTC), "evidence", hold=True)
    assert lock.retain_until == NOW + P.evidence
    assert lock.legal_hold is True


def test_long_term_keeps_its_long_date_even_from_an_unset_clock() -> None:
    unset = datetime(1999, 12, 31, 16, tzinfo=UTC)
    lock = locked(None, "long-term", recorded=unset)
    assert lock.retain_until == MAX_RETAIN_UNTIL
