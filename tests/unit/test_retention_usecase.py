"""The retention sweep, as the use case: the local store is a cache of what is safe off-site.
An item leaves it only once every required target holds a proven copy, it was stored at least
``retention.local_keep`` ago and it is not on hold; each eviction is a signed entry and the
item stays in the catalog. A dry run says what would go and changes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from usecase_helpers import TARGET, Bench, bench, photo_name

from ingestd.domain.models import EventKind
from ingestd.domain.records import AcquisitionState
from ingestd.targets.factory import build_targets, target_locations
from ingestd.usecases.audit import audit
from ingestd.usecases.casework import set_hold
from ingestd.usecases.replicate import Replicator
from ingestd.usecases.retention import sweep
from tests.support.damage import flip_bit

KEEP = timedelta(days=30)  # retention.local_keep's default


@pytest.fixture
def b(tmp_path: Path) -> Iterator[Bench]:
    with bench(tmp_path, target=True) as made:
        yield made


def stored_and_copied(b: Bench, count: int) -> list[str]:
    shas = [i.sha256 for i in b.dock(b.photos("rec", count)).items]
    b.clock.advance(minutes=1)
    assert Replicator(b.station, actor="tester").run().ok
    return shas


def local(b: Bench, sha: str) -> bool:
    present = b.item(sha).local_present
    assert present == b.station.store.has(sha), "the catalog and the store disagree"
    return present


def test_a_proven_item_kept_long_enough_leaves_the_local_store(b: Bench) -> None:
    shas = stored_and_copied(b, 2)
    stored_at = b.item(shas[0]).stored_at
    b.clock.set(stored_at + KEEP - timedelta(seconds=1))
    early = sweep(b.station, actor="tester")
    assert (early.evicted, early.kept) == ([], 2)

    b.clock.set(stored_at + KEEP)
    report = sweep(b.station, actor="tester")

    assert sorted(e["sha256"] for e in report.evicted) == sorted(shas) and report.kept == 0
    assert all(e["targets"] == [TARGET] for e in report.evicted)
    for sha in shas:
        assert not local(b, sha)
        assert b.copy_on_target(sha).is_file()  # never deleted off-site by ingestd
        (evicted,) = b.entries([EventKind.EVICTED], item=sha)
        assert (evicted.data["targets"], evicted.data["local_keep"]) == (
            [TARGET], KEEP.total_seconds())
    assert list(b.station.store.iter_objects()) == []
    b.assert_ledger_verifies()


def test_a_dry_run_says_what_would_go_and_changes_nothing(b: Bench) -> None:
    shas = stored_and_copied(b, 2)
    b.clock.advance(days=31)
    head = b.head()

    report = sweep(b.station, dry_run=True, actor="tester")

    assert report.dry_run and sorted(e["sha256"] for e in report.evicted) == sorted(shas)
    assert all(local(b, sha) for sha in shas)
    assert b.head() == head


def test_only_what_may_go_is_evicted(b: Bench) -> None:
    held, damaged, found_bad, free = stored_and_copied(b, 4)
    b.clock.advance(minutes=1)
    set_hold(b.station, [held], hold=True, reason="complaint", actor="tester")
    b.clock.advance(minutes=1)
    assert Replicator(b.station, actor="tester").run().locks_extended  # the hold off-site too
    with b.station.catalog.read() as tx:  # so it is held, not unproven, that keeps it
        assert tx.proven_targets(held, target_locations(b.station.settings)) == {TARGET}
    b.clock.advance(minutes=1)
    (unsent,) = (i.sha256 for i in b.dock(b.photos("rec2", 1, first=30)).items)  # not copied
    b.clock.advance(minutes=1)
    b.copy_on_target(found_bad).chmod(0o640)
    b.copy_on_target(found_bad).write_bytes(b"bad copy")
    audit(b.station, sample=None, targets=build_targets(b.station.settings), actor="tester")
    flip_bit(b.object(damaged), 3)  # after the audit: only the sweep's own re-hash sees it
    b.clock.advance(days=31)

    report = sweep(b.station, actor="tester")

    names = {held: "held", damaged: "damaged", found_bad: "found_bad", free: "free",
             unsent: "unsent"}
    assert [names[e["sha256"]] for e in report.evicted] == ["free"]
    assert report.kept == 4
    for sha in (held, damaged, found_bad, unsent):
        assert local(b, sha), sha
    assert not local(b, free)
    assert [e.item for e in b.entries([EventKind.EVICTED])] == [free]
    b.assert_ledger_verifies()


def test_with_no_required_target_nothing_is_evicted(tmp_path: Path) -> None:
    with bench(tmp_path, target=True, required=False) as b:
        (sha,) = stored_and_copied(b, 1)
        b.clock.advance(days=365)
        report = sweep(b.station, actor="tester")
        assert (report.evicted, report.kept) == ([], 1)
        assert local(b, sha)


def test_an_evicted_item_docked_again_is_back_in_the_local_store(b: Bench) -> None:
    (sha,) = stored_and_copied(b, 1)
    b.clock.advance(days=31)
    assert sweep(b.station, actor="tester").evicted
    assert not local(b, sha)

    b.clock.advance(minutes=1)
    (again,) = b.dock(b.tmp / "rec").items

    assert (again.sha256, again.state, again.path.endswith(photo_name(0))) == (
        sha, AcquisitionState.KNOWN, True)
    assert local(b, sha)
    b.station.store.verify(sha)
    b.assert_ledger_verifies()
