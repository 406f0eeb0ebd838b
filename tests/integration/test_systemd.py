"""The systemd unit and its drop-in pass systemd's own checker, and say what the docs say."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

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


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze missing")
def test_unit_and_dropin_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    # The unit names the installed path; point it at this checkout's venv for the check.
    ingestd = Path(sys.executable).with_name("ingestd")
    assert ingestd.exists()
    text = UNIT.read_text().replace("/opt/ingestd/.venv/bin/ingestd", str(ingestd))
    (tmp_path / "ingestd.service").write_text(text)
    (tmp_path / "ingestd.service.d").mkdir()
    shutil.copy(DROPIN, tmp_path / "ingestd.service.d" / "watch-only.conf")
    proc = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "ingestd.service")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "ingestd.service" not in proc.stderr, proc.stderr


def test_unit_is_notify_with_watchdog_restart_and_hardening() -> None:
    service = _unit(UNIT)["Service"]
    assert service["Type"] == "notify"
    assert service["WatchdogSec"]
    assert service["Restart"] == "on-failure"
    assert service["ExecStart"].endswith(" run")
    for key, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict",
                       "PrivateTmp": "yes"}.items():
        assert service[key] == value
    caps = set(service["CapabilityBoundingSet"].split())
    assert caps <= {"CAP_SYS_ADMIN", "CAP_DAC_READ_SEARCH", "CAP_DAC_OVERRIDE", "CAP_FOWNER",
                    "CAP_CHOWN"}


def test_watch_only_dropin_runs_as_its_own_user_without_capabilities() -> None:
    service = _unit(DROPIN)["Service"]
    assert service["User"] == "ingestd"
    assert service["CapabilityBoundingSet"] == ""


def test_udev_rule_marks_usb_block_devices_and_keeps_automounters_off() -> None:
    lines = [ln for ln in RULES.read_text().splitlines() if ln and not ln.startswith("#")]
    text = "\n".join(lines)
    assert 'SUBSYSTEM!="block", GOTO="ingestd_end"' in text
    assert 'ENV{ID_BUS}!="usb", GOTO="ingestd_end"' in text
    assert 'ENV{UDISKS_IGNORE}="1"' in text
    assert 'ENV{INGESTD_RECORDER}="1"' in text
    assert lines[-1] == 'LABEL="ingestd_end"'
