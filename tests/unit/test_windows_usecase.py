"""The window check, as the use case: an item not labelled within the label window, or not
copied to every required target within the replication window, is flagged once, with its
signed entry saying which deadline passed; an item on time, labelled or copied is not."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from usecase_helpers import Bench, bench

from ingestd.domain.canonical import format_time
from ingestd.domain.flags import Flag
from ingestd.domain.models import EventKind
from ingestd.usecases.casework import label
from ingestd.usecases.replicate import Replicator
from ingestd.usecases.windows import check_windows

LABEL = timedelta(hours=48)
REPLICATION = timedelta(hours=24)


@pytest.fixture
def b(tmp_path: Path) -> Iterator[Bench]:
    with bench(tmp_path, target=True) as made:
        yield made


def flags(b: Bench, sha: str) -> set[Flag]:
    with b.station.catalog.read() as tx:
        return {f.flag for f in tx.item_flags(sha)}


def test_an_unlabelled_item_is_flagged_late_only_after_its_label_window(b: Bench) -> None:
    late, labelled = (i.sha256 for i in b.dock(b.photos("rec", 2)).items)
    assert Replicator(b.station, actor="tester").run().ok
    stored_at = b.item(late).stored_at
    b.clock.advance(hours=1)
    label(b.station, [labelled], case="C-1", party="Zhao Lei", actor="tester")

    b.clock.set(stored_at + LABEL)  # at the deadline: not yet late
    on_time = check_windows(b.station, actor="tester")
    assert (on_time.checked, on_time.flagged) == (2, [])

    b.clock.advance(seconds=1)
    report = check_windows(b.station, actor="tester")

    assert report.flagged == [{"sha256": late, "flag": "late_label"}]
    assert flags(b, late) == {Flag.LATE_LABEL} and flags(b, labelled) == set()
    (entry,) = b.entries([EventKind.FLAGGED])
    assert (entry.item, entry.actor, entry.at) == (late, "tester", b.clock.now)
    assert entry.data["detail"] == f"deadline {format_time(stored_at + LABEL)} passed"
    b.assert_ledger_verifies()


def test_an_item_not_copied_in_time_is_flagged_late_replication(b: Bench) -> None:
    shas = [i.sha256 for i in b.dock(b.photos("rec", 2)).items]
    b.clock.advance(minutes=1)
    (sent,) = Replicator(b.station, actor="tester").run(limit=1).verified  # one of the two
    copied = sent["sha256"]
    (waiting,) = set(shas) - {copied}
    deadline = b.item(waiting).replication_deadline
    assert deadline == b.item(waiting).stored_at + REPLICATION

    b.clock.set(deadline)
    assert check_windows(b.station, actor="tester").flagged == []
    b.clock.advance(seconds=1)
    report = check_windows(b.station, actor="tester")

    assert {"sha256": waiting, "flag": "late_replication"} in report.flagged
    assert Flag.LATE_REPLICATION in flags(b, waiting)
    assert Flag.LATE_REPLICATION not in flags(b, copied)
    (entry,) = [e for e in b.entries([EventKind.FLAGGED], item=waiting)
                if e.data["flag"] == Flag.LATE_REPLICATION]
    assert entry.data["detail"] == f"deadline {format_time(deadline)} passed"


@pytest.mark.parametrize(("required", "expected"), [
    (True, {Flag.LATE_REPLICATION}), (False, set())])
def test_replication_lateness_counts_only_required_targets(
        tmp_path: Path, required: bool, expected: set[Flag]) -> None:
    with bench(tmp_path, target=True, required=required) as b:
        (sha,) = (i.sha256 for i in b.dock(b.photos("rec", 1)).items)
        b.clock.set(b.item(sha).stored_at + REPLICATION + timedelta(seconds=1))
        check_windows(b.station, actor="tester")
        assert flags(b, sha) == expected


def test_a_flag_is_set_once_however_often_the_check_runs(b: Bench) -> None:
    shas = [i.sha256 for i in b.dock(b.photos("rec", 2)).items]
    b.clock.advance(hours=49)
    first = check_windows(b.station, actor="tester")
    assert sorted((f["sha256"], f["flag"]) for f in first.flagged) == sorted(
        (sha, flag) for sha in shas for flag in ("late_label", "late_replication"))
    head = b.head()

    b.clock.advance(hours=1)
    again = check_windows(b.station, actor="tester")

    assert (again.checked, again.flagged) == (2, [])
    assert b.head() == head
