"""Spot checks, as the use cases: each period every officer's share of items is re-hashed and
decoded end to end, each result a signed ``spot_checked`` entry and a row; a damaged copy is
flagged; supervisors' reviews are signed ``spot_reviewed`` entries, refused for an item never
spot-checked; the listing counts per officer; ``ledger verify`` holds all of it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import OFFICER, SERIAL, Clips
from usecase_helpers import MEDIA, Bench, bench

from ingestd.app.jobs import SPOTCHECK_JOB, run_job, standard_jobs
from ingestd.domain.flags import Flag
from ingestd.domain.models import EventKind, Recorder
from ingestd.domain.records import ReviewResult, SpotResult
from ingestd.errors import UsageError
from ingestd.usecases import casework, registry
from ingestd.usecases.spotcheck import list_spot_checks, record_review, run_spot_checks
from tests.support.damage import flip_bit

OTHER_SERIAL = "BWC-0002"
OTHER = "Li Na"


@pytest.fixture
def b(tmp_path: Path, clips: Clips) -> Iterator[Bench]:
    """Two officers: OFFICER's recorder brought clips a and b, OTHER's clip c."""
    with bench(tmp_path) as made:
        registry.register(made.station, Recorder(serial=OTHER_SERIAL, officer=OTHER,
                                                 officer_id="PS-1002"), actor="tester")
        made.dock(made.recorder("r1", {f"{MEDIA}/A.MP4": clips.a.path}))
        made.clock.advance(minutes=1)
        made.dock(made.recorder("r1b", {f"{MEDIA}/B.MP4": clips.b.path}))
        made.clock.advance(minutes=1)
        made.dock(made.recorder("r2", {f"{MEDIA}/C.MP4": clips.c.path}), serial=OTHER_SERIAL)
        made.clock.advance(minutes=1)
        yield made


def flags(b: Bench, sha: str) -> dict[Flag, str]:
    with b.station.catalog.read() as tx:
        return {f.flag: f.detail for f in tx.item_flags(sha)}


def test_each_officer_gets_one_check_a_period_oldest_first(b: Bench, clips: Clips) -> None:
    first = run_spot_checks(b.station)

    assert first.ok
    assert {(c.officer, c.item) for c in first.checks} == {
        (OFFICER, clips.a.sha256), (OTHER, clips.c.sha256)}
    assert all(c.fixity == "ok" and c.decode == "ok" for c in first.checks)
    entries = b.entries([EventKind.SPOT_CHECKED])
    assert [(e.item, e.data["result"], e.data["officer"]) for e in entries] == [
        (c.item, "ok", c.officer) for c in first.checks]
    assert [c.ledger_seq for c in first.checks] == [e.seq for e in entries]

    # The same period: every officer has their share already.
    b.clock.advance(days=1)
    assert run_spot_checks(b.station).checks == []

    # The next period: the item not yet checked comes before the one checked last time.
    b.clock.advance(days=7)
    again = run_spot_checks(b.station)
    assert {(c.officer, c.item) for c in again.checks} == {
        (OFFICER, clips.b.sha256), (OTHER, clips.c.sha256)}
    assert again.period_start > first.period_start
    b.assert_ledger_verifies()


def test_an_item_counts_for_its_label_officer(b: Bench, clips: Clips) -> None:
    casework.label(b.station, [clips.b.sha256], case="C-1", party="P", officer="Zhao Lei",
                   actor="tester")
    picked = {c.officer: c.item for c in run_spot_checks(b.station).checks}
    assert picked == {OFFICER: clips.a.sha256, "Zhao Lei": clips.b.sha256,
                      OTHER: clips.c.sha256}


def test_a_copy_that_no_longer_hashes_is_flagged_and_not_decoded(b: Bench,
                                                                  clips: Clips) -> None:
    flip_bit(b.object(clips.a.sha256), 3000)

    report = run_spot_checks(b.station)

    assert not report.ok
    bad = next(c for c in report.checks if c.item == clips.a.sha256)
    assert bad.result == SpotResult.FIXITY_FAILED and bad.decode == "not decoded"
    assert "is damaged: it now hashes to" in bad.fixity
    assert flags(b, clips.a.sha256)[Flag.FIXITY_FAILED] == bad.fixity
    assert Flag.DAMAGED_MEDIA not in flags(b, clips.a.sha256)
    flagged = b.entries([EventKind.FLAGGED], item=clips.a.sha256)
    assert [e.data["flag"] for e in flagged] == ["fixity_failed"]
    b.assert_ledger_verifies()


def test_reviews_are_signed_counted_and_refused_for_unchecked_items(b: Bench,
                                                                   clips: Clips) -> None:
    with pytest.raises(UsageError, match="has not been spot-checked"):
        record_review(b.station, clips.a.sha256[:10], by="Supervisor Chen", result="ok",
                      note="played")
    assert b.entries([EventKind.SPOT_REVIEWED]) == []

    run_spot_checks(b.station)
    listing = list_spot_checks(b.station, pending=True)
    assert {c.item for c in listing.checks} == {clips.a.sha256, clips.c.sha256}

    review = record_review(b.station, clips.a.sha256[:10], by="Supervisor Chen",
                           result="ok", note="picture and sound as expected")
    record_review(b.station, clips.c.sha256, by="Supervisor Chen", result="problem",
                  note="no sound from 00:00:01")

    entries = b.entries([EventKind.SPOT_REVIEWED])
    assert [(e.item, e.actor, e.data["result"], e.data["note"]) for e in entries] == [
        (clips.a.sha256, "Supervisor Chen", "ok", "picture and sound as expected"),
        (clips.c.sha256, "Supervisor Chen", "problem", "no sound from 00:00:01")]
    assert review.ledger_seq == entries[0].seq
    checked = {e.item: e.seq for e in b.entries([EventKind.SPOT_CHECKED])}
    assert entries[0].data["check_seq"] == checked[clips.a.sha256]

    listing = list_spot_checks(b.station)
    assert {n: c.as_dict() for n, c in listing.counts.items()} == {
        OFFICER: {"checked": 1, "reviewed_ok": 1, "problem": 0, "pending": 0},
        OTHER: {"checked": 1, "reviewed_ok": 0, "problem": 1, "pending": 0}}
    assert list_spot_checks(b.station, pending=True).checks == []
    mine = list_spot_checks(b.station, officer=OTHER)
    assert [c.item for c in mine.checks] == [clips.c.sha256]
    assert mine.checks[0].review is not None
    assert mine.checks[0].review.result == ReviewResult.PROBLEM
    assert list(mine.counts) == [OTHER]
    b.assert_ledger_verifies()


def test_a_review_needs_a_known_result_and_a_note(b: Bench, clips: Clips) -> None:
    run_spot_checks(b.station)
    with pytest.raises(UsageError, match="--result"):
        record_review(b.station, clips.a.sha256, by="Chen", result="fine", note="x")
    with pytest.raises(UsageError, match="--note"):
        record_review(b.station, clips.a.sha256, by="Chen", result="ok", note="  ")
    assert b.entries([EventKind.SPOT_REVIEWED]) == []


def test_a_seed_draws_the_same_items_every_time(tmp_path: Path, clips: Clips) -> None:
    picked = []
    for n in range(2):
        with bench(tmp_path / str(n)) as made:
            made.dock(made.recorder("r", {f"{MEDIA}/{c.path.name}": c.path
                                          for c in clips.all()}), serial=SERIAL)
            made.clock.advance(minutes=1)
            picked.append([c.item for c in run_spot_checks(made.station, seed=42).checks])
    assert picked[0] == picked[1] and len(picked[0]) == 1


def test_turned_off_there_is_no_job_and_no_check(tmp_path: Path, clips: Clips) -> None:
    with bench(tmp_path, config="[spotcheck]\nper_officer = 0\n") as made:
        made.dock(made.recorder("r", {f"{MEDIA}/A.MP4": clips.a.path}))
        assert SPOTCHECK_JOB not in [j.name for j in standard_jobs(made.station)]
        assert run_spot_checks(made.station).checks == []
    with bench(tmp_path / "on") as made:
        job = next(j for j in standard_jobs(made.station) if j.name == SPOTCHECK_JOB)
        assert job.every == timedelta(hours=6)


def test_the_job_records_its_run_and_fails_on_damage(b: Bench, clips: Clips) -> None:
    job = next(j for j in standard_jobs(b.station) if j.name == SPOTCHECK_JOB)
    flip_bit(b.object(clips.c.sha256), 2000)

    assert run_job(b.station, job) is False

    with b.station.catalog.read() as tx:
        [run] = [r for r in tx.last_jobs(station=b.station.name) if r.job == SPOTCHECK_JOB]
    assert run.ok is False and "2 items spot-checked" in run.summary
    assert "1 damaged" in run.summary
    assert Flag.FIXITY_FAILED in flags(b, clips.c.sha256)
    assert run_job(b.station, job) is True  # the period's share is taken: nothing to check
