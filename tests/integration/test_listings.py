"""Listings at a bureau's scale: `items` streams in constant memory, `overdue` asks the catalog
the same few questions however many items are late."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import (
    INGESTD,
    OFFICER,
    OFFICER_ID,
    SERIAL,
    Clips,
    build_recorder,
    init_station,
    run_cli,
    subprocess_env,
)
from sqlalchemy import event

from ingestd.catalog.db import Catalog
from tests.support.catalog import add_items

pytestmark = pytest.mark.integration

#: Runs a command and prints its peak resident memory in KiB (of that command alone).
PEAK = """
import resource, subprocess, sys
with open(sys.argv[1], "wb") as out:
    code = subprocess.run(sys.argv[2:], stdout=out).returncode
print(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def peak_of(home: Path, out: Path, *args: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", PEAK, str(out), str(INGESTD), "--home", str(home), *args],
        capture_output=True, text=True, env=subprocess_env(), timeout=600, check=True)
    code, kib = map(int, done.stdout.split())
    assert code == 0, done.stderr
    return kib


def count_items(listing: Path) -> int:
    with listing.open(encoding="utf-8") as fh:
        return sum(1 for line in fh if line.startswith('      "sha256": '))


@pytest.mark.slow
def test_items_lists_any_number_of_items_in_constant_memory(tmp_path: Path) -> None:
    small = init_station(tmp_path / "small")
    large = init_station(tmp_path / "large")
    first = add_items(small, 20_000)
    add_items(large, 100_000)
    small_peak = peak_of(small, tmp_path / "small.json", "items", "--json")
    large_peak = peak_of(large, tmp_path / "large.json", "items", "--json")
    # Every item is written, in order, in the usual shape.
    assert count_items(tmp_path / "small.json") == 20_000
    assert count_items(tmp_path / "large.json") == 100_000
    listing = json.loads((tmp_path / "small.json").read_text(encoding="utf-8"))
    assert [i["sha256"] for i in listing["items"]] == first
    assert listing["items"][0]["flags"] == ["late_ingest"]
    assert listing["items"][0]["case"] == "C-0"
    # Five times the items, not five times the memory (all in memory: 950 MB for 100,000).
    assert large_peak < small_peak + 20 * 1024, (small_peak, large_peak)


def test_items_pages_keep_order_filters_and_limit(tmp_path: Path) -> None:
    home = init_station(tmp_path / "home")
    shas = add_items(home, 2_500)
    flagged = [s for i, s in enumerate(shas) if i % 10 == 0]
    listed = run_cli(home, "items", "--json").json()["items"]
    assert [i["sha256"] for i in listed] == shas
    assert [i["sha256"] for i in run_cli(home, "items", "--limit", "1001", "--json").json()[
        "items"]] == shas[:1001]
    assert [i["sha256"] for i in run_cli(home, "items", "--flag", "late_ingest", "--json")
            .json()["items"]] == flagged
    assert run_cli(home, "items", "--case", "no such case", "--json").json() == {"items": []}
    table = run_cli(home, "items", "--limit", "1500")
    assert table.exit_code == 0, table.stderr
    assert table.stdout.rstrip().endswith("1500 items")
    assert shas[0][:16] in table.stdout and shas[1499][:16] in table.stdout
    assert shas[1500][:16] not in table.stdout


def statements_of(home: Path, *args: str) -> list[str]:
    """The SQL statements a command sends to the catalog."""
    seen: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_rest: object) -> None:
        seen.append(statement)

    original = Catalog.__init__

    def init(self: Catalog, url: str, **kw: bool) -> None:
        original(self, url, **kw)
        event.listen(self.engine, "before_cursor_execute", count)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Catalog, "__init__", init)
        result = run_cli(home, *args)
    assert result.exit_code == 0, result.stderr
    return seen


def test_overdue_asks_the_same_questions_for_10_or_300_late_items(tmp_path: Path) -> None:
    few = init_station(tmp_path / "few")
    many = init_station(tmp_path / "many")
    add_items(few, 100)
    add_items(many, 3_000)
    few_sql = statements_of(few, "overdue", "--json")
    many_sql = statements_of(many, "overdue", "--json")
    assert len(many_sql) == len(few_sql)
    report = run_cli(many, "overdue", "--json").json()
    assert len(report) == 300
    justified = [e for e in report if e["justifications"]]
    assert len(justified) == 100
    assert justified[0]["justifications"][0]["reason"] == "remote duty"


def test_a_home_at_the_previous_schema_gains_the_indexes_and_keeps_everything(
        tmp_path: Path, clips: Clips) -> None:
    from alembic import command

    from ingestd.catalog.db import _alembic_config

    home = init_station(tmp_path / "home", register={SERIAL: (OFFICER, OFFICER_ID)})
    rec = build_recorder(tmp_path / "rec", {"DCIM/a.mp4": clips.a, "DCIM/b.mp4": clips.b})
    assert run_cli(home, "ingest", rec, "--serial", SERIAL).exit_code == 0
    url = f"sqlite:///{home / 'catalog.sqlite'}"
    command.downgrade(_alembic_config(url), "0002")
    assert run_cli(home, "items").exit_code == 4  # too old: `init` migrates it
    result = run_cli(home, "init")
    assert result.exit_code == 0, result.stderr
    catalog = Catalog(url)
    try:
        with catalog.read() as conn:
            names = {r[0] for r in conn.conn.exec_driver_sql(
                "SELECT name FROM sqlite_master WHERE type = 'index'")}
    finally:
        catalog.dispose()
    assert {"ix_items_recorded", "ix_flags_flag_set_at", "ix_justifications_item_flag"} <= names
    assert {i["sha256"] for i in run_cli(home, "items", "--json").json()["items"]} == {
        clips.a.sha256, clips.b.sha256}
    verify = run_cli(home, "ledger", "verify", "--json")
    assert verify.exit_code == 0 and verify.json()["ok"] is True, verify.stdout


def test_overdue_table_lists_every_late_item_with_its_reasons(tmp_path: Path) -> None:
    home = init_station(tmp_path / "home")
    shas = add_items(home, 1_500)
    table = run_cli(home, "overdue")
    assert table.exit_code == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[-1] == "150 items"
    rows = [line for line in lines if line[:16] in {s[:16] for s in shas}]
    assert len(rows) == 150
    assert rows[0].startswith(shas[0][:16]) and "justified: remote duty" in rows[0]
    assert "stored after the ingest window" in rows[1] and "justified" not in rows[1]
