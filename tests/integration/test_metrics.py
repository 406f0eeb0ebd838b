"""``/metrics``: what Prometheus scrapes says what the catalog holds (counted by the catalog's
triggers; each metric checked against what ``status`` says of the same thing, and the items
waiting against the rows themselves; tests/integration/test_status_tallies.py checks the
tallies both read against a recount of the rows), its counters never go down
across an eviction, ``promtool`` accepts it and the shipped rules, the Grafana dashboard asks
only for metrics it has, and it is served over HTTP by a real uvicorn. On PostgreSQL too.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import uvicorn
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
    item_record,
    open_station,
    run_cli,
)
from fastapi import FastAPI
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from ingestd import config as config_mod
from ingestd.app.jobs import Job, run_job
from ingestd.catalog.db import Catalog
from ingestd.domain.models import EventKind
from ingestd.domain.records import DockSource, SessionState
from ingestd.errors import IntegrityError
from ingestd.station import Station, system_clock
from ingestd.usecases.ingest import HOST
from ingestd.usecases.status import AUDIT_JOB, LEDGER_JOB
from ingestd.web import metrics
from tests.support import catalog

pytestmark = pytest.mark.integration

RULES = ROOT / "config" / "prometheus-rules.yml"
DASHBOARD = ROOT / "config" / "grafana-dashboard.json"
PROMTOOL = "/usr/bin/promtool"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: str) -> Samples:
    """Every sample of an exposition text, by name and labels."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(found: Samples, metric: str, /, **labels: str) -> float:
    return found[(metric, tuple(sorted(labels.items())))]


def scrape(home: Path) -> tuple[str, Samples]:
    station = open_station(home, clock=system_clock)
    try:
        text = metrics.render(station).decode("utf-8")
    finally:
        station.close()
    return text, samples(text)


def promtool_metrics(text: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True,
                          text=True, timeout=60, check=False)


def counters(found: Samples) -> dict[Any, float]:
    return {key: v for key, v in found.items() if key[0].endswith("_total")}


def target_config(nas: Path) -> str:
    return (f'[retention]\nlocal_keep = "0s"\n\n[[targets]]\nname = "nas"\ntype = "directory"\n'
            f'path = "{nas}"\nsame_filesystem_ok = true\n')


def ingest_recorder(home: Path, rec: Path) -> dict[str, Any]:
    result = run_cli(home, "ingest", rec, "--serial", SERIAL, "--json")
    assert result.exit_code == 0, result.stderr
    answer: dict[str, Any] = result.json()
    return answer


@pytest.fixture(scope="module")
def recorder(tmp_path_factory: pytest.TempPathFactory, clips: Clips) -> Path:
    """Three clips, one that cannot be played (damaged_media) and an empty file (empty_file)."""
    return build_recorder(tmp_path_factory.mktemp("rec"), {
        "DCIM/a.mp4": clips.a, "DCIM/b.mp4": clips.b, "DCIM/c.mp4": clips.c,
        "DCIM/half.mp4": clips.truncated, "DCIM/empty.mp4": b""})


def check_against_status(home: Path, found: Samples) -> dict[str, Any]:
    """Each metric says what ``status`` says of the same thing (both read the tallies, which
    test_status_tallies.py recounts from the rows): the right tally under the right name."""
    status = cli_json(home, "status")
    store, items = status["store"], status["items"]
    assert value(found, "ingestd_items", state="local") == store["items"]
    assert value(found, "ingestd_items", state="evicted") == items["total"] - store["items"]
    assert value(found, "ingestd_store_used_bytes") == store["bytes"]
    assert value(found, "ingestd_ingested_items_total") == items["total"]
    assert value(found, "ingestd_ingested_bytes_total") == items["bytes"]
    flagged = {dict(labels)["flag"]: v for (name, labels), v in found.items()
               if name == "ingestd_flagged_items" and v}
    assert flagged == items["flags"]
    for state, n in status["acquisitions"].items():
        assert value(found, "ingestd_acquisitions_total", result=state) == n
    assert 0 < value(found, "ingestd_store_free_bytes") <= value(found,
                                                                   "ingestd_store_size_bytes")
    return status


def waiting_on(home: Path, target: str) -> list[str]:
    """The local items not verified on ``target``, from the rows."""
    verified = {r["item"] for r in catalog.replicas(home)
                if r["target"] == target and r["state"] == "verified"}
    return [i["sha256"] for i in cli_json(home, "items")["items"]
            if i["local"] and i["sha256"] not in verified]


def test_metrics_follow_the_catalog_through_replication_and_eviction(
        tmp_path: Path, recorder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nas = tmp_path / "nas"
    nas.mkdir()
    home = init_station(tmp_path / "home", config=target_config(nas),
                        register={SERIAL: (OFFICER, OFFICER_ID)})
    first = ingest_recorder(home, recorder)
    ingest_recorder(home, recorder)  # all known now
    text, found = scrape(home)
    assert promtool_metrics(text).returncode == 0, promtool_metrics(text)
    status = check_against_status(home, found)
    assert set(status["items"]["flags"]) >= {"damaged_media", "empty_file"}
    assert value(found, "ingestd_acquisitions_total", result="known") == len(first["items"])
    assert value(found, "ingestd_replication_queue_items", target="nas") == len(first["items"])
    assert value(found, "ingestd_replicated_bytes_total", target="nas") == 0
    assert value(found, "ingestd_last_successful_replication_timestamp_seconds",
                 target="nas") == 0

    # Two copies to the directory target: the queue shrinks by them, their bytes are counted.
    replicated = cli_json(home, "replicate", "--limit", "2")
    sent = {v["sha256"] for v in replicated["verified"]}
    assert len(sent) == 2
    before_scrape = datetime.now(UTC)
    _, after_copy = scrape(home)
    after_scrape = datetime.now(UTC)
    check_against_status(home, after_copy)
    waiting = waiting_on(home, "nas")
    assert value(after_copy, "ingestd_replication_queue_items", target="nas") == len(waiting)
    assert len(waiting) == len(first["items"]) - 2
    sizes = {i["sha256"]: i["size"] for i in cli_json(home, "items")["items"]}
    assert value(after_copy, "ingestd_replicated_bytes_total", target="nas") == sum(
        sizes[s] for s in sent)
    assert value(after_copy, "ingestd_replicated_copies_total", target="nas") == 2
    newest = max(r["verified_at"] for r in catalog.replicas(home) if r["state"] == "verified")
    assert value(after_copy, "ingestd_last_successful_replication_timestamp_seconds",
                 target="nas") == pytest.approx(datetime.fromisoformat(newest).timestamp())
    stored = min(datetime.fromisoformat(item_record(home, s)["stored_at"]) for s in waiting)
    age = value(after_copy, "ingestd_replication_oldest_waiting_age_seconds", target="nas")
    assert (before_scrape - stored).total_seconds() - 1e-3 <= age
    assert age <= (after_scrape - stored).total_seconds() + 1e-3
    # Past the walk's bound, the newest waiting within it dates the age: a lower bound.
    monkeypatch.setattr(metrics, "WAITING_WALK", 1)
    before_scrape = datetime.now(UTC)
    _, bounded = scrape(home)
    after_scrape = datetime.now(UTC)
    monkeypatch.undo()
    newest_waiting = max(datetime.fromisoformat(item_record(home, s)["stored_at"])
                         for s in waiting)
    lower = value(bounded, "ingestd_replication_oldest_waiting_age_seconds", target="nas")
    assert (before_scrape - newest_waiting).total_seconds() - 1e-3 <= lower
    assert lower <= (after_scrape - newest_waiting).total_seconds() + 1e-3

    # The sweep evicts what is proven off-site: gauges fall, counters stay.
    swept = cli_json(home, "retention")
    assert {e["sha256"] for e in swept["evicted"]} == sent
    _, after_sweep = scrape(home)
    check_against_status(home, after_sweep)
    assert value(after_sweep, "ingestd_items", state="evicted") == 2
    assert value(after_sweep, "ingestd_store_used_bytes") == value(
        after_copy, "ingestd_store_used_bytes") - sum(sizes[s] for s in sent)
    assert value(after_sweep, "ingestd_replication_queue_items", target="nas") == len(waiting)
    for key, before in counters(after_copy).items():
        assert after_sweep[key] >= before, key
    assert value(after_sweep, "ingestd_ingested_bytes_total") == value(
        after_copy, "ingestd_ingested_bytes_total")

    # Brought back by a dock of the same bytes: local again, ingested still counted once.
    ingest_recorder(home, recorder)
    _, restored = scrape(home)
    check_against_status(home, restored)
    assert value(restored, "ingestd_items", state="evicted") == 0
    assert value(restored, "ingestd_replication_queue_items", target="nas") == len(waiting)
    assert value(restored, "ingestd_ingested_bytes_total") == value(
        after_copy, "ingestd_ingested_bytes_total")


def test_jobs_docks_and_worm_standing_are_shown(tmp_path: Path) -> None:
    nas = tmp_path / "nas"
    nas.mkdir()
    clock = FakeClock()
    home = init_station(tmp_path / "home", config=target_config(nas), clock=clock)
    station = open_station(home, clock)
    try:
        def broken_audit(_st: Station) -> str:
            raise IntegrityError("1 of 1 items failed their fixity check")

        every = clock.now - clock.now  # never scheduled here: run by hand
        assert run_job(station, Job(name=LEDGER_JOB, every=every,
                                    func=lambda st: "intact"))
        verified_at = clock.now
        clock.advance(minutes=5)
        assert not run_job(station, Job(name=AUDIT_JOB, every=every, func=broken_audit))
        with station.catalog.write() as tx:  # a recorder docked now, served by this process
            tx.open_session(serial="BWC-7", station=station.name, source=DockSource.WATCH,
                            mountpoint="/x", state=SessionState.RUNNING, docked_at=clock.now,
                            actor="ingestd", ledger_seq=0, health={}, pid=os.getpid(),
                            host=HOST)
            tx.open_session(serial="BWC-8", station=station.name, source=DockSource.WATCH,
                            mountpoint="/y", state=SessionState.RUNNING, docked_at=clock.now,
                            actor="ingestd", ledger_seq=0, health={}, pid=None, host=HOST)
        with station.custody.transaction() as tx:
            entry = station.custody.record(tx, kind=EventKind.WORM_CHECKED, actor="tester",
                                           data={"target": "nas", "passed": False})
            tx.worm_checked("nas", location=str(nas), passed=False, at=entry.at,
                            ledger_seq=entry.seq)
        text = metrics.render(station).decode("utf-8")
    finally:
        station.close()
    found = samples(text)
    assert promtool_metrics(text).returncode == 0, promtool_metrics(text)
    assert value(found, "ingestd_ledger_verified_timestamp_seconds") == pytest.approx(
        verified_at.timestamp())
    assert value(found, "ingestd_audit_failures_total", cycle="local") == 1
    assert value(found, "ingestd_audit_failures_total", cycle="offsite") == 0
    assert value(found, "ingestd_job_failures_total", name=AUDIT_JOB) == 1
    assert value(found, "ingestd_job_failures_total", name=LEDGER_JOB) == 0
    assert value(found, "ingestd_job_last_success_timestamp_seconds",
                 name=LEDGER_JOB) == pytest.approx(verified_at.timestamp())
    assert ("ingestd_job_last_success_timestamp_seconds", (("name", AUDIT_JOB),)) not in found
    # the session whose process is gone is not a recorder docked now
    assert value(found, "ingestd_docked_recorders") == 1
    assert value(found, "ingestd_target_worm_check_passed", target="nas") == 0


def test_triggers_are_all_there_at_the_head_and_a_migrated_catalog_starts_from_its_rows(
        tmp_path: Path, recorder: Path) -> None:
    nas = tmp_path / "nas"
    nas.mkdir()
    home = init_station(tmp_path / "home", config=target_config(nas),
                        register={SERIAL: (OFFICER, OFFICER_ID)})
    ingest_recorder(home, recorder)
    assert run_cli(home, "replicate", "--limit", "1").exit_code == 0
    found = {r["name"] for r in catalog.raw_rows(
        home, "SELECT name FROM sqlite_master WHERE type = 'trigger'")}
    assert found >= {name for name, *_ in _migration().TRIGGERS}
    _, before = scrape(home)
    # Taken back to the schema before the tallies and forward again: they are filled from the
    # rows, and say what the triggers said.
    url = config_mod.load(home / config_mod.CONFIG_NAME).catalog_url
    downgrade(url, "0011")
    Catalog(url).upgrade()
    _, after = scrape(home)
    moving = {"ingestd_store_free_bytes", "ingestd_replication_oldest_waiting_age_seconds"}
    assert {k: v for k, v in after.items() if k[0] not in moving} == {
        k: v for k, v in before.items() if k[0] not in moving}
    assert value(after, "ingestd_replicated_copies_total", target="nas") == 1


def _migration() -> Any:
    import importlib.util

    path = (ROOT / "ingestd" / "catalog" / "migrations" / "versions" / "0014_tallies.py")
    spec = importlib.util.spec_from_file_location("migration_0014", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def downgrade(url: str, revision: str) -> None:
    from alembic import command

    from ingestd.catalog.db import _alembic_config

    command.downgrade(_alembic_config(url), revision)


def test_the_shipped_rules_pass_promtool_and_use_only_exported_metrics(tmp_path: Path) -> None:
    checked = subprocess.run([PROMTOOL, "check", "rules", str(RULES)], capture_output=True,
                             text=True, timeout=60, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    exported = exported_names(tmp_path)
    used = set(re.findall(r"\bingestd_[a-z_]+", RULES.read_text(encoding="utf-8")))
    assert used and used <= exported, used - exported


def test_the_dashboard_asks_only_for_exported_metrics(tmp_path: Path) -> None:
    board = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exprs = [t["expr"] for panel in board["panels"] for t in panel["targets"]]
    assert len(exprs) >= 10 and all(exprs)
    exported = exported_names(tmp_path)
    used = {name for expr in exprs for name in re.findall(r"\bingestd_[a-z_]+", expr)}
    assert used <= exported, used - exported
    required = {"ingestd_items", "ingestd_flagged_items", "ingestd_store_free_bytes",
                "ingestd_replication_queue_items", "ingestd_ledger_verified_timestamp_seconds",
                "ingestd_audit_failures_total", "ingestd_target_worm_check_passed"}
    assert required <= used


def exported_names(tmp_path: Path) -> set[str]:
    """The names of every sample a station with a target and a WORM standing exports."""
    nas = tmp_path / "nas"
    nas.mkdir(exist_ok=True)
    home = init_station(tmp_path / "names", config=target_config(nas))
    station = open_station(home)
    try:
        every = station.clock() - station.clock()
        run_job(station, Job(name=LEDGER_JOB, every=every, func=lambda st: "intact"))
        with station.custody.transaction() as tx:
            entry = station.custody.record(tx, kind=EventKind.WORM_CHECKED, actor="tester",
                                           data={"target": "nas", "passed": True})
            tx.worm_checked("nas", location=str(nas), passed=True, at=entry.at,
                            ledger_seq=entry.seq)
        text = metrics.render(station).decode("utf-8")
    finally:
        station.close()
    return {name for name, _labels in samples(text)}


@contextmanager
def serving(app: FastAPI) -> Iterator[str]:
    """``app`` in a real uvicorn on a free loopback port; yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def test_the_router_serves_metrics_over_http(tmp_path: Path, recorder: Path) -> None:
    home = init_station(tmp_path / "home", register={SERIAL: (OFFICER, OFFICER_ID)})
    ingest_recorder(home, recorder)
    station = open_station(home, clock=system_clock)
    app = FastAPI()
    app.state.station = station
    app.include_router(metrics.router)
    try:
        with serving(app) as base:
            answer = httpx.get(f"{base}/metrics", timeout=30)
    finally:
        station.close()
    assert answer.status_code == 200
    assert answer.headers["content-type"] == CONTENT_TYPE_LATEST
    assert promtool_metrics(answer.text).returncode == 0
    check_against_status(home, samples(answer.text))


def test_on_postgresql_the_triggers_count_as_on_sqlite(
        tmp_path: Path, recorder: Path, postgres_url: str) -> None:
    nas = tmp_path / "nas"
    nas.mkdir()
    home = init_station(tmp_path / "home",
                        config=f'catalog = "{postgres_url}"\n' + target_config(nas),
                        register={SERIAL: (OFFICER, OFFICER_ID)})
    first = ingest_recorder(home, recorder)
    assert len(cli_json(home, "replicate", "--limit", "2")["verified"]) == 2
    text, found = scrape(home)
    assert promtool_metrics(text).returncode == 0
    check_against_status(home, found)
    assert value(found, "ingestd_replication_queue_items", target="nas") == len(
        first["items"]) - 2
    evicted = cli_json(home, "retention")["evicted"]
    assert len(evicted) == 2
    _, swept = scrape(home)
    check_against_status(home, swept)
    assert value(swept, "ingestd_items", state="evicted") == 2
    for key, before in counters(found).items():
        assert swept[key] >= before, key
    engine = sa.create_engine(postgres_url)
    try:
        with engine.connect() as conn:
            triggers = set(conn.execute(sa.text(
                "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal")).scalars())
    finally:
        engine.dispose()
    assert triggers >= {name for name, *_ in _migration().TRIGGERS}
