"""Casework, as the use cases: a label changes only the fields it is given and keeps the
history; a label, a hold or a release never shortens an item's retention; holds, releases and
justifications need a reason; each is a signed entry naming who did it, and a batch that
cannot be done whole is not done at all."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import OFFICER
from usecase_helpers import Bench, bench

from ingestd.domain.flags import Flag
from ingestd.domain.models import EventKind, RetentionClass
from ingestd.domain.policy import Retention
from ingestd.domain.records import retention_data
from ingestd.errors import NotFound, UsageError
from ingestd.usecases.casework import justify, label, set_hold
from ingestd.usecases.windows import check_windows

YEARS_30 = timedelta(days=365 * 30)


@pytest.fixture
def b(tmp_path: Path) -> Iterator[Bench]:
    with bench(tmp_path) as made:
        yield made


def items(b: Bench, count: int = 1) -> list[str]:
    shas = [i.sha256 for i in b.dock(b.photos("rec", count)).items]
    b.clock.advance(minutes=1)
    return shas


def test_a_first_label_needs_a_case_and_a_party_and_files_it_under_the_recorders_officer(
        b: Bench) -> None:
    (sha,) = items(b)
    head = b.head()
    with pytest.raises(UsageError, match="its first label needs --party"):
        label(b.station, [sha], case="C-1", actor="tester")
    assert b.head() == head

    (done,) = label(b.station, [sha[:12]], case="  (2026)JX-0001 ", party="Zhao Lei",
                    actor="tester")

    with b.station.catalog.read() as tx:
        current = tx.current_label(sha)
    assert current is not None
    assert (current.case, current.party, current.officer, current.categories, current.by) == (
        "(2026)JX-0001", "Zhao Lei", OFFICER, (), "tester")
    (entry,) = b.entries([EventKind.LABELLED], item=sha)
    assert (current.ledger_seq, current.at, entry.actor) == (entry.seq, entry.at, "tester")
    item = b.item(sha)
    # a case makes it evidence, kept thirty years from the later of recording end and storage
    assert (item.retention_class, item.retain_until) == (
        RetentionClass.EVIDENCE, max(item.recorded_end, item.stored_at) + YEARS_30)
    assert done["retention_class"] == "evidence"
    assert entry.data["retention"] == {k: done[k] for k in (
        "retention_class", "retain_until", "hold")}
    b.assert_ledger_verifies()


def test_a_later_label_changes_only_the_fields_it_is_given(b: Bench) -> None:
    (sha,) = items(b)
    label(b.station, [sha], case="C-1", party="Zhao Lei", categories=["dispute"],
          actor="tester")
    b.clock.advance(minutes=1)
    label(b.station, [sha], officer="Sun Mei", actor="supervisor")
    b.clock.advance(minutes=1)
    label(b.station, [sha], party="Li Lei", actor="tester")

    with b.station.catalog.read() as tx:
        history = tx.label_history(sha)
        current = tx.current_label(sha)
    assert [(h.case, h.party, h.officer, h.categories, h.by) for h in history] == [
        ("C-1", "Zhao Lei", OFFICER, ("dispute",), "tester"),
        ("C-1", "Zhao Lei", "Sun Mei", ("dispute",), "supervisor"),
        ("C-1", "Li Lei", "Sun Mei", ("dispute",), "tester"),  # the officer set by hand stays
    ]
    assert current == history[-1]
    with pytest.raises(UsageError, match="at least one of"):
        label(b.station, [sha], actor="tester")


def test_retention_is_never_shortened(b: Bench) -> None:
    long_term, evidence = items(b, 2)
    label(b.station, [long_term], case="C-1", party="P", categories=["assault"], actor="t")
    label(b.station, [evidence], case="C-2", party="P", actor="t")
    granted = b.item(evidence).retain_until
    assert b.item(long_term).retention == Retention(cls=RetentionClass.LONG_TERM, until=None,
                                                    hold=False)
    b.clock.advance(minutes=1)

    # a later label that names no long-term category, a hold and a release
    label(b.station, [long_term], categories=["routine"], actor="t")
    set_hold(b.station, [evidence], hold=True, reason="complaint", actor="t")
    set_hold(b.station, [evidence], hold=False, reason="complaint closed", actor="t")
    set_hold(b.station, [long_term], hold=False, reason="never held", actor="t")

    kept = b.item(long_term)
    assert (kept.retention_class, kept.retain_until) == (RetentionClass.LONG_TERM, None)
    assert b.item(evidence).retain_until == granted
    assert b.item(evidence).retention_class == RetentionClass.EVIDENCE
    for sha in (long_term, evidence):  # each item's last entry states what it keeps
        last = b.entries([EventKind.LABELLED, EventKind.HELD, EventKind.RELEASED], item=sha)[-1]
        assert last.data["retention"] == retention_data(b.item(sha).retention)
    b.assert_ledger_verifies()


def test_a_hold_and_a_release_need_a_reason_and_are_signed_entries(b: Bench) -> None:
    (sha,) = items(b)
    until = b.item(sha).retain_until
    head = b.head()
    with pytest.raises(UsageError, match="needs --reason"):
        set_hold(b.station, [sha], hold=True, reason="  ", actor="tester")
    assert b.head() == head

    (held,) = set_hold(b.station, [sha], hold=True, reason="complaint", actor="tester")
    assert b.item(sha).hold and held["hold"] is True
    (entry,) = b.entries([EventKind.HELD], item=sha)
    assert (entry.seq, entry.data["reason"], entry.data["retention"]["hold"]) == (
        held["seq"], "complaint", True)

    b.clock.advance(minutes=1)
    set_hold(b.station, [sha], hold=False, reason="closed", actor="tester")
    item = b.item(sha)
    assert not item.hold and item.retain_until == until
    (released,) = b.entries([EventKind.RELEASED], item=sha)
    assert released.data["reason"] == "closed"


def test_a_justification_is_kept_beside_its_flag(b: Bench) -> None:
    late, on_time = items(b, 2)
    label(b.station, [on_time], case="C-1", party="P", actor="tester")
    b.clock.advance(hours=49)
    check_windows(b.station, actor="tester")
    head = b.head()
    with pytest.raises(UsageError, match="is not flagged late_label"):
        justify(b.station, [on_time], flag="late_label", reason="x", actor="tester")
    with pytest.raises(UsageError, match="unknown flag"):
        justify(b.station, [late], flag="late_lunch", reason="x", actor="tester")
    with pytest.raises(UsageError, match="needs --reason"):
        justify(b.station, [late], flag="late_label", reason="", actor="tester")
    assert b.head() == head

    justify(b.station, [late], flag="late_label", reason="officer on leave", actor="sgt")

    with b.station.catalog.read() as tx:
        (why,) = tx.justifications_of(late)
        assert tx.has_flag(late, Flag.LATE_LABEL), "a justification took the flag away"
    assert (why.flag, why.reason, why.by) == (Flag.LATE_LABEL, "officer on leave", "sgt")
    (entry,) = b.entries([EventKind.JUSTIFIED], item=late)
    assert entry.seq == why.ledger_seq


def test_a_batch_that_cannot_be_done_whole_is_not_done_at_all(b: Bench) -> None:
    (sha,) = items(b)
    head = b.head()
    with pytest.raises(NotFound):
        label(b.station, [sha, "deadbeef00"], case="C", party="P", actor="tester")
    with pytest.raises(NotFound):
        set_hold(b.station, [sha, "0123456789abcdef"], hold=True, reason="r", actor="t")
    with pytest.raises(UsageError, match="unknown category 'picnic'"):
        label(b.station, [sha], case="C", party="P", categories=["picnic"], actor="t")
    with pytest.raises(UsageError):
        label(b.station, [sha], case="C\x1b[2J", party="P", actor="t")
    with pytest.raises(UsageError):
        label(b.station, [sha], case="C" * 201, party="P", actor="t")
    assert b.head() == head
    with b.station.catalog.read() as tx:
        assert tx.current_label(sha) is None
    assert not b.item(sha).hold


def test_an_unassigned_items_first_label_needs_an_officer(tmp_path: Path) -> None:
    with bench(tmp_path, config='[ingest]\nunregistered = "unassigned"\n') as b:
        (found,) = b.dock(b.photos("rec", 1), serial="BWC-7777").items
        assert Flag.UNREGISTERED_RECORDER in found.flags
        with pytest.raises(UsageError, match="give --officer"):
            label(b.station, [found.sha256], case="C", party="P", actor="t")
        (done,) = label(b.station, [found.sha256], case="C", party="P", officer="Wu Hao",
                        actor="t")
        assert done["officer"] == "Wu Hao"
