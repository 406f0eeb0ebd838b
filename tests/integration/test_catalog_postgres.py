"""A PostgreSQL catalog (a fleet's): init, ingest, label, verify and ledger verify work as on
SQLite; two ingest processes appending to one ledger at once keep the chain valid."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import (
    SERIAL,
    ClipFile,
    Clips,
    build_recorder,
    ledger_lines,
    partial_files,
    run_cli,
    run_ingestd,
    sha256_of,
    start_ingestd,
    store_objects,
)

from tests.support.damage import flip_bit

pytestmark = pytest.mark.integration

MEDIA = "DCIM/100MEDIA"


def pg_station(home: Path, url: str, *, station: str = "station-01",
               register: dict[str, str] | None = None) -> Path:
    result = run_cli(home, "init", "--station", station, "--catalog", url)
    assert result.exit_code == 0, result.stderr
    for serial, officer in (register or {}).items():
        added = run_cli(home, "devices", "add", serial, "--officer", officer,
                        "--officer-id", serial)
        assert added.exit_code == 0, added.stderr
    return home


def ledger_rows(url: str) -> list[dict]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return [dict(r) for r in conn.execute(
                sa.text("SELECT seq, kind, station, prev_hash, entry_hash FROM ledger "
                        "ORDER BY seq")).mappings()]
    finally:
        engine.dispose()


def execute(url: str, sql: str, **params: object) -> int:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            return conn.execute(sa.text(sql), params).rowcount
    finally:
        engine.dispose()


def test_init_ingest_label_verify_on_postgresql(tmp_path: Path, postgres_url: str,
                                                clips: Clips) -> None:
    home = pg_station(tmp_path / "home", postgres_url, register={SERIAL: "Wang Fang"})
    assert not (home / "catalog.sqlite").exists()
    assert "postgresql" in (home / "ingestd.toml").read_text()

    rec = build_recorder(tmp_path / "rec", {f"{MEDIA}/A.MP4": clips.a, f"{MEDIA}/B.MP4": clips.b,
                                            f"{MEDIA}/E.MP4": b""})
    first = run_cli(home, "ingest", rec, "--serial", SERIAL, "--json")
    assert first.exit_code == 0, first.stderr
    assert {i["sha256"] for i in first.json()["items"]} == {
        clips.a.sha256, clips.b.sha256, sha256_of(b"")}
    again = run_cli(home, "ingest", rec, "--serial", SERIAL, "--json").json()
    assert again["bytes_copied"] == 0

    labelled = run_cli(home, "label", clips.a.sha256[:8], "--case", "C-PG-1", "--party", "Li")
    assert labelled.exit_code == 0, labelled.stderr
    shown = run_cli(home, "show", clips.a.sha256[:8], "--json").json()
    assert shown["item"]["case"] == "C-PG-1" and shown["item"]["officer"] == "Wang Fang"
    assert [a["state"] for a in shown["acquisitions"]] == ["stored", "known"]
    assert run_cli(home, "items", "--case", "C-PG-1", "--json").json()["items"][0][
        "sha256"] == clips.a.sha256
    assert run_cli(home, "verify", rec / MEDIA / "B.MP4").exit_code == 0
    status = run_cli(home, "status", "--json").json()
    assert status["items"]["total"] == 3 and status["acquisitions"] == {"stored": 3, "known": 3}

    verified = run_cli(home, "ledger", "verify", "--json")
    assert verified.exit_code == 0, verified.stdout
    assert verified.json()["entries"] == len(ledger_rows(postgres_url))

    # Tampering with the PostgreSQL ledger is found as on SQLite.
    assert execute(postgres_url, "UPDATE ledger SET actor = 'mallory' WHERE kind = 'labelled'") == 1
    assert execute(postgres_url, "UPDATE items SET recorder = 'X' WHERE sha256 = :s",
                   s=clips.b.sha256) == 1
    tampered = run_cli(home, "ledger", "verify", "--json")
    assert tampered.exit_code == 1
    kinds = {p["kind"] for p in tampered.json()["problems"]}
    assert {"edited", "bad_signature", "mirror_differs", "row_differs"} <= kinds


def test_unregistered_recorder_refused_on_postgresql(tmp_path: Path, postgres_url: str,
                                                     clips: Clips) -> None:
    home = pg_station(tmp_path / "home", postgres_url)
    rec = build_recorder(tmp_path / "rec", {f"{MEDIA}/A.MP4": clips.a})
    result = run_cli(home, "ingest", rec, "--serial", "NOBODY")
    assert result.exit_code == 6
    assert [r["kind"] for r in ledger_rows(postgres_url)][-1] == "recorder_refused"
    assert run_cli(home, "ledger", "verify").exit_code == 0


def test_two_ingests_at_once_keep_one_valid_chain(tmp_path: Path, postgres_url: str,
                                                  big_clips: list[ClipFile],
                                                  clips: Clips) -> None:
    home = pg_station(tmp_path / "home", postgres_url,
                      register={"R-1": "Li Na", "R-2": "Zhao Lei"})
    rec1 = build_recorder(tmp_path / "r1", {f"{MEDIA}/{i}.MP4": c for i, c in
                                            enumerate(big_clips[:3])} | {
        f"{MEDIA}/SHARED.MP4": clips.a})
    rec2 = build_recorder(tmp_path / "r2", {f"{MEDIA}/{i}.MP4": c for i, c in
                                            enumerate(big_clips[3:])} | {
        f"{MEDIA}/SHARED.MP4": clips.a, f"{MEDIA}/C.MP4": clips.c})
    procs = [start_ingestd(home, "ingest", rec1, "--serial", "R-1", "--json"),
             start_ingestd(home, "ingest", rec2, "--serial", "R-2", "--json")]
    reports = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        reports.append(json.loads(out))
    assert [len(r["items"]) for r in reports] == [4, 4]

    distinct = {c.sha256 for c in big_clips} | {clips.a.sha256, clips.c.sha256}
    assert set(store_objects(home)) == distinct
    assert partial_files(home) == []
    rows = ledger_rows(postgres_url)
    assert [r["seq"] for r in rows] == list(range(1, len(rows) + 1))
    assert all(b["prev_hash"] == a["entry_hash"] for a, b in zip(rows, rows[1:], strict=False))
    stored = [r for r in rows if r["kind"] == "stored"]
    assert len(stored) == len(distinct), "the shared clip is stored once"
    # Both processes' entries are interleaved in one chain, and the mirror has them in order.
    mirror = ledger_lines(home)
    assert [e["seq"] for e in mirror] == [r["seq"] for r in rows]
    verified = run_ingestd(home, "ledger", "verify", "--json")
    assert verified.returncode == 0, verified.stdout
    shared = run_cli(home, "show", clips.a.sha256, "--json").json()
    assert sorted(a["serial"] for a in shared["acquisitions"]) == ["R-1", "R-2"]


def test_two_stations_on_one_catalog_both_verify(tmp_path: Path, postgres_url: str,
                                                 clips: Clips) -> None:
    one = pg_station(tmp_path / "one", postgres_url, station="dock-1",
                     register={"R-1": "Li Na"})
    two = pg_station(tmp_path / "two", postgres_url, station="dock-2")
    assert run_cli(two, "devices", "add", "R-2", "--officer", "Zhao", "--officer-id", "2"
                   ).exit_code == 0
    rec1 = build_recorder(tmp_path / "r1", {f"{MEDIA}/A.MP4": clips.a})
    rec2 = build_recorder(tmp_path / "r2", {f"{MEDIA}/B.MP4": clips.b})
    assert run_cli(one, "ingest", rec1, "--serial", "R-1").exit_code == 0
    assert run_cli(two, "ingest", rec2, "--serial", "R-2").exit_code == 0
    # Both stations' keys are trusted; each station's entries are signed by its own key.
    stations = {r["station"] for r in ledger_rows(postgres_url)}
    assert stations == {"dock-1", "dock-2"}
    assert run_cli(two, "ledger", "verify").exit_code == 0
    assert run_cli(one, "ledger", "verify").exit_code == 0
    # Each station's status is its own: its items, its store, its docks.
    for home, serial, clip in ((one, "R-1", clips.a), (two, "R-2", clips.b)):
        status = run_cli(home, "status", "--json").json()
        assert status["items"]["total"] == 1 and status["store"]["items"] == 1, status
        assert status["items"]["bytes"] == clip.size
        assert status["acquisitions"] == {"stored": 1}
        assert [d["serial"] for d in status["docks"]] == [serial]


def test_a_writer_waits_for_the_one_before_and_reads_what_it_committed(
        tmp_path: Path, postgres_url: str) -> None:
    """Two stations (or two ingest processes) may find the same clip new at once; the second
    must see the first one's item, not insert it again. One writer at a time guarantees it."""
    import threading

    from ingestd.catalog.db import open_catalog

    first, second = open_catalog(postgres_url), open_catalog(postgres_url)
    inside, release = threading.Event(), threading.Event()
    seen: list[int] = []

    def hold() -> None:
        with first.write() as conn:
            conn.conn.execute(sa.text("INSERT INTO keys (key_id, station, public_key, created_at) "
                                 "VALUES ('k1', 's', 'aa', '2026-01-01T00:00:00Z')"))
            inside.set()
            release.wait(30)

    def follow() -> None:
        with second.write() as conn:
            seen.append(conn.conn.execute(sa.text("SELECT count(*) FROM keys")).scalar_one())

    holder = threading.Thread(target=hold)
    holder.start()
    assert inside.wait(30)
    follower = threading.Thread(target=follow)
    follower.start()
    follower.join(1.0)
    assert follower.is_alive(), "the second writer went ahead while the first was open"
    release.set()
    holder.join(30)
    follower.join(30)
    assert seen == [1], "the second writer did not see the first one's commit"
    first.dispose()
    second.dispose()


def _add_nas(home: Path, nas: Path) -> None:
    with (home / "ingestd.toml").open("a", encoding="utf-8") as fh:
        fh.write(f'\n[[targets]]\nname = "nas"\ntype = "directory"\npath = "{nas}"\n'
                 'same_filesystem_ok = true\n')


def test_a_station_that_does_not_hold_an_item_never_calls_it_damaged(
        tmp_path: Path, postgres_url: str, clips: Clips) -> None:
    one = pg_station(tmp_path / "one", postgres_url, station="dock-1", register={"R-1": "Li Na"})
    two = pg_station(tmp_path / "two", postgres_url, station="dock-2")
    rec1 = build_recorder(tmp_path / "r1", {f"{MEDIA}/A.MP4": clips.a})
    assert run_cli(one, "ingest", rec1, "--serial", "R-1").exit_code == 0
    sha = clips.a.sha256

    # Without targets, the other station says where the bytes are and that it cannot check
    # them; the file a user brings is still proven to be the evidence.
    plain = run_cli(two, "verify", "--hash", sha, "--json")
    assert plain.exit_code == 0, plain.stdout
    verdict = plain.json()["results"][0]
    assert verdict["match"] is True and verdict["problems"] == []
    assert verdict["held"] == {"station": "dock-1", "local": True, "targets": [],
                               "checked": "not-checked-here"}
    assert any("cannot be checked from this station" in n for n in verdict["notes"])
    text = " ".join(run_cli(two, "verify", clips.a.path).stdout.split())
    assert "MATCH" in text and "NO MATCH" not in text and "damaged" not in text
    assert "stored at station dock-1" in text

    # With a target holding a verified copy, it checks the copy there.
    nas = tmp_path / "nas"
    nas.mkdir()
    _add_nas(one, nas)
    _add_nas(two, nas)
    assert run_cli(one, "replicate").exit_code == 0
    offsite = run_cli(two, "verify", "--hash", sha, "--json")
    assert offsite.exit_code == 0, offsite.stdout
    verdict = offsite.json()["results"][0]
    assert verdict["held"]["targets"] == ["nas"] and verdict["held"]["checked"] == "offsite:nas"
    assert any("read back in full: intact" in n for n in verdict["notes"])
    # each station's checkpoints on the shared target, remembered per station
    for home in (one, two):  # the same head: each station still sends its own
        sent = run_cli(home, "checkpoint", "--json")
        assert sent.exit_code == 0 and sent.json()["sent"] == ["nas"], sent.stdout
        assert run_cli(home, "ledger", "verify", "--offsite").exit_code == 0
    # at the station that holds it, its own store is read, as before
    home_verdict = run_cli(one, "verify", "--hash", sha, "--json").json()["results"][0]
    assert home_verdict["match"] is True and home_verdict["held"]["checked"] == "here"

    # Damage it has seen, it reports.
    copy = nas / "sha256" / sha
    flip_bit(copy, 1000)
    damaged = run_cli(two, "verify", "--hash", sha, "--json")
    assert damaged.exit_code == 1
    assert "off-site copy on nas is damaged" in damaged.json()["results"][0]["problems"][0]

    # nor does an audit at the other station flag what it does not hold
    audited = run_cli(two, "audit", "--all", "--json")
    assert audited.exit_code == 0 and audited.json()["checked"] == 0, audited.stdout
    assert run_cli(two, "show", sha, "--json").json()["flags"] == []

    # items and show name the station that holds each item
    listed = run_cli(two, "items", "--json").json()["items"]
    assert [(i["sha256"], i["station"]) for i in listed] == [(sha, "dock-1")]
    assert "dock-1" in run_cli(two, "items").stdout
    assert run_cli(two, "show", sha[:12], "--json").json()["item"]["station"] == "dock-1"


def test_copies_proven_relocated_and_evicted_on_postgresql(tmp_path: Path, postgres_url: str,
                                                          clips: Clips) -> None:
    home = pg_station(tmp_path / "home", postgres_url, register={SERIAL: "Wang Fang"})
    first, second = tmp_path / "nas-1", tmp_path / "nas-2"
    first.mkdir()
    second.mkdir()
    with (home / "ingestd.toml").open("a", encoding="utf-8") as fh:
        fh.write(f'\n[retention]\nlocal_keep = "0s"\n\n[[targets]]\nname = "nas"\n'
                 f'type = "directory"\npath = "{first}"\nsame_filesystem_ok = true\n')
    rec = build_recorder(tmp_path / "rec", {f"{MEDIA}/A.MP4": clips.a})
    assert run_cli(home, "ingest", rec, "--serial", SERIAL).exit_code == 0
    assert run_cli(home, "replicate").exit_code == 0
    assert run_cli(home, "status", "--json").json()["targets"]["nas"]["proven"] == 1

    # re-pointed before the sweep: the copy on the first share does not count for the second
    text = (home / "ingestd.toml").read_text(encoding="utf-8")
    (home / "ingestd.toml").write_text(text.replace(str(first), str(second)), encoding="utf-8")
    assert run_cli(home, "retention", "--json").json()["evicted"] == []
    assert run_cli(home, "replicate").exit_code == 0
    assert (second / "sha256" / clips.a.sha256).exists()
    audit = run_cli(home, "audit", "--all", "--offsite", "--decode", "0", "--json")
    assert audit.exit_code == 0, audit.stdout
    assert [e["sha256"] for e in run_cli(home, "retention", "--json").json()["evicted"]] == [
        clips.a.sha256]
    assert run_cli(home, "ledger", "verify").exit_code == 0
