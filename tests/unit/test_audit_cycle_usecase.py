"""The audit cycle as the use case, on a temporary SQLite home: each run re-hashes the items
whose last proof is oldest, enough that every item is re-hashed within ``audit.cycle``; a
copy past its cycle is flagged; each result is an ``audited`` entry, and the item's last
proof is backed by it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from usecase_helpers import Bench, bench

from ingestd.domain.flags import Flag
from ingestd.domain.models import EventKind
from ingestd.integrity.discrepancy import DiscrepancyKind as K
from ingestd.targets.factory import build_targets
from ingestd.usecases.audit import Throttle, audit_cycle, coverage
from ingestd.usecases.replicate import Replicator
from tests.support import catalog
from tests.support.damage import flip_bit

EVERY = timedelta(hours=6)
CYCLE = "[audit]\ncycle = \"1d\"\noffsite_cycle = \"2d\"\n"  # four runs of 6 h a cycle


@pytest.fixture
def b(tmp_path: Path) -> Iterator[Bench]:
    with bench(tmp_path, config=CYCLE) as made:
        yield made


def stored(b: Bench, count: int) -> list[str]:
    """``count`` items, stored a minute apart in this order."""
    shas = []
    for n in range(count):
        shas += [i.sha256 for i in b.dock(b.photos(f"rec{n}", 1, first=n)).items]
        b.clock.advance(minutes=1)
    return shas


def flags(b: Bench, sha: str) -> set[Flag]:
    with b.station.catalog.read() as tx:
        return {f.flag for f in tx.item_flags(sha)}


def rehashed(b: Bench, after: int) -> list[str]:
    return [e.item or "" for e in b.entries([EventKind.AUDITED], after=after)]


def test_each_run_takes_the_oldest_and_a_cycle_of_runs_takes_every_item(b: Bench) -> None:
    shas = stored(b, 8)  # 8 items, 4 runs a cycle: 2 a run

    seen: list[list[str]] = []
    for _ in range(4):
        head = b.head()
        report = audit_cycle(b.station, every=EVERY, actor="tester")
        assert report.ok and (report.due, report.of, report.overdue) == (2, 8, [])
        seen.append(rehashed(b, head))
        b.clock.advance(hours=6)

    # the oldest proofs (here: never re-hashed, the first stored) first, two a run
    assert seen == [shas[0:2], shas[2:4], shas[4:6], shas[6:8]]
    # and the next cycle starts again with those re-hashed longest ago (the two of the first
    # run, proven at one time)
    head = b.head()
    audit_cycle(b.station, every=EVERY, actor="tester")
    assert sorted(rehashed(b, head)) == sorted(shas[0:2])
    assert all(flags(b, sha) == set() for sha in shas)
    b.assert_ledger_verifies()


def test_the_last_proof_is_the_audited_entry_that_found_the_copy_intact(b: Bench) -> None:
    sha = stored(b, 1)[0]
    assert b.item(sha).stored_at is not None
    audit_cycle(b.station, every=EVERY, actor="tester")
    entry = b.entries([EventKind.AUDITED], item=sha)[-1]
    assert entry.data["fixity"] == "ok"
    with b.station.catalog.read() as tx:
        assert tx.last_rehashes(station=b.station.name) == {sha: entry.at}
    b.assert_ledger_verifies()


def test_a_last_proof_no_entry_states_is_caught_by_ledger_verify(b: Bench) -> None:
    sha = stored(b, 1)[0]
    audit_cycle(b.station, every=EVERY, actor="tester")
    catalog.tamper(b.home, "UPDATE items SET audited_at = '2099-01-01T00:00:00.000000Z'")

    report = b.station.custody.verify()

    assert not report.ok
    assert [(p.kind, getattr(p, "field", None)) for p in report.problems] == [
        (K.ROW_DIFFERS, "audited_at")]
    assert sha[:16] in report.problems[0].detail


def test_a_flipped_bit_is_caught_within_the_cycle(b: Bench) -> None:
    shas = stored(b, 8)
    audit_cycle(b.station, every=EVERY, actor="tester")  # the first two
    victim = shas[5]
    flip_bit(b.object(victim), 100)

    found = []
    for _ in range(3):  # the rest of the cycle
        b.clock.advance(hours=6)
        found += [d for d in audit_cycle(b.station, every=EVERY, actor="tester").found]

    # found in its turn, and again every run after it until it is repaired
    assert [(d.item, d.kind) for d in found] == [(victim, K.CHECKSUM_MISMATCH)] * 2
    assert flags(b, victim) == {Flag.FIXITY_FAILED}
    entry = b.entries([EventKind.AUDITED], item=victim)[-1]
    assert entry.data["fixity"] != "ok"
    # a failed re-hash is no proof: the copy keeps the age of its last good one (none)
    with b.station.catalog.read() as tx:
        assert tx.last_rehashes(station=b.station.name)[victim] is None
    # and the damaged copy took no other's turn: every item was re-hashed in the cycle
    assert set(rehashed(b, 0)) == set(shas)
    b.assert_ledger_verifies()


def test_copies_past_their_cycle_are_flagged_and_all_taken_at_once(b: Bench) -> None:
    shas = stored(b, 8)
    first = b.item(shas[0]).stored_at
    # the daemon was off for a cycle and a second: every item is past its cycle
    b.clock.set(b.item(shas[-1]).stored_at + timedelta(days=1, seconds=1))

    report = audit_cycle(b.station, every=EVERY, actor="tester")

    assert (report.due, report.checked) == (8, 8)  # all past it (and the share, among them)
    assert sorted(o["sha256"] for o in report.overdue) == sorted(shas)
    assert all(flags(b, sha) == {Flag.AUDIT_OVERDUE} for sha in shas)
    flagged = [e for e in b.entries([EventKind.FLAGGED]) if e.data["flag"] == "audit_overdue"]
    assert len(flagged) == 8 and "past its audit cycle (1d)" in flagged[0].data["detail"]
    assert f"stored {first.isoformat()[:10]}" in flagged[0].data["detail"]
    # re-hashed now: none is past its cycle any more
    assert [(c.copies, c.overdue) for c in coverage(b.station)] == [(8, 0)]
    b.assert_ledger_verifies()


def test_at_the_cycle_to_the_second_a_copy_is_not_yet_overdue(b: Bench) -> None:
    sha = stored(b, 1)[0]
    stored_at = b.item(sha).stored_at
    b.clock.set(stored_at + timedelta(days=1))
    assert [c.overdue for c in coverage(b.station)] == [0]
    b.clock.set(stored_at + timedelta(days=1, seconds=1))
    assert [c.overdue for c in coverage(b.station)] == [1]
    assert [c.oldest_proof for c in coverage(b.station)] == [stored_at]


def test_a_clock_set_back_and_forward_still_takes_every_item_in_turn(b: Bench) -> None:
    shas = stored(b, 8)
    start = b.clock.now
    seen: list[str] = []
    for jump in (timedelta(minutes=-9), timedelta(hours=6), timedelta(hours=6, minutes=-9),
                 timedelta(days=3), timedelta(days=3, minutes=-9)):
        # a clock that wanders: set back (the ledger dates the entries at its last time),
        # on, back again, three days ahead, back again
        b.clock.set(start + jump)
        head = b.head()
        audit_cycle(b.station, every=EVERY, actor="tester")
        seen += rehashed(b, head)
    # in turn while the clock wandered about; the forward jump made every item overdue
    # (all taken, and flagged); set back after it, nothing is due but the run's share (all
    # eight were proven at one time by the fake clock: any two are the oldest)
    assert seen[:6] == shas[:6]
    assert sorted(seen[6:14]) == sorted(shas)
    assert len(seen[14:]) == 2 and set(seen[14:]) <= set(shas)
    assert all(Flag.AUDIT_OVERDUE in flags(b, sha) for sha in shas)
    b.assert_ledger_verifies()


def test_the_throttle_sleeps_to_keep_reads_under_the_rate() -> None:
    slept: list[float] = []
    now = [100.0]
    throttle = Throttle(1000, clock=lambda: now[0], sleep=slept.append)
    throttle.spent(500)  # half a second's worth, at once
    now[0] += 0.1
    throttle.spent(500)  # a second's worth in 0.1 s: wait the rest
    assert slept == [0.5, pytest.approx(0.9)]
    unlimited = Throttle(0, clock=lambda: now[0], sleep=slept.append)
    unlimited.spent(10**12)
    assert len(slept) == 2


def test_the_offsite_cycle_reads_back_the_longest_unproven_copies(tmp_path: Path) -> None:
    with bench(tmp_path, config=CYCLE, target=True) as b:
        shas = stored(b, 4)  # 4 copies, 8 runs of 6 h in a cycle of 2 d: 1 a run
        assert Replicator(b.station).run().ok  # sent and read back: proven
        b.clock.advance(hours=1)
        targets = build_targets(b.station.settings)
        order = []
        for _ in range(4):
            head = b.head()
            report = audit_cycle(b.station, every=EVERY, targets=targets, actor="tester")
            assert report.ok and report.due == 1
            order += rehashed(b, head)
            b.clock.advance(hours=6)
        assert sorted(order) == sorted(shas)
        assert [(c.target, c.copies, c.overdue) for c in coverage(b.station, targets)] == [
            (None, 4, 0), ("nas", 4, 0)]
        b.assert_ledger_verifies()
