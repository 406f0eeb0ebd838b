"""A damaged catalog: every command names the file and says what to do, with exit code 4 and no
traceback, and nothing stored is changed. The commands are listed from the click group, so a new
command is covered without touching this file."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from conftest import (
    OFFICER,
    OFFICER_ID,
    SERIAL,
    Clips,
    build_recorder,
    init_station,
    run_cli,
    run_ingestd,
    store_objects,
)

from ingestd.cli import cli
from tests.support.catalog import checkpoint_wal, root_page

pytestmark = pytest.mark.integration

PAGE = 4096

#: Commands that stop before the catalog for a reason of their own, with their documented code.
OWN_CODES: dict[str, set[int]] = {
    "keys init": {7},  # a station key exists already: refused before anything is opened
    "ledger verify": {1, 4},  # damage found by quick_check is a reported discrepancy
}

#: Commands that open no catalog at all: they must still answer without a traceback.
NO_CATALOG = frozenset({"verify-export"})  # checks a package alone (here none: reported)

#: Commands whose arguments are "one of these": what to give them.
ARGS: dict[str, list[str]] = {
    "audit": ["--sample", "1"],
    "export": ["--case", "C-1"],
}


def leaf_commands(group: click.Group, prefix: tuple[str, ...] = ()) -> Iterator[
        tuple[tuple[str, ...], click.Command]]:
    # Through click's own lookup: the root group imports a command's module when asked.
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None, f"{' '.join((*prefix, name))} is listed but not found"
        if isinstance(command, click.Group):
            yield from leaf_commands(command, (*prefix, name))
        else:
            yield (*prefix, name), command


def arguments_for(name: str, command: click.Command, *, item: str, recorder: Path,
                  clip: Path, out: Path) -> list[str]:
    """Plausible values for every argument and required option, by parameter name and type."""
    by_name = {"serial": SERIAL, "mountpoint": str(recorder), "files": str(clip), "refs": item,
               "item": item, "officer": OFFICER, "officer_id": OFFICER_ID}
    args: list[str] = list(ARGS.get(name, []))
    for param in command.params:
        if isinstance(param, click.Argument):
            if param.required or param.name in by_name:
                args.append(by_name.get(param.name or "", "x"))
        elif isinstance(param, click.Option) and param.required:
            if isinstance(param.type, click.Choice):
                value = str(param.type.choices[0])
            elif isinstance(param.type, click.Path):
                value = str(out)
            else:
                value = by_name.get(param.name or "", "x")
            args += [param.opts[0], value]
        elif isinstance(param, click.Option) and param.name == "as_json":
            args.append("--json")
    return args


@pytest.fixture
def damaged_home(tmp_path: Path, clips: Clips) -> Path:
    home = init_station(tmp_path / "home", register={SERIAL: (OFFICER, OFFICER_ID)})
    rec = build_recorder(tmp_path / "rec", {"DCIM/a.mp4": clips.a, "DCIM/b.mp4": clips.b})
    assert run_cli(home, "ingest", rec, "--serial", SERIAL).exit_code == 0
    # Everything in the main file, nothing left in a WAL, before the disk damages it.
    checkpoint_wal(home)
    return home


def keep_pages(catalog_file: Path) -> set[int]:
    """Page 1 (header and schema) and the schema version's page: the damage then shows only
    once a command reads a real table, mid-query, past the schema check at open."""
    return {1, root_page(catalog_file, "alembic_version")}


def damage_pages(catalog: Path) -> None:
    pages = catalog.stat().st_size // PAGE
    keep = keep_pages(catalog)
    noise = random.Random(7)
    with catalog.open("r+b") as fh:
        for page in range(2, pages + 1):
            if page not in keep:
                fh.seek((page - 1) * PAGE)
                fh.write(noise.randbytes(PAGE))


def damage_header(catalog: Path) -> None:
    with catalog.open("r+b") as fh:
        fh.write(random.Random(8).randbytes(100))


def tree_digest(home: Path) -> dict[str, str]:
    """Every file's hash; SQLite's shared-memory index and an empty WAL hold nothing."""
    return {str(p.relative_to(home)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(home.rglob("*")) if p.is_file() and not p.name.endswith(
                (".lock", "-shm")) and not (p.name.endswith("-wal") and not p.stat().st_size)}


@pytest.mark.slow
@pytest.mark.parametrize("damage", [damage_pages, damage_header], ids=["pages", "header"])
def test_every_command_names_a_damaged_catalog(damaged_home: Path, tmp_path: Path,
                                                clips: Clips, damage: object) -> None:
    home = damaged_home
    catalog = home / "catalog.sqlite"
    assert callable(damage)
    damage(catalog)
    before = tree_digest(home)
    objects = store_objects(home)
    item = clips.a.sha256[:12]
    recorder = build_recorder(tmp_path / "rec2", {"DCIM/c.mp4": clips.c})
    commands = list(leaf_commands(cli))
    assert len(commands) >= 20  # the group is really walked
    seen: list[str] = []
    for path, command in commands:
        name = " ".join(path)
        args = arguments_for(name, command, item=item, recorder=recorder, clip=clips.a.path,
                             out=tmp_path / f"out-{len(seen)}")
        result = run_ingestd(home, *path, *args, timeout=120)
        output = result.stdout + result.stderr
        assert "Traceback" not in output, f"{name}: {output}"
        assert name in NO_CATALOG or result.returncode in OWN_CODES.get(name, {4}), (
            f"{name} {args}: exit {result.returncode}\n{output}")
        if name in NO_CATALOG:
            assert result.returncode == 1 and str(catalog) not in output, output
            seen.append(name)
            continue
        if result.returncode in (1, 4):
            assert str(catalog) in output, f"{name}: the catalog is not named\n{output}"
            assert "backup" in output, f"{name}: no word of what to do\n{output}"
        seen.append(name)
    assert {"init", "status", "items", "ledger verify", "ingest", "run"} <= set(seen)
    # Nothing was lost or changed: not the catalog (kept for examination), not the store,
    # not the ledger mirror, and no new object came in from the second recorder.
    assert tree_digest(home) == before
    assert store_objects(home) == objects
