"""Configuration: one TOML file, validated strictly into frozen settings.

An unknown key or a bad value is an error naming the key's path and the reason. Durations are
written like ``"24h"``, ``"90m"``, ``"2d"``; sizes like ``"4MiB"``, ``"10GB"``. Relative paths are
taken from ``home`` (by default the folder that holds the configuration file).

The settings are msgspec Structs: frozen, unknown keys refused, each value of its exact type
(no string taken for a number). A check of a value's own that msgspec does not know (a
duration, a zone, a URL) raises a ValueError; its message starts with ``@KEY: `` when it is
about one key of the section (or, for a section's dict, one entry), and :func:`_describe`
puts that key into the path it reports.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
import types
import typing
from datetime import timedelta, tzinfo
from pathlib import Path, PurePath
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import msgspec
from msgspec import Meta, Struct, field

from .domain import text
from .domain.alerts import Condition
from .domain.policy import FilenameTime, RetentionPolicy, Windows, parse_zone
from .errors import ConfigError

CONFIG_NAME = "ingestd.toml"
SYSTEM_CONFIG = Path("/etc/ingestd/ingestd.toml")

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w|y)\s*$")
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}
_CASE_TYPE_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)?\s*$")
_SIZE_UNITS = {
    None: 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
    "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40,
}


#: The longest duration a key takes: a time this far ahead is still a date the clock, the
#: catalog and an S3 server can hold, and no rule asks for longer.
MAX_DURATION = timedelta(days=1000 * 365)
#: The largest size a key takes (8 EiB, a signed 64-bit byte count).
MAX_SIZE = 2**63 - 1


def _shown(value: Any) -> str:
    """A value that was refused, as an error shows it: a string or a number as written (the
    first 80 characters), anything else by its kind (a table may be nested too deep to show)."""
    if isinstance(value, str | int | float):
        text = repr(value)
        return text if len(text) <= 80 else text[:77] + "..."
    kinds: dict[type, str] = {dict: "a table", list: "an array"}
    return kinds.get(type(value), f"a {type(value).__name__}")


def parse_duration(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        return value
    if isinstance(value, str):
        match = _DURATION_RE.match(value)
        if match:
            seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2)]
            if seconds > MAX_DURATION.total_seconds():
                raise ValueError(f"too long: {_shown(value)} (at most {MAX_DURATION.days}d)")
            return timedelta(seconds=seconds)
    raise ValueError(f"not a duration: {_shown(value)} (write like \"30s\", \"15m\", \"24h\", "
                     "\"2d\")")


def parse_size(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        size = value
    elif isinstance(value, str) and (match := _SIZE_RE.match(value)):
        number = float(match.group(1)) * _SIZE_UNITS[match.group(2)]
        size = int(number) if number <= MAX_SIZE else MAX_SIZE + 1
    else:
        raise ValueError(f"not a size: {_shown(value)} (write like \"4MiB\", \"10GB\")")
    if size > MAX_SIZE:
        raise ValueError(f"too large: {_shown(value)} (at most {MAX_SIZE} bytes)")
    return size


class Duration(timedelta):
    """A key written as a duration (``"24h"``): see :func:`parse_duration`."""


class PositiveDuration(Duration):
    """A window or an interval: zero would make every item late at once, or a job run
    unceasingly."""


class Size(int):
    """A key written as a size in bytes (``"4MiB"``): see :func:`parse_size`."""


class FreeSpace(str):
    """Free space on a disk: bytes (a size) or a share of the disk (``"5%"``)."""

    __slots__ = ()


def _duration(value: Any, positive: bool) -> Duration:
    parsed = parse_duration(value)
    if positive and parsed <= timedelta(0):
        raise ValueError("must be longer than 0s")
    made = PositiveDuration if positive else Duration
    return made(days=parsed.days, seconds=parsed.seconds, microseconds=parsed.microseconds)


def _decode(kind: type, value: Any) -> Any:
    """msgspec's hook for the types above, and for paths (written as strings)."""
    if kind is PositiveDuration or kind is Duration:
        return _duration(value, kind is PositiveDuration)
    if kind is Size:
        return Size(parse_size(value))
    if kind is FreeSpace:
        return FreeSpace(_free_space(value))
    if kind is Path:
        if not isinstance(value, str | PurePath):
            raise ValueError(f"not a path: {_shown(value)} (write it as a string)")
        if "\0" in str(value):
            raise ValueError("not a path: it holds a NUL character")
        return Path(value)
    raise NotImplementedError(kind)


class _Section(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class _Tagged(_Section, frozen=True, kw_only=True, tag_field="type"):
    """A table whose ``type`` key says which settings it takes (msgspec's tag, not a field)."""

    @property
    def type(self) -> str:
        return str(self.__struct_config__.tag)


class FilenameTimeRule(_Section, frozen=True, kw_only=True):
    pattern: str
    format: str

    def __post_init__(self) -> None:
        try:
            re.compile(self.pattern)
        except re.error as exc:
            raise ValueError(f"@pattern: not a regular expression: {exc}") from exc


DEFAULT_PATTERNS = (
    "*.mp4", "*.mov", "*.avi", "*.mkv", "*.ts", "*.m4v", "*.3gp", "*.asf", "*.wmv",
    "*.wav", "*.mp3", "*.aac", "*.m4a", "*.amr", "*.ogg", "*.opus",
    "*.jpg", "*.jpeg", "*.png", "*.heic", "*.bmp",
)


class IngestSettings(_Section, frozen=True, kw_only=True):
    patterns: tuple[str, ...] = DEFAULT_PATTERNS
    #: Paths of a recorder's own files, known not to be footage (``SYSTEM/*``): left on it as
    #: every unmatched file is, but counted as ``ignored``, not as files left behind.
    ignore: tuple[str, ...] = ()
    unregistered: Literal["refuse", "unassigned"] = "refuse"
    filename_time: tuple[FilenameTimeRule, ...] = (
        FilenameTimeRule(pattern=r"(\d{8}_\d{6})", format="%Y%m%d_%H%M%S"),
        FilenameTimeRule(pattern=r"(\d{14})", format="%Y%m%d%H%M%S"),
    )
    recorder_timezone: str = "+08:00"
    clock_tolerance: Duration = Duration(minutes=10)
    buffer_size: Size = Size(4 * 2**20)
    changed_retries: Annotated[int, Meta(ge=0, le=20)] = 3
    #: Read every file a second time from the recorder and store it only if both reads
    #: agree: twice the reading of a recorder, for a recorder that may give wrong bytes.
    verify_source: bool = False
    parallel_files: Annotated[int, Meta(ge=1, le=16)] = 2
    probe_timeout: PositiveDuration = PositiveDuration(seconds=60)

    def __post_init__(self) -> None:
        if not self.patterns or not all(p.strip() for p in self.patterns):
            raise ValueError("@patterns: needs at least one non-empty pattern (no file would "
                             "be taken)")
        if not all(p.strip() for p in self.ignore):
            raise ValueError("@ignore: an empty pattern would ignore nothing; remove it")
        _zone("recorder_timezone", self.recorder_timezone)
        if not 64 * 1024 <= self.buffer_size <= 256 * 2**20:
            raise ValueError("@buffer_size: must be between 64KiB and 256MiB")

    @property
    def recorder_tz(self) -> tzinfo:
        """The recorders' time zone: file-name times are read in it (and, unless
        ``station_timezone`` says otherwise, every time shown to a person is given in it)."""
        return parse_zone(self.recorder_timezone)

    def conventions(self) -> tuple[FilenameTime, ...]:
        return tuple(FilenameTime.of(r.pattern, r.format) for r in self.filename_time)


def _zone(key: str, value: str) -> None:
    try:
        parse_zone(value)
    except ValueError as exc:
        raise ValueError(f"@{key}: {exc}") from None


class WindowSettings(_Section, frozen=True, kw_only=True):
    ingest: PositiveDuration = PositiveDuration(hours=24)
    label: PositiveDuration = PositiveDuration(hours=48)
    replication: PositiveDuration = PositiveDuration(hours=24)

    def policy(self) -> Windows:
        return Windows(ingest=self.ingest, label=self.label, replication=self.replication)


class RetentionSettings(_Section, frozen=True, kw_only=True):
    routine: Duration = Duration(days=365)
    evidence: Duration = Duration(days=365 * 30)
    long_term_categories: tuple[str, ...] = (
        "dispute", "complaint", "obstruction", "assault", "incident", "mass-incident",
    )
    local_keep: Duration = Duration(days=30)
    # Evidence periods by case type, chosen by `label --case-type NAME`; each only lengthens.
    # Read as written and checked here, so that an error names the case type.
    case_types: dict[str, Any] = {}

    def __post_init__(self) -> None:
        bad = sorted(name for name in self.case_types if not _CASE_TYPE_RE.fullmatch(name))
        if bad:
            raise ValueError(f"@case_types: not a case type name: {bad[0]!r} (letters, "
                             "digits, - _ .; at most 64)")
        periods = {}
        for name, value in self.case_types.items():
            try:
                periods[name] = _duration(value, positive=True)
            except ValueError as exc:
                raise ValueError(f"@case_types.{name}: {exc}") from None
        msgspec.structs.force_setattr(self, "case_types", periods)
        if self.routine < timedelta(days=365):
            raise ValueError("@routine: must be at least 365d (the rules keep footage a year)")

    def policy(self) -> RetentionPolicy:
        return RetentionPolicy(
            routine=self.routine,
            evidence=self.evidence,
            long_term_categories=frozenset(self.long_term_categories),
            case_types=dict(self.case_types),
        )


class DockSettings(_Section, frozen=True, kw_only=True):
    watch_root: str | None = "docks"  # a folder (relative: from home); "" or unset: none
    identity: Literal["folder", "file"] = "folder"
    identity_file: str = "RECORDER.ID"
    settle: Duration = Duration(seconds=2)
    udev: bool = False
    runtime_dir: Path = Path("run")
    max_parallel_recorders: Annotated[int, Meta(ge=1, le=64)] = 8
    wipe: Literal["never", "after-local-verify", "after-offsite-verify"] = "never"
    ready_timeout: PositiveDuration = PositiveDuration(seconds=30)
    fs_check: bool = True  # read-only file system check of a udev recorder before mounting
    fusefat_write: bool = False  # wipe FAT recorders through fusefat's experimental rw+ mode


class SchedulerSettings(_Section, frozen=True, kw_only=True):
    window_check: PositiveDuration = PositiveDuration(minutes=10)
    replication: PositiveDuration = PositiveDuration(minutes=15)
    checkpoint: PositiveDuration = PositiveDuration(hours=1)
    audit: PositiveDuration = PositiveDuration(hours=6)
    audit_sample: Annotated[int, Meta(ge=0)] = 20
    ledger_verify: PositiveDuration = PositiveDuration(hours=6)
    audit_offsite: PositiveDuration = PositiveDuration(hours=24)
    audit_offsite_sample: Annotated[int, Meta(ge=0)] = 5
    retention: PositiveDuration = PositiveDuration(hours=24)
    replication_parallel: Annotated[int, Meta(ge=1, le=32)] = 4
    # WORM check of every target with object_lock = true (``ingestd targets check``); "0s":
    # not on schedule (by hand only)
    worm_check: Duration = Duration(hours=24)
    worm_check_sample: Annotated[int, Meta(ge=0)] = 5


class SpotCheckSettings(_Section, frozen=True, kw_only=True):
    """The spot-check sampler: ``per_officer`` items of each officer every ``period`` (0: off)."""

    per_officer: Annotated[int, Meta(ge=0, le=1000)] = 1
    period: PositiveDuration = PositiveDuration(days=7)


class AuditSettings(_Section, frozen=True, kw_only=True):
    """Audit cycles: each local copy re-hashed within ``cycle``, each off-site copy read back
    within ``offsite_cycle``; reads at most ``max_rate`` bytes a second (0: unlimited)."""

    cycle: PositiveDuration = PositiveDuration(days=30)
    offsite_cycle: PositiveDuration = PositiveDuration(days=365)
    max_rate: Size = Size(0)


#: msgspec matches a pattern with ``re.search``, where ``$`` also matches before a final
#: newline: each pattern here ends with ``\Z`` (a "station-01\n" is no station name).
_NAME = Meta(pattern=r"^[A-Za-z0-9_.-]{1,64}\Z")


class _TargetBase(_Tagged, frozen=True, kw_only=True):
    name: Annotated[str, _NAME]
    required: bool = True
    prefix: str = ""


def http_url(value: str, *, example: str, secrets: str = "",
             query: bool = True) -> str:
    """``value`` if it is an http(s) URL with a host and no user name, password or fragment
    (nor a query, unless ``query``); else a ValueError that says what is wrong without ever
    echoing it (it may hold a secret). ``secrets`` says where a secret goes instead."""
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise ValueError(f"not a URL (write like \"{example}\")") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL (write like \"{example}\")")
    if text.url_has_userinfo(value):
        raise ValueError("must not hold a user name or password"
                         + (f"; {secrets}" if secrets else ""))
    if parts.fragment or (parts.query and not query):
        raise ValueError("must not hold a fragment" if query
                         else "must not hold a query string or fragment")
    return value


class S3TargetSettings(_TargetBase, frozen=True, kw_only=True, tag="s3"):
    bucket: str | None = None
    endpoint_url: str | None = None
    region: str = "us-east-1"
    object_lock: bool = True
    credentials_file: Path | None = None
    profile: str | None = None
    ca_bundle: Path | None = None
    sse: Literal["AES256", "aws:kms"] | None = None
    kms_key_id: str | None = None
    multipart_threshold: Size = Size(64 * 2**20)
    multipart_chunksize: Size = Size(16 * 2**20)
    max_concurrency: Annotated[int, Meta(ge=1, le=64)] = 4
    bandwidth_limit: Size | None = None
    max_attempts: Annotated[int, Meta(ge=1, le=50)] = 5
    readback: bool = False  # read every upload back in full and hash it before counting it

    def __post_init__(self) -> None:
        if self.endpoint_url is not None:
            _url("endpoint_url", self.endpoint_url, example="https://rgw.example.org",
                 query=False, secrets="put the keys in credentials_file")
        if not self.bucket:
            raise ValueError("an s3 target needs bucket")
        if self.sse == "aws:kms" and not self.kms_key_id:
            raise ValueError("sse = \"aws:kms\" needs kms_key_id")

    def place(self) -> str:
        """Where its objects go, to tell two targets at the same place apart (no secrets)."""
        where = self.endpoint_url.rstrip("/").lower() if self.endpoint_url else "aws"
        return f"{where} bucket {self.bucket}"


def _url(key: str, value: str, **how: Any) -> None:
    try:
        http_url(value, **how)
    except ValueError as exc:
        raise ValueError(f"@{key}: {exc}") from None


class DirectoryTargetSettings(_TargetBase, frozen=True, kw_only=True, tag="directory"):
    path: Path | None = None
    mount_point: Path | None = None  # path must be on the file system mounted here
    same_filesystem_ok: bool = False  # allow path on the store's own file system (tests, demos)

    def __post_init__(self) -> None:
        if self.path is None:
            raise ValueError("a directory target needs path")


#: One ``[[targets]]`` table: its ``type`` says which settings it takes; any other key is an
#: error, so a bucket setting on a directory target is not silently ignored.
TargetSettings = S3TargetSettings | DirectoryTargetSettings
TARGET_TYPES: dict[str, type[_TargetBase]] = {
    "s3": S3TargetSettings, "directory": DirectoryTargetSettings}


class CaseSettings(_Section, frozen=True, kw_only=True):
    """Closed cases (``ingestd case close``): each is archived as one package to ``archive``
    within ``case_archive_window`` of the end of enforcement, or its items are flagged
    archive_late. ``archive``: the name of a ``[[targets]]`` table (an S3 target must have
    object_lock), or a directory (written with a ``/``; relative paths from home); empty:
    none configured yet."""

    case_archive_window: PositiveDuration = PositiveDuration(days=30)
    archive: str = ""


# -- alerts: [alerting] and the [[alerts]] channels ------------------------------------------

_PERCENT_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")


def _free_space(value: Any) -> str:
    if isinstance(value, str) and (match := _PERCENT_RE.match(value)):
        if not 0 <= float(match.group(1)) <= 100:
            raise ValueError(f"not a share of the disk: {_shown(value)} (0% to 100%)")
        return value.strip()
    parse_size(value)
    return value if isinstance(value, str) else str(value)


class AlertingSettings(_Section, frozen=True, kw_only=True):
    """When alerts are evaluated and sent again, and each condition's threshold."""

    interval: PositiveDuration = PositiveDuration(minutes=5)
    repeat: PositiveDuration = PositiveDuration(hours=4)  # a firing alert is sent again this often
    free_space_min: FreeSpace = FreeSpace("5%")  # bytes, or "N%"
    replication_stalled_after: PositiveDuration = PositiveDuration(hours=6)
    missed_windows_min: Annotated[int, Meta(ge=1)] = 1  # items past a window, not justified
    skipped_files_min: Annotated[int, Meta(ge=1)] = 1  # files the last dock left on a recorder
    damaged_media_min: Annotated[int, Meta(ge=1)] = 1  # files of the last dock that are not media
    clock_items_min: Annotated[int, Meta(ge=1)] = 1  # items of the last dock with a doubtful time
    disabled: tuple[str, ...] = ()  # conditions never alerted, by name

    def __post_init__(self) -> None:
        known = [str(c) for c in Condition if c != Condition.TEST]
        bad = [name for name in self.disabled if name not in known]
        if bad:
            raise ValueError(f"@disabled: not a condition: {bad[0]!r} (one of "
                             f"{', '.join(known)})")

    @property
    def free_space_percent(self) -> float | None:
        match = _PERCENT_RE.match(self.free_space_min)
        return float(match.group(1)) if match else None

    @property
    def free_space_bytes(self) -> int | None:
        return None if self.free_space_percent is not None else parse_size(self.free_space_min)


_ADDRESS = Meta(pattern=r"^[^\s<>,;]+@[^\s<>,;]+\Z")


class _ChannelBase(_Tagged, frozen=True, kw_only=True):
    name: Annotated[str, Meta(pattern=r"^\Z|^[A-Za-z0-9_.-]{1,64}\Z")] = ""  # default: its type
    attempts: Annotated[int, Meta(ge=1, le=10)] = 3  # tries of each send, with backoff between
    backoff: PositiveDuration = PositiveDuration(seconds=1)  # before the second try; doubles
    timeout: PositiveDuration = PositiveDuration(seconds=10)
    ca_bundle: Path | None = None  # the CA to check the server's certificate against

    @property
    def channel(self) -> str:
        return self.name or self.type


class WebhookChannelSettings(_ChannelBase, frozen=True, kw_only=True, tag="webhook"):
    url: str
    token_file: Path | None = None  # a bearer token, read at each send

    def __post_init__(self) -> None:
        _url("url", self.url, example="https://alerts.example.org/hook",
             secrets="put a bearer token in token_file")


class SmtpChannelSettings(_ChannelBase, frozen=True, kw_only=True, tag="smtp"):
    host: Annotated[str, Meta(pattern=r"^[A-Za-z0-9_.:-]{1,253}\Z")]
    port: Annotated[int, Meta(ge=1, le=65535)] = 587
    starttls: bool = True
    sender: Annotated[str, _ADDRESS] = field(name="from")
    to: Annotated[tuple[Annotated[str, _ADDRESS], ...], Meta(min_length=1)]
    username: str | None = None
    password_file: Path | None = None  # read at each send, never logged

    def __post_init__(self) -> None:
        if self.password_file is not None and not self.username:
            raise ValueError("password_file needs username")


#: One ``[[alerts]]`` table: a channel, by ``type``. The log is always one besides.
ChannelSettings = WebhookChannelSettings | SmtpChannelSettings
CHANNEL_TYPES: dict[str, type[_ChannelBase]] = {
    "webhook": WebhookChannelSettings, "smtp": SmtpChannelSettings}


_OID_RE = re.compile(r"^[0-2](\.(0|[1-9][0-9]*))+\Z")


class TimestampSettings(_Section, frozen=True, kw_only=True):
    """RFC 3161 time-stamps on signed checkpoints: ``url`` names the time-stamping authority
    (none: checkpoints carry no time-stamp), ``ca_file`` the PEM certificates that must verify
    its tokens, ``policy`` the OID its tokens must be issued under (any, when unset)."""

    url: str | None = None
    ca_file: Path | None = None
    timeout: PositiveDuration = PositiveDuration(seconds=10)
    policy: str | None = None

    def __post_init__(self) -> None:
        if self.url is not None:
            _url("url", self.url, example="https://tsa.example.org/tsr")
        if self.policy is not None and not _OID_RE.match(self.policy):
            raise ValueError("@policy: not an object identifier (write like "
                             "\"1.3.6.1.4.1.4146.2.3\")")
        if self.url is not None and self.ca_file is None:
            raise ValueError("url needs ca_file: the PEM certificates that verify the "
                             "authority's tokens")


class LogSettings(_Section, frozen=True, kw_only=True):
    format: Literal["text", "json"] = "text"
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


# -- the status page ([web]) -------------------------------------------------------------


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8765`` for IPv6) to its host and port. The host is an address
    of this machine (or ``localhost``): a name is not resolved to decide who may connect."""
    host, sep, port = value.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"not an address: {value!r} (write like \"127.0.0.1:8765\")")
    if host != "localhost":
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"{host!r} is not an IP address of this machine (or "
                             "localhost)") from None
    return host, int(port)


def is_loopback(host: str) -> bool:
    return host == "localhost" or ipaddress.ip_address(host).is_loopback


class WebSettings(_Section, frozen=True, kw_only=True):
    """The status page, the JSON API and ``/healthz``, served by ``ingestd run``."""

    listen: str | None = None  # "127.0.0.1:8765"; unset: not served
    token_file: Path | None = None  # a bearer token every request must carry
    tls_cert: Path | None = None
    tls_key: Path | None = None
    language: Literal["zh", "en"] = "zh"
    refresh: PositiveDuration = PositiveDuration(seconds=30)  # the page reloads itself this often

    def __post_init__(self) -> None:
        if self.listen is not None:
            try:
                host = parse_listen(self.listen)[0]
            except ValueError as exc:
                raise ValueError(f"@listen: {exc}") from None
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together (give both, or neither)")
        if self.listen is not None and self.token_file is None and not is_loopback(host):
            raise ValueError(f"token_file is required: listen = {self.listen!r} is not "
                             "a loopback address, and the status page would be open to the "
                             "network without a token")

    @property
    def address(self) -> tuple[str, int] | None:
        return parse_listen(self.listen) if self.listen is not None else None


class Settings(_Section, frozen=True, kw_only=True):
    station: Annotated[str, _NAME] = "station-01"
    home: Path
    store: Path = Path("store")
    catalog: str = ""  # SQLAlchemy URL; empty: SQLite in home
    keys: Path = Path("keys")
    ledger_mirror: Path = Path("ledger.jsonl")
    logs: Path = Path("logs")
    # The zone people read every time in (tables, reports, the custody report, `deadline_local`)
    # and in which dates they type are read; empty: the recorders' `ingest.recorder_timezone`.
    station_timezone: str = ""
    ingest: IngestSettings = field(default_factory=IngestSettings)
    windows: WindowSettings = field(default_factory=WindowSettings)
    retention: RetentionSettings = field(default_factory=RetentionSettings)
    docks: DockSettings = field(default_factory=DockSettings)
    scheduler: SchedulerSettings = field(default_factory=SchedulerSettings)
    spotcheck: SpotCheckSettings = field(default_factory=SpotCheckSettings)
    audit: AuditSettings = field(default_factory=AuditSettings)
    targets: tuple[TargetSettings, ...] = ()
    log: LogSettings = field(default_factory=LogSettings)
    cases: CaseSettings = field(default_factory=CaseSettings)
    alerting: AlertingSettings = field(default_factory=AlertingSettings)
    alerts: tuple[ChannelSettings, ...] = ()
    timestamping: TimestampSettings = field(default_factory=TimestampSettings)
    web: WebSettings = field(default_factory=WebSettings)

    def __post_init__(self) -> None:
        if self.station_timezone:
            _zone("station_timezone", self.station_timezone)
        self._unique_targets()
        self._unique_channels()
        self._separate_targets()
        self._case_archive()

    @property
    def station_tz(self) -> tzinfo:
        """The zone times are shown to people in, and dates they type are read in."""
        return parse_zone(self.station_timezone) if self.station_timezone \
            else self.ingest.recorder_tz

    def _unique_targets(self) -> None:
        names = [t.name for t in self.targets]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"@targets: names must be unique ({', '.join(twice)} more than "
                             "once)")

    def _unique_channels(self) -> None:
        names = [c.channel for c in self.alerts]
        twice = sorted({n for n in names if names.count(n) > 1 or n == "log"})
        if twice:
            raise ValueError(f"@alerts: channel names must be unique and not \"log\" "
                             f"({', '.join(twice)}); give each [[alerts]] table a name")

    def _separate_targets(self) -> None:
        # Two targets at one place would count one copy twice: an item would be "replicated"
        # with a single off-site copy. A folder inside the store is not off-site at all.
        problems = [f"{a.name!r} and {b.name!r} {why}"
                    for i, a in enumerate(self.targets) for b in self.targets[i + 1:]
                    if (why := _overlap(a, b, self))]
        store = _resolved(self.store_path)
        for t in self.targets:
            if isinstance(t, DirectoryTargetSettings) and t.path is not None:
                where = _resolved(self.path(t.path))
                if _inside(where, store) or _inside(store, where):
                    problems.append(f"{t.name!r} ({where}) overlaps the store ({store}): it "
                                    "would not be an off-site copy")
        if problems:
            raise ValueError("@targets: " + "; ".join(problems))

    def _case_archive(self) -> None:
        where = self.cases.archive
        folder = self.archive_directory()
        if folder is not None:
            store = _resolved(self.store_path)
            if _inside(_resolved(folder), store) or _inside(store, _resolved(folder)):
                raise ValueError(f"@cases.archive: {folder} overlaps the store ({store})")
            return
        if not where:
            return
        target = next((t for t in self.targets if t.name == where), None)
        if target is None:
            raise ValueError(f"@cases.archive: {where!r} is no target in [[targets]]; a "
                             "directory is written with a / (\"./archive\", \"/srv/archive\")")
        if isinstance(target, S3TargetSettings) and not target.object_lock:
            raise ValueError(f"@cases.archive: target {where!r} has object_lock = false; a "
                             "case archive is kept under Object Lock")

    def archive_target(self) -> TargetSettings | None:
        """The ``[[targets]]`` table that ``cases.archive`` names (None: a directory, or
        none configured)."""
        return next((t for t in self.targets if t.name == self.cases.archive), None)

    def archive_directory(self) -> Path | None:
        """The directory that ``cases.archive`` names (None: a target, or none)."""
        where = self.cases.archive
        return self.path(Path(where)) if where and "/" in where else None

    def path(self, value: Path) -> Path:
        return value if value.is_absolute() else self.home / value

    @property
    def store_path(self) -> Path:
        return self.path(self.store)

    @property
    def keys_path(self) -> Path:
        return self.path(self.keys)

    @property
    def ledger_mirror_path(self) -> Path:
        return self.path(self.ledger_mirror)

    @property
    def logs_path(self) -> Path:
        return self.path(self.logs)

    @property
    def catalog_url(self) -> str:
        return self.catalog or f"sqlite:///{self.home / 'catalog.sqlite'}"

    @property
    def watch_root(self) -> Path | None:
        return self.path(Path(self.docks.watch_root)) if self.docks.watch_root else None

    @property
    def runtime_dir(self) -> Path:
        return self.path(self.docks.runtime_dir)


def _resolved(path: Path) -> Path:
    # links followed: a NAS mount point that is a link into the store is the store
    return Path(os.path.realpath(path.expanduser()))


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _overlap(a: _TargetBase, b: _TargetBase, settings: Settings) -> str:
    """Why targets ``a`` and ``b`` are at the same place, or "" when they are not."""
    if isinstance(a, DirectoryTargetSettings) and isinstance(b, DirectoryTargetSettings):
        assert a.path is not None and b.path is not None
        pa = _resolved(settings.path(a.path) / a.prefix.strip("/"))
        pb = _resolved(settings.path(b.path) / b.prefix.strip("/"))
        if _inside(pa, pb) or _inside(pb, pa):
            return f"are at the same place ({pa} and {pb}): one copy would count twice"
    if isinstance(a, S3TargetSettings) and isinstance(b, S3TargetSettings) and (
            a.place() == b.place()):
        ka, kb = a.prefix.strip("/"), b.prefix.strip("/")
        if ka == kb or ka.startswith(kb + "/") or kb.startswith(ka + "/") or not (ka and kb):
            return (f"are at the same place ({text.redact_url(a.place())}, prefixes "
                    f"{ka or '(none)'!r} and {kb or '(none)'!r}): one copy would count twice")
    return ""


_ERROR_RE = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_STEP_RE = re.compile(r"\.([^.\[]+)|\[(\d+)\]")


def _located(message: str, raw: Any) -> tuple[list[str], str]:
    """A msgspec error as the path of the key it is about (``["targets", "0", "bucket"]``)
    and what is wrong with it, in the words this module's errors use."""
    match = _ERROR_RE.match(message)
    assert match is not None
    msg, parts = match["msg"], [a or b for a, b in _STEP_RE.findall(match["path"] or "")]
    if msg.startswith("@"):  # a check of ours about one key of the section
        key, _, msg = msg[1:].partition(": ")
        parts += key.split(".")
    elif unknown := re.fullmatch(r"Object contains unknown field `(.*)`", msg):
        parts.append(unknown[1])
        kind, what = _kind(parts[:-1], raw)
        msg = f"unknown key for {'an' if kind == 's3' else 'a'} {kind} {what}" if kind else (
            "unknown key")
    elif missing := re.fullmatch(r"Object missing required field `(.*)`", msg):
        types = _types(parts)
        if missing[1] == "type" and types:
            msg = "needs type (" + " or ".join(repr(t) for t in types) + ")"
        else:
            parts.append(missing[1])
            msg = "required"
    elif msg.startswith("Invalid value ") and parts[-1:] == ["type"] and _types(parts[:-1]):
        msg = "type must be one of " + ", ".join(repr(t) for t in _types(parts[:-1]))
    elif msg.startswith("Invalid enum value "):
        values = _literal(parts, raw)
        # not what was given, which may be anything pasted in (a URL and its password)
        msg = (f"must be {' or '.join(repr(v) for v in values)}" if values
               else "not one of its values")
    else:
        msg = _BOUNDS_RE.sub(lambda m: _BOUNDS[m[1]] + m[2], msg)
        msg = re.sub(r"^Expected `str` matching regex (.*)$", r"must match the pattern \1", msg)
        msg = re.sub(r"^Expected `array` of length >= 1$", "must not be empty", msg)
        msg = re.sub(r"^Expected `([^`]+)`, got `([^`]+)`$", r"must be of type \1, not \2",
                     msg)
    return parts, msg


_BOUNDS_RE = re.compile(r"^Expected `\w+` (>=|<=|>|<) (.*)$")
_BOUNDS = {">=": "must be greater than or equal to ", "<=": "must be less than or equal to ",
           ">": "must be greater than ", "<": "must be less than "}


def _types(parts: list[str]) -> tuple[str, ...]:
    """The types a ``[[targets]]`` or ``[[alerts]]`` table at ``parts`` may have."""
    if len(parts) == 2 and parts[0] in ("targets", "alerts"):
        return tuple(TARGET_TYPES if parts[0] == "targets" else CHANNEL_TYPES)
    return ()


def _kind(parts: list[str], raw: Any) -> tuple[str, str]:
    """The type of the ``[[targets]]`` or ``[[alerts]]`` table at ``parts`` (its ``type``
    key as written, when a known one), and which it is; ``("", "")`` elsewhere."""
    if not _types(parts):
        return "", ""
    table = _at(parts, raw)
    kind = table.get("type") if isinstance(table, dict) else None
    return (kind, "target" if parts[0] == "targets" else "channel") if kind in _types(
        parts) else ("", "")


def _at(parts: list[str], raw: Any) -> Any:
    for part in parts:
        if isinstance(raw, dict):
            raw = raw.get(part)
        elif isinstance(raw, list) and part.isdigit() and int(part) < len(raw):
            raw = raw[int(part)]
        else:
            return None
    return raw


def _literal(parts: list[str], raw: Any) -> tuple[Any, ...]:
    """The values a key at ``parts`` may take, when it takes one of a few."""
    kind: Any = Settings
    for i, part in enumerate(parts):
        if _types(parts[:i]):
            table = _at(parts[:i], raw)
            tagged = TARGET_TYPES if parts[0] == "targets" else CHANNEL_TYPES
            if not isinstance(table, dict) or table.get("type") not in tagged:
                return ()
            kind = tagged[table["type"]]
        fields = {f.encode_name: f.type for f in msgspec.structs.fields(kind)} if (
            isinstance(kind, type) and issubclass(kind, Struct)) else {}
        if part.isdigit():
            continue
        if part not in fields:
            return ()
        kind = fields[part]
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    if len(args) == 1 and typing.get_origin(args[0]) is Literal:
        args = list(typing.get_args(args[0]))
    return tuple(args) if typing.get_origin(kind) in (Literal, types.UnionType) or (
        len(args) > 1) else ()


def _describe(problems: list[tuple[list[str], str]], source: str) -> str:
    lines = [f"invalid configuration in {source}:"]
    lines += [f"  {'.'.join(parts) or '(top level)'}: {msg}" for parts, msg in problems]
    return "\n".join(lines)


def _problems(raw: dict[str, Any]) -> list[tuple[list[str], str]]:
    """Every section's first problem (msgspec stops at the first): each top-level key is
    checked on its own, so that one error does not hide those of the other sections."""
    fields = {f.encode_name: f.type for f in msgspec.structs.fields(Settings)}
    problems = []
    for key, value in raw.items():
        if key not in fields:
            problems.append(([key], "unknown key"))
            continue
        try:
            msgspec.convert(value, fields[key], dec_hook=_decode)
        except msgspec.ValidationError as exc:
            problems.append(_located(_prefixed(str(exc), key), raw))
    return problems


def _prefixed(message: str, key: str) -> str:
    """A section's error as if the whole file had been checked: its path from the top."""
    match = _ERROR_RE.match(message)
    assert match is not None
    return f"{match['msg']} - at `$.{key}{match['path'] or ''}`"


def from_mapping(data: dict[str, Any], *, home: Path, source: str = "<config>") -> Settings:
    raw = dict(data)
    given = raw.setdefault("home", str(home))
    if isinstance(given, str | PurePath) and "\0" not in str(given) and not Path(
            given).is_absolute():
        # from the configuration's folder, before the checks that compare paths run
        raw["home"] = str((home / given).resolve())
    try:
        return msgspec.convert(raw, Settings, dec_hook=_decode)
    except msgspec.ValidationError as exc:
        # The whole file failed: say what is wrong in each section, or else (each is right
        # on its own) what is wrong between them.
        problems = _problems(raw) or [_located(str(exc), raw)]
        raise ConfigError(_describe(problems, source)) from None


def load(path: Path) -> Settings:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(
            f"no configuration at {path}: run `ingestd --home DIR init` to create one"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    return from_mapping(data, home=path.parent.resolve(), source=str(path))


def locate(config: Path | None, home: Path | None) -> Path:
    """Which configuration file to read: what the command line says first (--config, then
    --home), then the environment (INGESTD_CONFIG, then INGESTD_HOME), then /etc."""
    if config is not None:
        return config
    if home is not None:
        return home / CONFIG_NAME
    if env := os.environ.get("INGESTD_CONFIG"):
        return Path(env)
    if env := os.environ.get("INGESTD_HOME"):
        return Path(env) / CONFIG_NAME
    return SYSTEM_CONFIG
