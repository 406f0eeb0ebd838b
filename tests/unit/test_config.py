"""Configuration: strict TOML validation that names the key and the reason; durations; sizes."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from ingestd import config
from ingestd.config import parse_duration, parse_size
from ingestd.errors import ConfigError


def load(tmp_path: Path, body: str) -> config.Settings:
    path = tmp_path / "ingestd.toml"
    path.write_text(body, encoding="utf-8")
    return config.load(path)


def config_error(tmp_path: Path, body: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, body)
    assert caught.value.exit_code == 3
    return caught.value.message


def test_empty_file_gives_the_documented_defaults(tmp_path: Path) -> None:
    settings = load(tmp_path, "")
    assert settings.home == tmp_path.resolve()
    assert settings.windows.ingest == timedelta(hours=24)
    assert settings.windows.label == timedelta(hours=48)
    assert settings.windows.replication == timedelta(hours=24)
    assert settings.retention.routine == timedelta(days=365)
    assert settings.ingest.unregistered == "refuse"
    assert settings.docks.wipe == "never"
    assert "*.mp4" in settings.ingest.patterns
    # Relative paths are taken from the folder holding the configuration.
    assert settings.store_path == tmp_path.resolve() / "store"
    assert settings.catalog_url == f"sqlite:///{tmp_path.resolve() / 'catalog.sqlite'}"


def test_values_are_read(tmp_path: Path) -> None:
    settings = load(tmp_path, """
station = "dock-7"
store = "/srv/evidence"
[windows]
ingest = "48h"
label = "2d"
[ingest]
buffer_size = "8MiB"
recorder_timezone = "-05:30"
clock_tolerance = "90s"
""")
    assert settings.station == "dock-7"
    assert settings.store_path == Path("/srv/evidence")
    assert settings.windows.ingest == timedelta(hours=48)
    assert settings.windows.label == timedelta(days=2)
    assert settings.ingest.buffer_size == 8 * 2**20
    assert settings.ingest.clock_tolerance == timedelta(seconds=90)


@pytest.mark.parametrize(("body", "path"), [
    ("colour = 1\n", "colour"),
    ("[ingest]\npaterns = ['*.mp4']\n", "ingest.paterns"),
    ("[windows]\ningest = '24h'\nlabels = '48h'\n", "windows.labels"),
    ("[[targets]]\nname = 'nas'\ntype = 'directory'\npath = '/nas'\nbuket = 'x'\n",
     "targets.0.buket"),
    ("[nonsense]\nx = 1\n", "nonsense"),
])
def test_unknown_key_is_an_error_naming_its_path(tmp_path: Path, body: str, path: str) -> None:
    message = config_error(tmp_path, body)
    assert f"{path}: unknown key" in message
    assert str(tmp_path / "ingestd.toml") in message


@pytest.mark.parametrize(("body", "path", "reason"), [
    ("[windows]\ningest = '24x'\n", "windows.ingest", "not a duration"),
    ("[windows]\ningest = 24\n", "windows.ingest", "not a duration"),
    ("[windows]\nlabel = '-5m'\n", "windows.label", "not a duration"),
    ("[ingest]\nbuffer_size = '4 potatoes'\n", "ingest.buffer_size", "not a size"),
    ("[ingest]\nbuffer_size = '1KiB'\n", "ingest.buffer_size", "between 64KiB and 256MiB"),
    ("[ingest]\nrecorder_timezone = 'CET'\n", "ingest.recorder_timezone", "not a UTC offset"),
    ("[ingest]\nunregistered = 'maybe'\n", "ingest.unregistered", "'refuse' or 'unassigned'"),
    ("[ingest]\nchanged_retries = -1\n", "ingest.changed_retries", "greater than or equal"),
    ("[ingest]\nfilename_time = [{pattern = '(', format = '%Y'}]\n",
     "ingest.filename_time.0.pattern", "not a regular expression"),
    ("[docks]\nwipe = 'always'\n", "docks.wipe", "'never'"),
    ("station = 'has space'\n", "station", "pattern"),
    ("[[targets]]\nname = 'offsite'\ntype = 's3'\n", "targets.0", "needs bucket"),
    ("[retention]\nroutine = '30d'\n", "retention.routine", "at least 365d"),
])
def test_bad_value_is_an_error_naming_key_and_reason(tmp_path: Path, body: str, path: str,
                                                     reason: str) -> None:
    message = config_error(tmp_path, body)
    line = next((ln for ln in message.splitlines() if ln.strip().startswith(f"{path}:")), None)
    assert line is not None, message
    assert reason in line


def test_every_bad_key_is_reported_at_once(tmp_path: Path) -> None:
    message = config_error(tmp_path, "[windows]\ningest = 'soon'\n[ingest]\nfoo = 1\n")
    assert "windows.ingest: not a duration" in message
    assert "ingest.foo: unknown key" in message


def test_duplicate_target_names_are_refused(tmp_path: Path) -> None:
    message = config_error(tmp_path, """
[[targets]]
name = "nas"
type = "directory"
path = "/a"
[[targets]]
name = "nas"
type = "directory"
path = "/b"
""")
    assert "targets: names must be unique (nas more than once)" in message


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    message = config_error(tmp_path, "station = [\n")
    assert str(tmp_path / "ingestd.toml") in message
    assert "not valid TOML" in message


def test_missing_file_says_how_to_create_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        config.load(tmp_path / "nowhere.toml")
    assert "ingestd --home DIR init" in caught.value.message


@pytest.mark.parametrize(("text", "expected"), [
    ("30s", timedelta(seconds=30)),
    ("15m", timedelta(minutes=15)),
    ("24h", timedelta(hours=24)),
    ("1.5h", timedelta(minutes=90)),
    (" 2d ", timedelta(days=2)),
    ("1w", timedelta(days=7)),
    ("1y", timedelta(days=365)),
])
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "24", "h", "24 hours", "-1h", "1e3s", True, 24])
def test_bad_durations(text: object) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


@pytest.mark.parametrize(("text", "expected"), [
    ("4MiB", 4 * 2**20),
    ("10GB", 10 * 10**9),
    ("1KiB", 1024),
    ("1.5GiB", 3 * 2**29),
    ("512", 512),
    ("512B", 512),
    (65536, 65536),
])
def test_sizes(text: object, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["4 MiBs", "-1", "MiB", -5, True, 1.5])
def test_bad_sizes(text: object) -> None:
    with pytest.raises(ValueError, match="not a size"):
        parse_size(text)


def test_filename_conventions_and_timezone_reach_the_policy(tmp_path: Path) -> None:
    settings = load(tmp_path, """
[ingest]
recorder_timezone = "+08:00"
filename_time = [{pattern = 'VID_(\\d{8}-\\d{6})', format = "%Y%m%d-%H%M%S"}]
""")
    (convention,) = settings.ingest.conventions()
    assert convention.pattern.search("VID_20260102-030405.MP4")


def test_locate_prefers_explicit_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INGESTD_HOME", str(tmp_path / "env-home"))
    assert config.locate(tmp_path / "x.toml", tmp_path / "home") == tmp_path / "x.toml"
    assert config.locate(None, tmp_path / "home") == tmp_path / "home" / "ingestd.toml"
    assert config.locate(None, None) == tmp_path / "env-home" / "ingestd.toml"
