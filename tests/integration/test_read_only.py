"""Reporting on a home that cannot be written: a read-only mount (an examiner's copy, a station
whose disk the kernel remounted read-only) and a full disk. status, items, show, verify and
ledger verify work and write nothing; a command that would change anything says why it cannot,
and changes nothing."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
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

pytestmark = [pytest.mark.integration, pytest.mark.root]


def mount_tmpfs(where: Path, size: str) -> None:
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs",
                    str(where)], check=True)


@pytest.fixture
def fs(tmp_path: Path) -> Iterator[Path]:
    """A small file system of its own, holding one station with two items, one labelled."""
    mnt = tmp_path / "fs"
    mount_tmpfs(mnt, "24m")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def make_station(fs: Path, tmp_path: Path, clips: Clips) -> Path:
    home = init_station(fs / "home", register={SERIAL: (OFFICER, OFFICER_ID)})
    rec = build_recorder(tmp_path / "rec", {"DCIM/a.mp4": clips.a, "DCIM/b.mp4": clips.b})
    assert run_cli(home, "ingest", rec, "--serial", SERIAL).exit_code == 0
    assert run_cli(home, "label", clips.a.sha256[:12], "--case", "C-9",
                   "--party", "Li Si").exit_code == 0
    return home


def snapshot(root: Path) -> dict[str, str]:
    """Every file's hash; SQLite's shared-memory index (any reader of a WAL catalog may make
    one) and an empty WAL hold nothing."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != "filler"
            and not p.name.endswith("-shm") and not (p.name.endswith("-wal")
                                                     and not p.stat().st_size)}


def reports_work(home: Path, clips: Clips) -> None:
    status = run_cli(home, "status", "--json")
    assert status.exit_code == 0, status.stderr
    assert status.json()["items"]["total"] == 2
    listed = run_cli(home, "items", "--json")
    assert listed.exit_code == 0, listed.stderr
    assert {i["sha256"]: i["case"] for i in listed.json()["items"]} == {
        clips.a.sha256: "C-9", clips.b.sha256: None}
    shown = run_cli(home, "show", clips.a.sha256[:12], "--json")
    assert shown.exit_code == 0, shown.stderr
    assert shown.json()["item"]["case"] == "C-9"
    verified = run_cli(home, "verify", clips.a.path, clips.b.path, "--json")
    assert verified.exit_code == 0, verified.stdout + verified.stderr
    assert all(r["match"] for r in verified.json()["results"])
    ledger = run_cli(home, "ledger", "verify", "--json")
    assert ledger.exit_code == 0, ledger.stdout + ledger.stderr
    assert ledger.json()["ok"] is True
    assert run_cli(home, "overdue", "--json").exit_code == 0


def test_reports_work_on_a_read_only_mount(fs: Path, tmp_path: Path, clips: Clips) -> None:
    home = make_station(fs, tmp_path, clips)
    before = snapshot(fs)
    subprocess.run(["mount", "-o", "remount,ro", str(fs)], check=True)
    reports_work(home, clips)
    # A command that changes something is refused, saying why, and nothing is changed.
    label = run_cli(home, "label", clips.b.sha256[:12], "--case", "C-10", "--party", "Zhao")
    assert label.exit_code in (4, 5), label.stdout + label.stderr
    assert "not writable" in label.stderr or "read-only" in label.stderr, label.stderr
    assert "Traceback" not in label.stderr
    subprocess.run(["mount", "-o", "remount,rw", str(fs)], check=True)
    assert snapshot(fs) == before


def test_reports_work_on_a_full_disk(fs: Path, tmp_path: Path, clips: Clips) -> None:
    home = make_station(fs, tmp_path, clips)
    before = snapshot(fs)
    # Fill the file system to the last block.
    fd = os.open(fs / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for chunk in (b"\0" * 65536, b"\0"):
            try:
                while True:
                    os.write(fd, chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    reports_work(home, clips)
    assert snapshot(fs) == before
    (fs / "filler").unlink()
    assert run_cli(home, "ledger", "verify").exit_code == 0


@pytest.fixture
def open_folder() -> Iterator[Path]:
    """A folder another user can reach (pytest's own temp folders are root's alone)."""
    folder = Path(tempfile.mkdtemp(prefix="ingestd-ro-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(folder)], check=False)
        shutil.rmtree(folder, ignore_errors=True)


def as_nobody(home: Path, *args: object) -> subprocess.CompletedProcess[str]:
    """``ingestd --home HOME ARGS`` as the unprivileged user ``nobody``."""
    return subprocess.run(
        ["setpriv", "--reuid", "nobody", "--regid", "nogroup", "--clear-groups", str(INGESTD),
         "--home", str(home), *map(str, args)],
        capture_output=True, text=True, timeout=120, cwd="/", check=False,
        env=subprocess_env(HOME="/nonexistent"))


def test_reports_work_for_a_user_who_may_not_write(open_folder: Path, tmp_path: Path,
                                                   clips: Clips) -> None:
    home = make_station(open_folder, tmp_path, clips)
    copy = open_folder / "copy.mp4"
    shutil.copy2(clips.a.path, copy)
    subprocess.run(["chown", "-R", "nobody:nogroup", str(home)], check=True)
    subprocess.run(["chmod", "-R", "a-w", str(home)], check=True)
    before = snapshot(home)
    status = as_nobody(home, "status", "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["items"]["total"] == 2
    listed = as_nobody(home, "items", "--json")
    assert listed.returncode == 0, listed.stderr
    assert len(json.loads(listed.stdout)["items"]) == 2
    shown = as_nobody(home, "show", clips.a.sha256[:12], "--json")
    assert shown.returncode == 0, shown.stderr
    verified = as_nobody(home, "verify", copy)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    ledger = as_nobody(home, "ledger", "verify", "--json")
    assert ledger.returncode == 0, ledger.stdout + ledger.stderr
    label = as_nobody(home, "label", clips.b.sha256[:12], "--case", "C-10", "--party", "Zhao")
    assert label.returncode in (4, 5), label.stdout + label.stderr
    assert "not writable" in label.stderr and "Traceback" not in label.stderr
    assert snapshot(home) == before
