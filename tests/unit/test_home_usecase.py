"""Making a home and bringing one forward, as the use case: ``init_home`` makes the config,
store, key, catalog, the ledger's genesis and the key pin, and run again changes nothing; a
lost pin is written again from the ledger's first key, never from the key file; a home made
by an earlier release (``tests/fixtures/home-0002.tar.gz``) is migrated and its items'
retention re-dated from what its ledger says, every entry kept."""

from __future__ import annotations

import stat
import tarfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from conftest import FakeClock, write_config

from ingestd.domain.canonical import parse_time
from ingestd.domain.models import EventKind, RetentionClass
from ingestd.integrity.signing import StationKey, read_pin
from ingestd.station import Station
from ingestd.usecases.home import init_home
from ingestd.usecases.keys import rotate_key
from ingestd.usecases.redating import REASON

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "home-0002.tar.gz"
#: After the fixture's last entry (2026-12-01T09:46:27Z): the clock never runs behind it.
AFTER_FIXTURE = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
YEAR = timedelta(days=365)


def head(station: Station) -> tuple[int, str | None]:
    with station.catalog.read() as tx:
        return tx.ledger_head()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_makes_a_home_and_run_again_changes_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    station, done = init_home(home, clock=FakeClock())
    try:
        assert [line.split(" ")[0] for line in done] == ["wrote", "created", "started",
                                                           "pinned"]
        keys = home / "keys"
        assert {p.name for p in keys.iterdir()} >= {"station.key", "station.pub",
                                                    "station.pin"}
        assert mode(home) == 0o750 and mode(home / "ingestd.toml") == 0o640
        assert (home / "store" / "objects" / "sha256").is_dir()
        assert (home / "docks").is_dir()
        with station.catalog.read() as tx:
            (genesis,) = tx.iter_entries()
        assert genesis.kind == EventKind.GENESIS
        assert genesis.data["public_key"] == station.key.public.hex
        # the pin is the ledger's first key, outside the catalog
        assert read_pin(keys) == station.key.public.fingerprint == station.custody.pin
        assert f"fingerprint {station.custody.pin}" in done[-1]
        was = head(station)
    finally:
        station.close()
    files = {p: p.read_bytes() for p in (home / "ingestd.toml", keys / "station.key",
                                         keys / "station.pin")}

    again, done_again = init_home(home, clock=FakeClock())
    try:
        assert done_again == []
        assert head(again) == was
        assert {p: p.read_bytes() for p in files} == files
        assert again.custody.verify().ok
    finally:
        again.close()


def test_init_keeps_a_config_written_before_it(tmp_path: Path) -> None:
    home = tmp_path / "home"
    write_config(home, 'station = "station-07"\n[retention]\nlocal_keep = "7d"\n')
    station, done = init_home(home, clock=FakeClock())
    try:
        assert not any(line.startswith("wrote") for line in done)
        assert station.name == "station-07"
        assert station.settings.retention.local_keep == timedelta(days=7)
    finally:
        station.close()


def test_a_lost_pin_is_written_again_from_the_ledgers_first_key(tmp_path: Path) -> None:
    home = tmp_path / "home"
    station, _ = init_home(home, clock=FakeClock())
    first = station.key.public.fingerprint
    rotate_key(station, actor="tester")
    station.close()
    assert StationKey.load(home / "keys").public.fingerprint != first
    (home / "keys" / "station.pin").unlink()

    again, done = init_home(home, clock=FakeClock())
    try:
        assert read_pin(home / "keys") == first == again.custody.pin
        assert any(line.startswith("pinned") for line in done)
        assert again.custody.verify().ok
    finally:
        again.close()


def test_an_old_home_is_brought_forward_and_its_retention_re_dated(tmp_path: Path) -> None:
    home = tmp_path / "old-home"
    home.mkdir()
    with tarfile.open(FIXTURE) as tar:
        tar.extractall(home)  # the project's own fixture: relative paths only

    station, done = init_home(home, clock=FakeClock(AFTER_FIXTURE))
    try:
        assert done[-1] == ("re-dated the retention of 3 items (counted from the later of "
                            "recording end and storage)")
        assert any("no ledger entry is dated before" in line for line in done)
        with station.catalog.read() as tx:
            entries = list(tx.iter_entries())
        assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
        old, new = entries[:17], entries[17:]
        assert old[-1].kind == EventKind.REPLICATED  # the fixture's own seventeen, kept
        assert sorted(e.kind for e in new) == [EventKind.RETENTION] * 3 + [EventKind.TIME_RULE]

        stored = {e.item: e for e in old if e.kind == EventKind.STORED}
        labelled = {e.item for e in old if e.kind == EventKind.LABELLED}
        held = {e.item for e in old if e.kind == EventKind.HELD}
        redated = {e.item: e.data for e in new if e.kind == EventKind.RETENTION}
        assert set(redated) == set(stored) and len(stored) == 3
        for sha, entry in stored.items():
            assert sha is not None
            with station.catalog.read() as tx:
                item = tx.item(sha)
            assert item is not None
            start = max(parse_time(entry.data["recorded_end"]), entry.at)
            cls = RetentionClass.EVIDENCE if sha in labelled else RetentionClass.ROUTINE
            period = timedelta(days=365 * 30) if sha in labelled else YEAR
            assert (item.retention_class, item.retain_until, item.hold) == (
                cls, start + period, sha in held)
            assert redated[sha]["retention"]["retain_until"] is not None
            assert parse_time(redated[sha]["retention"]["retain_until"]) == item.retain_until
            assert redated[sha]["reason"] == REASON
            before = redated[sha]["previous"].get("retain_until")
            if before is not None:  # only ever later than what it stated
                assert parse_time(before) < item.retain_until
        report = station.custody.verify()
        assert report.ok, report.problems
        was = head(station)
    finally:
        station.close()

    again, done_again = init_home(home, clock=FakeClock(AFTER_FIXTURE + timedelta(minutes=1)))
    try:
        assert done_again == [] and head(again) == was, "re-dated twice"
    finally:
        again.close()
