"""The spot-check sampler's rule (``domain.policy.spot_picks``): per officer and period, items
not yet checked in the period, never-checked and oldest first, the same picks for the same
inputs (and seed)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ingestd.domain.policy import SpotCandidate, spot_period_start, spot_picks

WEEK = timedelta(days=7)
NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)  # a Wednesday
MONDAY = datetime(2026, 11, 30, tzinfo=UTC)


def item(n: int, officer: str, *, stored_days_ago: float = 0.0,
         checked: datetime | None = None) -> SpotCandidate:
    return SpotCandidate(sha256=f"{n:064x}", officer=officer,
                         stored_at=NOW - timedelta(days=stored_days_ago), last_checked=checked)


def shas(picks: list[SpotCandidate]) -> list[int]:
    return [int(p.sha256, 16) for p in picks]


def test_a_week_runs_monday_to_monday_and_any_period_from_one_start() -> None:
    assert spot_period_start(NOW, WEEK) == MONDAY
    assert spot_period_start(MONDAY, WEEK) == MONDAY
    assert spot_period_start(MONDAY - timedelta(microseconds=1), WEEK) == MONDAY - WEEK
    assert spot_period_start(NOW, timedelta(days=1)) == datetime(2026, 12, 2, tzinfo=UTC)
    with pytest.raises(ValueError):
        spot_period_start(NOW, timedelta(0))


def test_each_officer_gets_their_oldest_unchecked_items() -> None:
    pool = [item(1, "li", stored_days_ago=1), item(2, "li", stored_days_ago=30),
            item(3, "li", stored_days_ago=10), item(4, "wang", stored_days_ago=2),
            item(5, "wang", stored_days_ago=3)]
    assert shas(spot_picks(pool, now=NOW, period=WEEK, per_officer=1)) == [2, 5]
    assert shas(spot_picks(pool, now=NOW, period=WEEK, per_officer=2)) == [2, 3, 5, 4]
    assert shas(spot_picks(pool, now=NOW, period=WEEK, per_officer=9)) == [2, 3, 1, 5, 4]


def test_none_when_turned_off() -> None:
    assert spot_picks([item(1, "li")], now=NOW, period=WEEK, per_officer=0) == []


def test_checks_made_in_the_period_count_against_the_officers_share() -> None:
    pool = [item(1, "li", stored_days_ago=30, checked=MONDAY + timedelta(hours=1)),
            item(2, "li", stored_days_ago=20), item(3, "li", stored_days_ago=10),
            item(4, "wang", stored_days_ago=5)]
    # li had one this week already: one more at two a period, none at one
    assert shas(spot_picks(pool, now=NOW, period=WEEK, per_officer=2)) == [2, 4]
    assert shas(spot_picks(pool, now=NOW, period=WEEK, per_officer=1)) == [4]
    # next week, item 1 may be picked again, but only after the items never checked
    assert shas(spot_picks(pool, now=NOW + WEEK, period=WEEK, per_officer=3)) == [2, 3, 1, 4]


def test_the_items_checked_longest_ago_come_before_those_checked_lately() -> None:
    pool = [item(1, "li", stored_days_ago=90, checked=MONDAY - timedelta(days=1)),
            item(2, "li", stored_days_ago=10, checked=MONDAY - timedelta(days=60))]
    assert shas(spot_picks(pool, now=NOW, period=WEEK, per_officer=1)) == [2]


def test_a_seed_decides_the_draw_and_the_input_order_does_not() -> None:
    pool = [item(n, "li", stored_days_ago=n) for n in range(1, 40)]
    first = shas(spot_picks(pool, now=NOW, period=WEEK, per_officer=3, seed=7))
    assert first == shas(spot_picks(list(reversed(pool)), now=NOW, period=WEEK,
                                    per_officer=3, seed=7))
    draws = {tuple(shas(spot_picks(pool, now=NOW, period=WEEK, per_officer=3, seed=s)))
             for s in range(10)}
    assert len(draws) > 1  # not the oldest three every time
    assert shas(spot_picks(pool, now=NOW, period=WEEK, per_officer=3)) == [39, 38, 37]
