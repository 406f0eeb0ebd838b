"""Configuration: strict TOML validation that names the key and the reason; durations; sizes."""

from __future__ import annotations

import typing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
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
    ("[ingest]\nrecorder_timezone = 'Mars/Olympus'\n", "ingest.recorder_timezone",
     "not a UTC offset or time zone"),
    ("[ingest]\nunregistered = 'maybe'\n", "ingest.unregistered", "'refuse' or 'unassigned'"),
    ("[ingest]\nchanged_retries = -1\n", "ingest.changed_retries", "greater than or equal"),
    ("[ingest]\nfilename_time = [{pattern = '(', format = '%Y'}]\n",
     "ingest.filename_time.0.pattern", "not a regular expression"),
    ("[docks]\nwipe = 'always'\n", "docks.wipe", "'never'"),
    ("station = 'has space'\n", "station", "pattern"),
    ("[[targets]]\nname = 'offsite'\ntype = 's3'\n", "targets.0", "needs bucket"),
    ("[retention]\nroutine = '30d'\n", "retention.routine", "at least 365d"),
    ("station_timezone = 'Mars/Olympus'\n", "station_timezone", "not a UTC offset or time zone"),
    ("[retention.case_types]\npenalty = '0s'\n", "retention.case_types.penalty",
     "longer than 0s"),
    ("[retention.case_types]\npenalty = 'forever'\n", "retention.case_types.penalty",
     "not a duration"),
    ("[retention.case_types]\n'a b' = '30d'\n", "retention.case_types",
     "not a case type name"),
    # each value of its own type: a quoted "false" is not false (Object Lock would stay on, or
    # a check off, unseen), nor 2.0 a count
    ("[[targets]]\nname = 'o'\ntype = 's3'\nbucket = 'b'\nobject_lock = 'false'\n",
     "targets.0.object_lock", "must be of type bool, not str"),
    ("[docks]\nfs_check = 'no'\n", "docks.fs_check", "must be of type bool, not str"),
    ("[ingest]\nparallel_files = 2.0\n", "ingest.parallel_files", "must be of type int"),
    ("[ingest]\nchanged_retries = '3'\n", "ingest.changed_retries", "must be of type int"),
    ("store = 5\n", "store", "not a path: 5"),
    ('store = "a\\u0000b"\n', "store", "not a path: it holds a NUL character"),
    ('home = "a\\u0000b"\n', "home", "not a path: it holds a NUL character"),
    ('[[targets]]\nname = "n"\ntype = "directory"\npath = "/x\\u0000y"\n', "targets.0.path",
     "not a path: it holds a NUL character"),
    ("targets = [3]\n", "targets.0", "must be of type object, not int"),
    ("windows = 'soon'\n", "windows", "must be of type object, not str"),
    ("[[alerts]]\ntype = 'smtp'\nhost = 'mail'\nfrom = 'a@b.org'\nto = []\n", "alerts.0.to",
     "must not be empty"),
    ("[[alerts]]\ntype = 'smtp'\nhost = 'mail'\nto = ['a@b.org']\n", "alerts.0.from",
     "required"),
    ("[log]\nlevel = 'LOUD'\n", "log.level", "must be 'DEBUG' or 'INFO' or 'WARNING' or 'ERROR'"),
    ("[[targets]]\nname = 'o'\ntype = 's3'\nbucket = 'b'\nsse = 'rot13'\n", "targets.0.sse",
     "must be 'AES256' or 'aws:kms'"),
])
def test_bad_value_is_an_error_naming_key_and_reason(tmp_path: Path, body: str, path: str,
                                                     reason: str) -> None:
    assert_said(config_error(tmp_path, body), path, reason)


def assert_said(message: str, path: str, reason: str) -> None:
    """``message`` has a line for the key at ``path`` that gives ``reason``."""
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


# -- durations and sizes that no clock or disk can hold ----------------------------------------


def _typed_keys(model: type[msgspec.Struct], kinds: tuple[type, ...],
                prefix: str = "") -> list[str]:
    """Every key of ``model`` (and its sections) whose value is one of ``kinds``, or may be."""
    out = []
    for f in msgspec.structs.fields(model):
        options = [f.type, *typing.get_args(f.type)]
        if isinstance(f.type, type) and issubclass(f.type, msgspec.Struct):
            out += _typed_keys(f.type, kinds, f"{prefix}{f.encode_name}.")
        elif any(isinstance(o, type) and issubclass(o, kinds) for o in options):
            out.append(prefix + f.encode_name)
    return out


DURATION_KEYS = _typed_keys(config.Settings, (config.Duration,))
SIZE_KEYS = _typed_keys(config.Settings, (config.Size,))
S3_SIZE_KEYS = _typed_keys(config.S3TargetSettings, (config.Size,))


def _body(key: str, value: str) -> str:
    *section, name = key.split(".")
    return (f"[{section[0]}]\n" if section else "") + f"{name} = {value}\n"


def test_the_typed_keys_are_found() -> None:
    assert {"windows.ingest", "docks.settle", "scheduler.audit", "retention.routine"} <= set(
        DURATION_KEYS)
    assert "ingest.buffer_size" in SIZE_KEYS
    assert {"multipart_threshold", "multipart_chunksize"} <= set(S3_SIZE_KEYS)


@pytest.mark.parametrize("key", DURATION_KEYS)
@pytest.mark.parametrize("value", ["'99999999999d'", "'9999999999999999999999y'",
                                   "'" + "9" * 400 + "s'"])
def test_a_duration_too_long_for_the_clock_names_the_key(tmp_path: Path, key: str,
                                                         value: str) -> None:
    message = config_error(tmp_path, _body(key, value))
    assert f"{key}: too long" in message
    assert "at most 365000d" in message


@pytest.mark.parametrize("key", SIZE_KEYS)
def test_a_size_too_large_names_the_key(tmp_path: Path, key: str) -> None:
    message = config_error(tmp_path, _body(key, "'99999999999999999999TiB'"))
    assert f"{key}: too large" in message


@pytest.mark.parametrize("key", [*S3_SIZE_KEYS, "bandwidth_limit"])
def test_a_target_size_too_large_names_the_key(tmp_path: Path, key: str) -> None:
    message = config_error(tmp_path, S3 + f"{key} = '{'9' * 400}GiB'\n")
    assert f"targets.0.{key}: too large" in message


@pytest.mark.parametrize("key", ["windows.ingest", "windows.label", "windows.replication",
                                 "scheduler.window_check", "scheduler.replication",
                                 "scheduler.checkpoint", "scheduler.audit",
                                 "scheduler.retention", "ingest.probe_timeout",
                                 "docks.ready_timeout"])
def test_a_zero_window_or_interval_is_refused(tmp_path: Path, key: str) -> None:
    message = config_error(tmp_path, _body(key, "'0s'"))
    assert f"{key}: must be longer than 0s" in message


@pytest.mark.parametrize("value", ["[]", "['']", "['*.mp4', ' ']"])
def test_no_patterns_is_refused(tmp_path: Path, value: str) -> None:
    message = config_error(tmp_path, f"[ingest]\npatterns = {value}\n")
    assert "ingest.patterns: needs at least one non-empty pattern" in message


def test_an_empty_ignore_pattern_is_refused(tmp_path: Path) -> None:
    message = config_error(tmp_path, "[ingest]\nignore = ['SYSTEM/*', '']\n")
    assert "ingest.ignore: an empty pattern would ignore nothing; remove it" in message
    loaded = config.from_mapping({"ingest": {"ignore": ["SYSTEM/*"]}}, home=tmp_path)
    assert loaded.ingest.ignore == ("SYSTEM/*",)
    assert config.from_mapping({}, home=tmp_path).ingest.ignore == ()


# -- targets take their own keys -----------------------------------------------------------------


S3 = "[[targets]]\nname = 'offsite'\ntype = 's3'\nbucket = 'evidence'\n"
NAS = "[[targets]]\nname = 'nas'\ntype = 'directory'\npath = '/mnt/nas'\n"


@pytest.mark.parametrize("line", ["bucket = 'x'", "sse = 'AES256'", "object_lock = false",
                                  "readback = true", "bandwidth_limit = '5MB'",
                                  "endpoint_url = 'https://rgw.example.org'",
                                  "max_concurrency = 2", "region = 'eu-west-1'"])
def test_a_directory_target_refuses_s3_keys(tmp_path: Path, line: str) -> None:
    key = line.split(" ")[0]
    message = config_error(tmp_path, NAS + line + "\n")
    assert f"targets.0.{key}: unknown key for a directory target" in message


def test_an_s3_target_refuses_a_path(tmp_path: Path) -> None:
    message = config_error(tmp_path, S3 + "path = '/mnt/nas'\n")
    assert "targets.0.path: unknown key for an s3 target" in message


def test_a_target_needs_a_known_type(tmp_path: Path) -> None:
    assert "targets.0.type: type must be one of 's3', 'directory'" in config_error(
        tmp_path, "[[targets]]\nname = 'x'\ntype = 'ftp'\n")
    assert "targets.0: needs type" in config_error(tmp_path, "[[targets]]\nname = 'x'\n")


def test_each_target_gets_its_own_settings(tmp_path: Path) -> None:
    settings = load(tmp_path, S3 + "readback = true\n" + NAS.replace("'nas'", "'nas'", 1))
    s3, nas = settings.targets
    assert isinstance(s3, config.S3TargetSettings) and s3.readback and s3.bucket == "evidence"
    assert isinstance(nas, config.DirectoryTargetSettings) and nas.path == Path("/mnt/nas")
    assert not hasattr(nas, "bucket")


# -- overlapping targets --------------------------------------------------------------------


def _dir(name: str, path: str, prefix: str = "") -> str:
    return (f"[[targets]]\nname = '{name}'\ntype = 'directory'\npath = '{path}'\n"
            + (f"prefix = '{prefix}'\n" if prefix else ""))


def _s3(name: str, bucket: str, url: str | None = None, prefix: str = "") -> str:
    return (f"[[targets]]\nname = '{name}'\ntype = 's3'\nbucket = '{bucket}'\n"
            + (f"endpoint_url = '{url}'\n" if url else "")
            + (f"prefix = '{prefix}'\n" if prefix else ""))


@pytest.mark.parametrize("body", [
    _dir("a", "/mnt/nas") + _dir("b", "/mnt/nas"),
    _dir("a", "/mnt/nas") + _dir("b", "/mnt/nas/sub"),
    _dir("a", "/mnt/nas/sub") + _dir("b", "/mnt/nas/./sub/"),
    _dir("a", "/mnt/nas", prefix="x") + _dir("b", "/mnt/nas/x/y"),
    _s3("a", "ev") + _s3("b", "ev"),
    _s3("a", "ev", "https://rgw.example.org") + _s3("b", "ev", "https://RGW.example.org/"),
    _s3("a", "ev", "https://rgw.example.org", "st1") + _s3("b", "ev",
                                                         "https://rgw.example.org", "st1/x"),
])
def test_two_targets_at_the_same_place_are_refused(tmp_path: Path, body: str) -> None:
    message = config_error(tmp_path, body)
    assert "targets: 'a' and 'b' are at the same place" in message


@pytest.mark.parametrize("body", [
    _dir("a", "/mnt/nas1") + _dir("b", "/mnt/nas2"),
    _dir("a", "/mnt/nas", prefix="one") + _dir("b", "/mnt/nas", prefix="two"),
    _s3("a", "ev") + _s3("b", "ev2"),
    _s3("a", "ev", "https://rgw1.example.org") + _s3("b", "ev", "https://rgw2.example.org"),
    _s3("a", "ev", prefix="st1") + _s3("b", "ev", prefix="st10"),
])
def test_targets_at_different_places_are_fine(tmp_path: Path, body: str) -> None:
    assert len(load(tmp_path, body).targets) == 2


@pytest.mark.parametrize(("store", "path"), [
    ("store", "store/offsite"), ("store", "store"), ("/srv/ev/store", "/srv/ev"),
    ("/srv/store", "/srv/store/x"),
])
def test_a_directory_target_in_the_store_is_refused(tmp_path: Path, store: str,
                                                    path: str) -> None:
    message = config_error(tmp_path, f"store = '{store}'\n" + _dir("nas", path))
    assert "targets: 'nas'" in message and "overlaps the store" in message


# -- no secrets in endpoint URLs ------------------------------------------------------------


@pytest.mark.parametrize(("url", "reason"), [
    ("http://AKIAKEY:SuperSecret99@rgw.example.org", "must not hold a user name or password"),
    ("https://SuperSecret99@rgw.example.org:7480", "must not hold a user name or password"),
    ("https://rgw.example.org/?X-Amz-Credential=SuperSecret99", "must not hold a query"),
    ("rgw.example.org", "not an http(s) URL"),
    ("http://rgw.example.org:SuperSecret99", "not a URL"),
])
def test_an_endpoint_url_with_a_secret_is_refused_without_echoing_it(
        tmp_path: Path, url: str, reason: str) -> None:
    message = config_error(tmp_path, S3 + f"endpoint_url = '{url}'\n")
    assert f"targets.0.endpoint_url: {reason}" in message
    assert "SuperSecret99" not in message


def test_a_directory_target_linked_into_the_store_is_refused(tmp_path: Path) -> None:
    (tmp_path / "store").mkdir()
    (tmp_path / "nas").symlink_to(tmp_path / "store")
    message = config_error(tmp_path, _dir("nas", str(tmp_path / "nas")))
    assert "targets: 'nas'" in message and "overlaps the store" in message


def test_case_types_are_read_into_the_retention_policy(tmp_path: Path) -> None:
    settings = load(tmp_path, '[retention.case_types]\npenalty = "18250d"\nfine = "1y"\n')
    rule = settings.retention.policy()
    assert rule.case_types == {"penalty": timedelta(days=18250), "fine": timedelta(days=365)}
    assert load(tmp_path, "").retention.policy().case_types == {}


def test_the_station_time_zone_defaults_to_the_recorders(tmp_path: Path) -> None:
    assert load(tmp_path, "").station_tz.utcoffset(None) == timedelta(hours=8)
    assert load(tmp_path, '[ingest]\nrecorder_timezone = "UTC"\n').station_tz.utcoffset(
        None) == timedelta(0)
    assert load(tmp_path, 'station_timezone = "UTC"\n').station_tz.utcoffset(None) == timedelta(0)
    assert load(tmp_path, 'station_timezone = "+08:00"\n').station_tz.utcoffset(
        None) == timedelta(hours=8)


def test_the_recorder_time_zone_is_an_offset_or_a_zone_name(tmp_path: Path) -> None:
    moment = datetime(2026, 11, 1, 1, 30, tzinfo=UTC)
    assert load(tmp_path, "").ingest.recorder_tz.utcoffset(moment) == timedelta(hours=8)
    named = load(tmp_path, '[ingest]\nrecorder_timezone = "Asia/Shanghai"\n').ingest
    assert named.recorder_tz.utcoffset(moment) == timedelta(hours=8)
    # A zone with summer time: its offset is the one of the moment.
    berlin = load(tmp_path, '[ingest]\nrecorder_timezone = "Europe/Berlin"\n').ingest
    assert berlin.recorder_tz.utcoffset(datetime(2026, 7, 1)) == timedelta(hours=2)
    assert berlin.recorder_tz.utcoffset(datetime(2026, 12, 1)) == timedelta(hours=1)


def test_one_problem_in_each_section_is_reported_with_a_cross_check_after_them(
        tmp_path: Path) -> None:
    body = ("[windows]\ningest = '1h'\nfoo = 1\n[ingest]\nbuffer_size = '1KiB'\n"
            + _dir("a", "/mnt/nas") + _dir("a", "/mnt/other"))
    message = config_error(tmp_path, body)
    assert "windows.foo: unknown key" in message
    assert "ingest.buffer_size: must be between 64KiB and 256MiB" in message
    # the duplicate target names are found once each section is right on its own
    assert "names must be unique" not in message
    fixed = config_error(tmp_path, _dir("a", "/mnt/nas") + _dir("a", "/mnt/other"))
    assert "  targets: names must be unique (a more than once)" in fixed


def test_a_copy_of_the_settings_is_checked_again(tmp_path: Path) -> None:
    target = load(tmp_path, S3).targets[0]
    with pytest.raises(ValueError, match="must not hold a user name or password"):
        msgspec.structs.replace(target, endpoint_url="https://key:secret@rgw.example.org")


@pytest.mark.parametrize(("body", "path"), [
    ('station = "station-01\\n"\n', "station"),  # prints as the real one, signs as another
    ('[[targets]]\nname = "off\\n"\ntype = "directory"\npath = "/mnt/nas"\n', "targets.0.name"),
    ('[[alerts]]\ntype = "smtp"\nhost = "mail.example\\n"\nfrom = "a@b.org"\nto = ["x@y.org"]\n',
     "alerts.0.host"),
    ('[[alerts]]\ntype = "smtp"\nhost = "mail"\nfrom = "a@b.org"\nto = ["x@y.org\\n"]\n',
     "alerts.0.to.0"),
    ('[timestamping]\nurl = "https://tsa.example.org/tsr"\nca_file = "a.pem"\n'
     'policy = "1.2.3\\n"\n', "timestamping.policy"),
])
def test_a_name_with_a_trailing_newline_is_refused(tmp_path: Path, body: str, path: str) -> None:
    message = config_error(tmp_path, body)
    assert any(line.strip().startswith(f"{path}:") for line in message.splitlines()), message


def test_a_relative_home_is_taken_from_the_files_folder_before_the_paths_are_compared(
        tmp_path: Path) -> None:
    inside = tmp_path / "rel" / "store" / "off"
    message = config_error(tmp_path, "home = 'rel'\n" + _dir("off", str(inside)))
    assert "targets: 'off'" in message and "overlaps the store" in message
    assert load(tmp_path, "home = 'rel'\n").home == tmp_path / "rel"


def test_a_refused_value_is_shown_short_and_never_a_choice_keys_secret(tmp_path: Path) -> None:
    deep: dict[str, object] = {}
    for _ in range(5000):
        deep = {"a": deep}
    with pytest.raises(ConfigError) as caught:
        config.from_mapping({"store": deep, "windows": {"ingest": deep}}, home=tmp_path)
    assert "store: not a path: a table" in caught.value.message
    assert "windows.ingest: not a duration: a table" in caught.value.message
    message = config_error(tmp_path, "[log]\nlevel = 'https://op:hunter2@siem.example.org'\n")
    assert "log.level: must be 'DEBUG' or" in message and "hunter2" not in message
    long = config_error(tmp_path, f"[windows]\ningest = '{'9' * 500}x'\n")
    assert "windows.ingest: not a duration: '999" in long and len(long) < 400
