"""The systemd unit and its drop-in pass systemd's own checkers, say what the docs say, and
what they promise holds: the daemon works as its own user under their restrictions."""

from __future__ import annotations

import configparser
import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import OFFICER, OFFICER_ID, SERIAL, Clips, subprocess_env

from tests.support.confine import PRELUDE, RELEASE_COPIED_MOUNTS, umask, write_syscalls

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "ingestd.service"
DROPIN = ROOT / "systemd" / "ingestd.service.d" / "watch-only.conf"
RULES = ROOT / "systemd" / "99-ingestd.rules"

pytestmark = pytest.mark.integration


def _unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(path)
    return parser


_needs_analyze = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                    reason="systemd-analyze missing (Debian package systemd)")


def _installed(folder: Path, *, watch_only: bool) -> Path:
    """The unit (and, for watch-only, its drop-in beside it, where systemd-analyze applies it)
    in ``folder``, naming this checkout's venv instead of the installed path."""
    ingestd = Path(sys.executable).with_name("ingestd")
    assert ingestd.exists()
    folder.mkdir()
    unit = folder / "ingestd.service"
    unit.write_text(UNIT.read_text().replace("/opt/ingestd/.venv/bin/ingestd", str(ingestd)))
    if watch_only:
        (folder / "ingestd.service.d").mkdir()
        shutil.copy(DROPIN, folder / "ingestd.service.d" / "watch-only.conf")
    return unit


def _exposure(unit: Path) -> tuple[float, str]:
    proc = subprocess.run(["systemd-analyze", "security", "--offline=true", str(unit)],
                          capture_output=True, text=True, timeout=60, check=False)
    found = re.search(r"Overall exposure level for ingestd\.service: (\d+\.\d)", proc.stdout)
    assert found, proc.stdout + proc.stderr
    return float(found.group(1)), proc.stdout


@_needs_analyze
@pytest.mark.parametrize("watch_only", [False, True], ids=["udev", "watch-only"])
def test_unit_and_dropin_pass_systemd_analyze_verify(tmp_path: Path, watch_only: bool) -> None:
    unit = _installed(tmp_path / "units", watch_only=watch_only)
    proc = subprocess.run(["systemd-analyze", "verify", str(unit)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "ingestd.service" not in proc.stderr, proc.stderr


@_needs_analyze
def test_systemd_analyze_security_exposure_is_low_in_both_configurations(tmp_path: Path) -> None:
    # Measured with systemd 252: 2.0 for udev (it must mount: CAP_SYS_ADMIN, devices, @mount)
    # and 1.0 watch-only (no capability, no device, no other user). Before hardening: 4.6, 3.6.
    udev, udev_report = _exposure(_installed(tmp_path / "udev", watch_only=False))
    watch, watch_report = _exposure(_installed(tmp_path / "watch", watch_only=True))
    assert udev <= 2.2, udev_report
    assert watch <= 1.5, watch_report
    assert watch < udev
    # What the watch-only drop-in promises, as systemd itself reads it.
    for promise in ("Service runs under a static non-root user identity",
                    "Service has no access to hardware devices",
                    "Service has no administrator privileges",
                    "Service process does not receive ambient capabilities",
                    "Service does not have access to other users"):
        assert promise in watch_report, watch_report
    assert "Service runs under a static non-root user identity" in udev_report


def test_unit_is_notify_with_watchdog_restart_and_hardening() -> None:
    service = _unit(UNIT)["Service"]
    assert service["Type"] == "notify"
    assert service["WatchdogSec"]
    assert service["Restart"] == "on-failure"
    assert service["ExecStart"].endswith(" run")
    for key, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict",
                       "PrivateTmp": "yes"}.items():
        assert service[key] == value
    # Its own user, with only what mounting needs, granted as ambient capabilities.
    assert service["User"] == "ingestd" and service["Group"] == "ingestd"
    caps = set(service["CapabilityBoundingSet"].split())
    assert caps == {"CAP_SYS_ADMIN", "CAP_DAC_READ_SEARCH"}
    assert set(service["AmbientCapabilities"].split()) == caps
    for key, value in {"ProtectKernelLogs": "yes", "ProtectProc": "invisible",
                       "MemoryDenyWriteExecute": "yes", "PrivateMounts": "yes",
                       "IPAddressDeny": "any", "IPAddressAllow": "localhost",
                       "UMask": "0027", "SystemCallErrorNumber": "EPERM"}.items():
        assert service[key] == value, key
    assert _unit(UNIT)["Unit"]["RequiresMountsFor"] == "/var/lib/ingestd"
    text = UNIT.read_text()  # repeated keys, which configparser keeps only the last of
    assert "\nSystemCallFilter=@system-service @mount\n" in text
    # The lines an operator uncomments: a NAS target's mount, the S3 endpoints' addresses.
    assert "#RequiresMountsFor=/" in text and "#IPAddressAllow=" in text


def test_watch_only_dropin_runs_as_its_own_user_without_capabilities() -> None:
    merged = configparser.ConfigParser(strict=False, interpolation=None)
    merged.optionxform = str  # type: ignore[assignment,method-assign]
    merged.read([UNIT, DROPIN])  # the drop-in's later lines win, as in systemd
    service = merged["Service"]
    assert service["User"] == "ingestd"
    assert service["CapabilityBoundingSet"] == "" and service["AmbientCapabilities"] == ""
    dropin = _unit(DROPIN)["Service"]
    for key, value in {"PrivateDevices": "yes", "PrivateUsers": "yes", "ProcSubset": "pid",
                       "DeviceAllow": ""}.items():
        assert dropin[key] == value, key


def test_udev_rule_marks_usb_block_devices_and_keeps_automounters_off() -> None:
    lines = [ln for ln in RULES.read_text().splitlines() if ln and not ln.startswith("#")]
    text = "\n".join(lines)
    assert 'SUBSYSTEM!="block", GOTO="ingestd_end"' in text
    assert 'ENV{ID_BUS}!="usb", GOTO="ingestd_end"' in text
    assert 'ENV{UDISKS_IGNORE}="1"' in text
    assert 'ENV{INGESTD_RECORDER}="1"' in text
    assert 'GROUP="ingestd", MODE="0660"' in text  # the daemon's user needs no disk group
    assert lines[-1] == 'LABEL="ingestd_end"'


# -- the watch-only daemon as its own user, confined as the drop-in confines it ---------------

# Exec a command confined as the units confine the daemon (tests/support/confine.py: system call
# filter, no writable+executable memory, umask), after checking that the /proc it sees is
# ProcSubset=pid's (no /proc/filesystems) and that it holds no capability.
_CONFINE = PRELUDE + """
import os, sys
assert not os.path.exists("/proc/filesystems"), "not ProcSubset=pid"
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
assert int(status["CapEff"], 16) == int(status["CapBnd"], 16) == 0, "capabilities left"
confine(int(sys.argv[1], 8))
os.execv(sys.argv[2], sys.argv[2:])
"""


@pytest.fixture
def user_home() -> Iterator[Path]:
    """A station home owned by ``nobody`` (standing in for ingestd) outside pytest's root-only
    tmp, with a watched mount root."""
    folder = Path(tempfile.mkdtemp(prefix="ingestd-home-"))
    os.chmod(folder, 0o755)
    home = folder / "home"
    home.mkdir()
    (home / "ingestd.toml").write_text(
        'station = "station-01"\n[docks]\nwatch_root = "docks"\nsettle = "0.5s"\n',
        encoding="utf-8")
    nobody = pwd.getpwnam("nobody")
    for path in (home, home / "ingestd.toml"):
        os.chown(path, nobody.pw_uid, nobody.pw_gid)
    try:
        yield home
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _confined(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``ingestd --home HOME ARGS`` as nobody, without capabilities or new privileges, under
    the watch-only units' system call filter, MemoryDenyWriteExecute and umask, in its own PID
    namespace whose /proc is mounted as ProtectProc=invisible and ProcSubset=pid."""
    ingestd = Path(sys.executable).with_name("ingestd")
    units = (UNIT, DROPIN)
    syscalls = write_syscalls(home.parent / "syscalls", *units)
    command = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
               "--no-new-privs", "--inh-caps=-all", "--bounding-set=-all",
               sys.executable, "-c", _CONFINE, f"{umask(*units):o}", str(ingestd),
               "--home", str(home), *args]
    proc_mount = (RELEASE_COPIED_MOUNTS
                  + 'mount -t proc -o hidepid=invisible,subset=pid proc /proc && exec "$@"')
    env = subprocess_env(PYTHONPATH=str(ROOT), HOME=str(home), PYTHONDONTWRITEBYTECODE="1",
                         CONFINE_SYSCALLS=str(syscalls))
    return subprocess.run(["unshare", "--mount", "--pid", "--fork", "sh", "-c", proc_mount,
                           "sh", *command], capture_output=True, text=True, timeout=180,
                          env=env, check=False)


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become another user")
@pytest.mark.skipif(shutil.which("setpriv") is None or shutil.which("unshare") is None,
                    reason="setpriv, unshare missing (Debian package util-linux)")
def test_watch_only_daemon_ingests_as_its_own_user_without_privileges(
    user_home: Path, clips: Clips
) -> None:
    home = user_home
    init = _confined(home, "init")
    assert init.returncode == 0, init.stderr
    added = _confined(home, "devices", "add", SERIAL, "--officer", OFFICER,
                      "--officer-id", OFFICER_ID)
    assert added.returncode == 0, added.stderr

    # The operating system mounted a recorder under the watched root (its files readable).
    recorder = home / "docks" / SERIAL
    (recorder / "DCIM").mkdir(parents=True)
    shutil.copyfile(clips.a.path, recorder / "DCIM" / "CLIP0001.MP4")
    (recorder / "SYSTEM").mkdir()
    (recorder / "SYSTEM" / "DEVICE.TXT").write_text(f"serial={SERIAL}\n", encoding="ascii")
    for path in [recorder.parent, *recorder.rglob("*"), recorder]:
        os.chmod(path, 0o755 if path.is_dir() else 0o644)

    served = _confined(home, "run", "--once")
    assert served.returncode == 0, served.stderr
    status = _confined(home, "status", "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["acquisitions"] == {"stored": 1}
    shown = _confined(home, "show", clips.a.sha256, "--json")
    assert shown.returncode == 0, shown.stderr
    assert clips.a.sha256 in shown.stdout
    verified = _confined(home, "ledger", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr

    # Everything the daemon made is its user's and, under UMask=0027, nothing is world-writable.
    nobody = pwd.getpwnam("nobody").pw_uid
    made = [p for p in home.rglob("*") if not p.is_relative_to(home / "docks")]
    assert made and all(p.lstat().st_uid == nobody for p in made)
    assert not [p for p in made if p.lstat().st_mode & 0o002]
    # The recorder was only read.
    assert (recorder / "DCIM" / "CLIP0001.MP4").read_bytes() == clips.a.path.read_bytes()


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
@pytest.mark.skipif(shutil.which("setpriv") is None or shutil.which("unshare") is None,
                    reason="setpriv, unshare missing (Debian package util-linux)")
def test_root_is_refused_in_a_home_the_daemon_user_owns_and_changes_nothing(
    user_home: Path,
) -> None:
    home = user_home
    init = _confined(home, "init")
    assert init.returncode == 0, init.stderr

    def snapshot() -> dict[Path, tuple[int, int, int]]:
        return {p: (p.lstat().st_uid, p.lstat().st_size, p.lstat().st_mtime_ns)
                for p in [home, *home.rglob("*")]}

    before = snapshot()
    for args in (["status", "--json"], ["init"],
                 ["devices", "add", SERIAL, "--officer", OFFICER, "--officer-id", OFFICER_ID]):
        done = subprocess.run([str(Path(sys.executable).with_name("ingestd")), "--home",
                               str(home), *args], capture_output=True, text=True, timeout=120,
                              env=subprocess_env(PYTHONPATH=str(ROOT)), check=False)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert f"{home} belongs to user nobody" in done.stderr, done.stderr
        assert "sudo -u nobody ingestd" in done.stderr
    assert snapshot() == before


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
@pytest.mark.skipif(shutil.which("setpriv") is None or shutil.which("unshare") is None,
                    reason="setpriv, unshare missing (Debian package util-linux)")
def test_a_session_of_a_process_hidden_by_protect_proc_is_not_taken_for_dead() -> None:
    # In a PID namespace whose /proc is ProtectProc=invisible's: a live process of root, which
    # nobody cannot see there, and a number that no process has.
    check = ("from ingestd.usecases.ingest import process_alive; import sys; "
             "print(process_alive(int(sys.argv[1])), process_alive(int(sys.argv[2])))")
    script = (RELEASE_COPIED_MOUNTS + "mount -t proc -o hidepid=invisible proc /proc && "
              "sleep 60 & hidden=$!; "
              f"setpriv --reuid=nobody --regid=nogroup --clear-groups {sys.executable} "
              f"-c '{check}' $hidden 4000000; status=$?; kill $hidden; exit $status")
    done = subprocess.run(["unshare", "--mount", "--pid", "--fork", "sh", "-c", script],
                          capture_output=True, text=True, timeout=60, check=False,
                          env=subprocess_env(PYTHONPATH=str(ROOT)))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "False"]
