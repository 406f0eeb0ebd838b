"""``status`` reads tallies and short walks, not the rows: what it says must be what the rows
say. Two stations share one catalog (SQLite, then PostgreSQL); items are ingested, flagged,
labelled, copied, evicted, found bad, failed and re-sent; each station's status is compared
with a recount in plain SQL over the catalog, and again after the tallies were rebuilt from
the rows by the migration that adds them.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import (
    OFFICER,
    OFFICER_ID,
    ROOT,
    SERIAL,
    Clips,
    FakeClock,
    build_recorder,
    cli_json,
    init_station,
    open_station,
    run_cli,
    write_config,
)

from ingestd import config as config_mod
from ingestd.catalog.db import Catalog
from ingestd.domain.records import DockSource, SessionState
from ingestd.usecases.home import init_home
from ingestd.usecases.ingest import HOST
from ingestd.usecases.status import status
from tests.support import catalog

pytestmark = pytest.mark.integration


def recount(url: str, station: str, targets: list[str]) -> dict[str, Any]:
    """What ``status --json`` says of counts and copies, counted from the rows in plain SQL."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            def rows(sql: str, **params: Any) -> list[Any]:
                return list(conn.execute(sa.text(sql), {"station": station, **params}))

            def one(sql: str, **params: Any) -> Any:
                return rows(sql, **params)[0]

            mine = "JOIN items i ON i.sha256 = {}.item WHERE i.station = :station"
            total = one("SELECT count(*), coalesce(sum(size), 0) FROM items"
                        " WHERE station = :station")
            local = one("SELECT count(*), coalesce(sum(size), 0) FROM items"
                        " WHERE station = :station AND local_present")
            labelled = one("SELECT count(DISTINCT l.item) FROM labels l " + mine.format("l"))
            flags = dict(rows("SELECT f.flag, count(*) FROM flags f " + mine.format("f")
                              + " GROUP BY f.flag"))
            acquired = dict(rows(
                "SELECT a.state, count(*) FROM acquisitions a JOIN dock_sessions s"
                " ON s.id = a.session_id WHERE s.station = :station GROUP BY a.state"))
            out: dict[str, Any] = {
                "store": {"items": local[0], "bytes": int(local[1])},
                "items": {"total": total[0], "bytes": int(total[1]), "labelled": labelled[0],
                          "flags": flags},
                "acquisitions": acquired, "targets": {}}
            for target in targets:
                states = dict(rows("SELECT r.state, count(*) FROM replicas r "
                                   + mine.format("r") + " AND r.target = :target"
                                   " GROUP BY r.state", target=target))
                proven = one("SELECT count(*) FROM replicas r " + mine.format("r")
                             + " AND r.target = :target AND r.state = 'verified'"
                             " AND r.proven_at IS NOT NULL AND NOT r.rewrite",
                             target=target)[0]
                oldest = rows(
                    "SELECT sha256, replication_deadline FROM items WHERE station = :station"
                    " AND local_present AND sha256 NOT IN (SELECT item FROM replicas"
                    " WHERE target = :target AND state = 'verified')"
                    " ORDER BY replication_deadline, sha256 LIMIT 1", target=target)
                error = rows("SELECT r.last_error, r.updated_at FROM replicas r "
                             + mine.format("r") + " AND r.target = :target"
                             " AND r.last_error <> '' ORDER BY r.updated_at DESC LIMIT 1",
                             target=target)
                failed = states.get("failed", 0) + states.get("mismatch", 0)
                # local items with no verified copy there (an evicted item's copy is not one
                # a local item still waits for)
                waiting = one("SELECT count(*) FROM items WHERE station = :station"
                              " AND local_present AND sha256 NOT IN (SELECT item FROM replicas"
                              " WHERE target = :target AND state = 'verified')",
                              target=target)[0]
                out["targets"][target] = {
                    "verified": states.get("verified", 0), "proven": proven,
                    "in_flight": states.get("uploading", 0), "failed": failed,
                    "queued": max(0, waiting - states.get("uploading", 0) - failed),
                    "oldest_waiting": {"sha256": oldest[0][0], "deadline": oldest[0][1]}
                    if oldest else None,
                    "last_error": {"error": error[0][0], "at": error[0][1]} if error else None}
            return out
    finally:
        engine.dispose()


def shown(home: Path) -> dict[str, Any]:
    """The parts of ``status --json`` that count rows."""
    doc = cli_json(home, "status")
    return {"store": {k: doc["store"][k] for k in ("items", "bytes")},
            "items": doc["items"], "acquisitions": doc["acquisitions"],
            "targets": doc["targets"]}


def check(url: str, homes: dict[str, Path]) -> None:
    for name, home in homes.items():
        assert shown(home) == recount(url, name, [f"nas-{name}"]), name


def station_config(name: str, url: str, nas: Path) -> str:
    return (f'station = "{name}"\ncatalog = "{url}"\n\n[retention]\nlocal_keep = "0s"\n\n'
            f'[[targets]]\nname = "nas-{name}"\ntype = "directory"\npath = "{nas}"\n'
            'same_filesystem_ok = true\n')


def two_stations(tmp_path: Path, url: str) -> dict[str, Path]:
    """station-01 and station-02 on one catalog, each with its own directory target."""
    homes = {}
    for n, name in enumerate(("station-01", "station-02")):
        nas = tmp_path / f"nas-{name}"
        nas.mkdir()
        home = tmp_path / name
        if n == 0:  # the recorder is registered once, for the catalog
            init_station(home, config=station_config(name, url, nas).removeprefix(
                'station = "station-01"\n'), register={SERIAL: (OFFICER, OFFICER_ID)})
        else:
            write_config(home, station_config(name, url, nas))
            init_home(home, clock=FakeClock())[0].close()
        homes[name] = home
    return homes


def exercise(tmp_path: Path, clips: Clips, url: str) -> dict[str, Path]:
    homes = two_stations(tmp_path, url)
    one, two = homes["station-01"], homes["station-02"]
    first = build_recorder(tmp_path / "rec1", {
        "DCIM/a.mp4": clips.a, "DCIM/b.mp4": clips.b,
        "DCIM/half.mp4": clips.truncated, "DCIM/empty.mp4": b""})
    assert run_cli(one, "ingest", first, "--serial", SERIAL).exit_code == 0
    # the second station takes one item of its own and one the first already stored
    second = build_recorder(tmp_path / "rec2", {"DCIM/c.mp4": clips.c,
                                                "DCIM/a.mp4": clips.a})
    assert run_cli(two, "ingest", second, "--serial", SERIAL).exit_code == 0
    check(url, homes)
    # a file of the second station being copied by a process that is gone, then found so
    # (interrupted) by its next ingest
    station = open_station(two)
    try:
        with station.catalog.write() as tx:
            session = tx.open_session(
                serial=SERIAL, station=station.name, source=DockSource.WATCH, mountpoint="/x",
                state=SessionState.RUNNING, docked_at=station.clock(), actor="ingestd",
                ledger_seq=0, health={}, pid=None, host=HOST)
            tx.start_acquisition(session_id=session, serial=SERIAL, path="DCIM/d.mp4",
                                 path_hex=b"DCIM/d.mp4".hex(), size=10, mtime_ns=0,
                                 started_at=station.clock())
    finally:
        station.close()
    assert shown(two)["acquisitions"]["copying"] == 1
    check(url, homes)
    assert run_cli(two, "ingest", second, "--serial", SERIAL).exit_code == 0
    assert shown(two)["acquisitions"]["interrupted"] == 1
    check(url, homes)
    # labelled twice (one item labelled), then copied, proven and evicted
    for party in ("Wang", "Wang Wu"):
        assert run_cli(one, "label", clips.a.sha256, "--case", "C-1",
                       "--party", party).exit_code == 0
    assert run_cli(two, "label", clips.c.sha256, "--case", "C-2",
                   "--party", "Li").exit_code == 0
    assert len(cli_json(one, "replicate", "--limit", "2")["verified"]) == 2
    check(url, homes)
    evicted = cli_json(one, "retention")["evicted"]
    assert evicted
    check(url, homes)
    # a copy found bad, one that failed with an error, one in flight, one read back
    station = open_station(one)
    try:
        clock = station.clock
        assert isinstance(clock, FakeClock)
        target = "nas-station-01"
        with station.catalog.write() as tx:
            verified = [sha for sha in (clips.a.sha256, clips.b.sha256)
                        if target in tx.verified_targets(sha)]
            bad = verified[0]
            tx.replica_found_bad(bad, target, version_id=None, error="does not hash",
                                 at=clock.now)
            waiting = [i.sha256 for i in tx.replication_queue([target], station=station.name)]
            assert waiting
            tx.replica_failed(waiting[0], target, error="disk full",
                              at=clock.now + timedelta(minutes=1))
            if len(waiting) > 1:
                tx.replica_uploading(waiting[1], target, attempts=1, at=clock.now)
    finally:
        station.close()
    check(url, homes)
    # sent again: verified anew, the others as they were
    cli_json(one, "replicate")
    check(url, homes)
    return homes


def test_status_from_tallies_is_what_the_rows_say(tmp_path: Path, clips: Clips) -> None:
    url = f"sqlite:///{tmp_path / 'shared.sqlite'}"
    homes = exercise(tmp_path, clips, url)
    before = {name: shown(home) for name, home in homes.items()}
    assert before["station-01"]["items"]["labelled"] == 1
    assert before["station-02"]["items"]["labelled"] == 1
    assert before["station-02"]["items"]["total"] == 1  # a: the first station's item
    assert before["station-02"]["acquisitions"] == {"interrupted": 1, "known": 3, "stored": 1}
    triggers = {r["name"] for r in catalog.raw_rows(
        homes["station-01"], "SELECT name FROM sqlite_master WHERE type = 'trigger'")}
    assert triggers >= {name for name, *_ in _migration().TRIGGERS}
    # Taken back before the new tallies and forward again: filled from the rows, the same.
    from alembic import command

    from ingestd.catalog.db import _alembic_config

    command.downgrade(_alembic_config(url), "0016")
    Catalog(url).upgrade()
    assert {name: shown(home) for name, home in homes.items()} == before
    check(url, homes)


def _migration() -> Any:
    import importlib.util

    path = ROOT / "ingestd" / "catalog" / "migrations" / "versions" / "0018_status_tallies.py"
    spec = importlib.util.spec_from_file_location("migration_0018", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_on_postgresql_too(tmp_path: Path, clips: Clips, postgres_url: str) -> None:
    homes = exercise(tmp_path, clips, postgres_url)
    engine = sa.create_engine(postgres_url)
    try:
        with engine.connect() as conn:
            triggers = set(conn.execute(sa.text(
                "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal")).scalars())
    finally:
        engine.dispose()
    assert triggers >= {name for name, *_ in _migration().TRIGGERS}
    from alembic import command

    from ingestd.catalog.db import _alembic_config

    before = {name: shown(home) for name, home in homes.items()}
    command.downgrade(_alembic_config(postgres_url), "0016")
    Catalog(postgres_url).upgrade()
    assert {name: shown(home) for name, home in homes.items()} == before
    check(postgres_url, homes)


@pytest.mark.parametrize("chunk", [1, 2])
def test_the_oldest_waiting_is_found_from_either_end(tmp_path: Path, clips: Clips,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     chunk: int) -> None:
    """Walked a row or two at a time, from the earliest deadline and from the latest in
    turn: of six items, whichever one or two wait among copied ones, the earliest waiting is
    named."""
    from ingestd.catalog import queries

    monkeypatch.setattr(queries, "WAITING_CHUNK", chunk)
    monkeypatch.setattr(queries, "WAITING_CHUNK_MAX", chunk)
    nas = tmp_path / "nas"
    nas.mkdir()
    home = init_station(tmp_path / "home", register={SERIAL: (OFFICER, OFFICER_ID)},
                        config=f'[[targets]]\nname = "nas"\ntype = "directory"\n'
                               f'path = "{nas}"\nsame_filesystem_ok = true\n')
    rec = build_recorder(tmp_path / "rec", {
        "DCIM/a.mp4": clips.a, "DCIM/b.mp4": clips.b, "DCIM/c.mp4": clips.c,
        "DCIM/plain.mp4": clips.plain, "DCIM/half.mp4": clips.truncated,
        "DCIM/empty.mp4": b""})
    assert run_cli(home, "ingest", rec, "--serial", SERIAL).exit_code == 0
    url = config_mod.load(home / config_mod.CONFIG_NAME).catalog_url
    station = open_station(home)
    try:
        with station.catalog.read() as tx:
            by_deadline = [i.sha256 for i in tx.replication_queue(["nas"])]
        assert len(by_deadline) == 6
        sets = [{w} for w in by_deadline] + [
            {w, v} for n, w in enumerate(by_deadline) for v in by_deadline[n + 1:]]
        for waiting in sets:
            with station.catalog.write() as tx:
                for sha in by_deadline:
                    if sha in waiting:
                        tx.replica_failed(sha, "nas", error="x", at=station.clock())
                    else:
                        tx.replica_verified(sha, "nas", key=sha, size=1, remote_sha256=sha,
                                            retain_until=None, hold=False, location=str(nas),
                                            read_back=True, at=station.clock(), ledger_seq=1)
            (stats,) = status(station).targets.values()
            earliest = next(sha for sha in by_deadline if sha in waiting)
            assert stats.oldest_waiting is not None
            assert stats.oldest_waiting.sha256 == earliest, (waiting, by_deadline)
            assert stats.to_json() == recount(url, station.name, ["nas"])["targets"]["nas"]
    finally:
        station.close()
