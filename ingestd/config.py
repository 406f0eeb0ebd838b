"""Configuration: one TOML file, validated strictly into frozen settings.

An unknown key or a bad value is an error naming the key's path and the reason. Durations are
written like ``"24h"``, ``"90m"``, ``"2d"``; sizes like ``"4MiB"``, ``"10GB"``. Relative paths are
taken from ``home`` (by default the folder that holds the configuration file).
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from datetime import timedelta, tzinfo
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

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


def parse_duration(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        return value
    if isinstance(value, str):
        match = _DURATION_RE.match(value)
        if match:
            seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2)]
            if seconds > MAX_DURATION.total_seconds():
                raise ValueError(f"too long: {value!r} (at most {MAX_DURATION.days}d)")
            return timedelta(seconds=seconds)
    raise ValueError(f"not a duration: {value!r} (write like \"30s\", \"15m\", \"24h\", \"2d\")")


def parse_size(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        size = value
    elif isinstance(value, str) and (match := _SIZE_RE.match(value)):
        number = float(match.group(1)) * _SIZE_UNITS[match.group(2)]
        size = int(number) if number <= MAX_SIZE else MAX_SIZE + 1
    else:
        raise ValueError(f"not a size: {value!r} (write like \"4MiB\", \"10GB\")")
    if size > MAX_SIZE:
        raise ValueError(f"too large: {value!r} (at most {MAX_SIZE} bytes)")
    return size


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("must be longer than 0s")
    return value


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
#: A window or an interval: zero would make every item late at once, or a job run unceasingly.
PositiveDuration = Annotated[timedelta, BeforeValidator(parse_duration),
                             AfterValidator(_positive)]
Size = Annotated[int, BeforeValidator(parse_size)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FilenameTimeRule(_Section):
    pattern: str
    format: str

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from exc
        return value


DEFAULT_PATTERNS = (
    "*.mp4", "*.mov", "*.avi", "*.mkv", "*.ts", "*.m4v", "*.3gp", "*.asf", "*.wmv",
    "*.wav", "*.mp3", "*.aac", "*.m4a", "*.amr", "*.ogg", "*.opus",
    "*.jpg", "*.jpeg", "*.png", "*.heic", "*.bmp",
)


class IngestSettings(_Section):
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
    clock_tolerance: Duration = timedelta(minutes=10)
    buffer_size: Size = 4 * 2**20
    changed_retries: int = Field(default=3, ge=0, le=20)
    #: Read every file a second time from the recorder and store it only if both reads
    #: agree: twice the reading of a recorder, for a recorder that may give wrong bytes.
    verify_source: bool = False
    parallel_files: int = Field(default=2, ge=1, le=16)
    probe_timeout: PositiveDuration = timedelta(seconds=60)

    @field_validator("patterns")
    @classmethod
    def _some_patterns(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value or not all(p.strip() for p in value):
            raise ValueError("needs at least one non-empty pattern (no file would be taken)")
        return value

    @field_validator("ignore")
    @classmethod
    def _ignore(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not all(p.strip() for p in value):
            raise ValueError("an empty pattern would ignore nothing; remove it")
        return value

    @field_validator("recorder_timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        parse_zone(value)
        return value

    @property
    def recorder_tz(self) -> tzinfo:
        """The recorders' time zone: file-name times are read in it (and, unless
        ``station_timezone`` says otherwise, every time shown to a person is given in it)."""
        return parse_zone(self.recorder_timezone)

    @field_validator("buffer_size")
    @classmethod
    def _buffer(cls, value: int) -> int:
        if not 64 * 1024 <= value <= 256 * 2**20:
            raise ValueError("must be between 64KiB and 256MiB")
        return value

    def conventions(self) -> tuple[FilenameTime, ...]:
        return tuple(FilenameTime.of(r.pattern, r.format) for r in self.filename_time)


class WindowSettings(_Section):
    ingest: PositiveDuration = timedelta(hours=24)
    label: PositiveDuration = timedelta(hours=48)
    replication: PositiveDuration = timedelta(hours=24)

    def policy(self) -> Windows:
        return Windows(ingest=self.ingest, label=self.label, replication=self.replication)


class RetentionSettings(_Section):
    routine: Duration = timedelta(days=365)
    evidence: Duration = timedelta(days=365 * 30)
    long_term_categories: tuple[str, ...] = (
        "dispute", "complaint", "obstruction", "assault", "incident", "mass-incident",
    )
    local_keep: Duration = timedelta(days=30)
    # Evidence periods by case type, chosen by `label --case-type NAME`; each only lengthens.
    case_types: dict[str, PositiveDuration] = {}

    @field_validator("case_types")
    @classmethod
    def _case_type_names(cls, value: dict[str, timedelta]) -> dict[str, timedelta]:
        bad = sorted(name for name in value if not _CASE_TYPE_RE.fullmatch(name))
        if bad:
            raise ValueError(f"not a case type name: {bad[0]!r} (letters, digits, - _ .; "
                             "at most 64)")
        return value

    @field_validator("routine")
    @classmethod
    def _minimum(cls, value: timedelta) -> timedelta:
        if value < timedelta(days=365):
            raise ValueError("must be at least 365d (the rules keep footage a year)")
        return value

    def policy(self) -> RetentionPolicy:
        return RetentionPolicy(
            routine=self.routine,
            evidence=self.evidence,
            long_term_categories=frozenset(self.long_term_categories),
            case_types=dict(self.case_types),
        )


class DockSettings(_Section):
    watch_root: Path | None = Path("docks")
    identity: Literal["folder", "file"] = "folder"
    identity_file: str = "RECORDER.ID"
    settle: Duration = timedelta(seconds=2)
    udev: bool = False
    runtime_dir: Path = Path("run")
    max_parallel_recorders: int = Field(default=8, ge=1, le=64)
    wipe: Literal["never", "after-local-verify", "after-offsite-verify"] = "never"
    ready_timeout: PositiveDuration = timedelta(seconds=30)
    fs_check: bool = True  # read-only file system check of a udev recorder before mounting
    fusefat_write: bool = False  # wipe FAT recorders through fusefat's experimental rw+ mode

    @field_validator("watch_root", mode="before")
    @classmethod
    def _off(cls, value: object) -> object:
        return None if value in ("", None) else value


class SchedulerSettings(_Section):
    window_check: PositiveDuration = timedelta(minutes=10)
    replication: PositiveDuration = timedelta(minutes=15)
    checkpoint: PositiveDuration = timedelta(hours=1)
    audit: PositiveDuration = timedelta(hours=6)
    audit_sample: int = Field(default=20, ge=0)
    ledger_verify: PositiveDuration = timedelta(hours=6)
    audit_offsite: PositiveDuration = timedelta(hours=24)
    audit_offsite_sample: int = Field(default=5, ge=0)
    retention: PositiveDuration = timedelta(hours=24)
    replication_parallel: int = Field(default=4, ge=1, le=32)
    # WORM check of every target with object_lock = true (``ingestd targets check``); "0s":
    # not on schedule (by hand only)
    worm_check: Duration = timedelta(hours=24)
    worm_check_sample: int = Field(default=5, ge=0)


class SpotCheckSettings(_Section):
    """The spot-check sampler: ``per_officer`` items of each officer every ``period`` (0: off)."""

    per_officer: int = Field(default=1, ge=0, le=1000)
    period: PositiveDuration = timedelta(days=7)


class AuditSettings(_Section):
    """Audit cycles: each local copy re-hashed within ``cycle``, each off-site copy read back
    within ``offsite_cycle``; reads at most ``max_rate`` bytes a second (0: unlimited)."""

    cycle: PositiveDuration = timedelta(days=30)
    offsite_cycle: PositiveDuration = timedelta(days=365)
    max_rate: Size = 0


class _TargetBase(_Section):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
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


class S3TargetSettings(_TargetBase):
    type: Literal["s3"]
    bucket: str | None = None
    endpoint_url: str | None = None
    region: str = "us-east-1"
    object_lock: bool = True
    credentials_file: Path | None = None
    profile: str | None = None
    ca_bundle: Path | None = None
    sse: Literal["AES256", "aws:kms"] | None = None
    kms_key_id: str | None = None
    multipart_threshold: Size = 64 * 2**20
    multipart_chunksize: Size = 16 * 2**20
    max_concurrency: int = Field(default=4, ge=1, le=64)
    bandwidth_limit: Size | None = None
    max_attempts: int = Field(default=5, ge=1, le=50)
    readback: bool = False  # read every upload back in full and hash it before counting it

    @field_validator("endpoint_url")
    @classmethod
    def _no_secrets(cls, value: str | None) -> str | None:
        if value is None:
            return None
        return http_url(value, example="https://rgw.example.org", query=False,
                        secrets="put the keys in credentials_file")

    @model_validator(mode="after")
    def _shape(self) -> S3TargetSettings:
        if not self.bucket:
            raise ValueError("an s3 target needs bucket")
        if self.sse == "aws:kms" and not self.kms_key_id:
            raise ValueError("sse = \"aws:kms\" needs kms_key_id")
        return self

    def place(self) -> str:
        """Where its objects go, to tell two targets at the same place apart (no secrets)."""
        where = self.endpoint_url.rstrip("/").lower() if self.endpoint_url else "aws"
        return f"{where} bucket {self.bucket}"


class DirectoryTargetSettings(_TargetBase):
    type: Literal["directory"]
    path: Path | None = None
    mount_point: Path | None = None  # path must be on the file system mounted here
    same_filesystem_ok: bool = False  # allow path on the store's own file system (tests, demos)

    @model_validator(mode="after")
    def _shape(self) -> DirectoryTargetSettings:
        if self.path is None:
            raise ValueError("a directory target needs path")
        return self


#: One ``[[targets]]`` table: its ``type`` says which settings it takes; any other key is an
#: error, so a bucket setting on a directory target is not silently ignored.
TargetSettings = Annotated[S3TargetSettings | DirectoryTargetSettings,
                           Field(discriminator="type")]
TARGET_TYPES: dict[str, type[_TargetBase]] = {
    "s3": S3TargetSettings, "directory": DirectoryTargetSettings}


class CaseSettings(_Section):
    """Closed cases (``ingestd case close``): each is archived as one package to ``archive``
    within ``case_archive_window`` of the end of enforcement, or its items are flagged
    archive_late. ``archive``: the name of a ``[[targets]]`` table (an S3 target must have
    object_lock), or a directory (written with a ``/``; relative paths from home); empty:
    none configured yet."""

    case_archive_window: PositiveDuration = timedelta(days=30)
    archive: str = ""


# -- alerts: [alerting] and the [[alerts]] channels ------------------------------------------

_PERCENT_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")


def _free_space(value: Any) -> str:
    if isinstance(value, str) and (match := _PERCENT_RE.match(value)):
        if not 0 <= float(match.group(1)) <= 100:
            raise ValueError(f"not a share of the disk: {value!r} (0% to 100%)")
        return value.strip()
    parse_size(value)
    return value if isinstance(value, str) else str(value)


class AlertingSettings(_Section):
    """When alerts are evaluated and sent again, and each condition's threshold."""

    interval: PositiveDuration = timedelta(minutes=5)
    repeat: PositiveDuration = timedelta(hours=4)  # a firing alert is sent again this often
    free_space_min: Annotated[str, BeforeValidator(_free_space)] = "5%"  # bytes, or "N%"
    replication_stalled_after: PositiveDuration = timedelta(hours=6)
    missed_windows_min: int = Field(default=1, ge=1)  # items past a window, not justified
    skipped_files_min: int = Field(default=1, ge=1)  # files the last dock left on a recorder
    damaged_media_min: int = Field(default=1, ge=1)  # files of the last dock that are not media
    clock_items_min: int = Field(default=1, ge=1)  # items of the last dock with a doubtful time
    disabled: tuple[str, ...] = ()  # conditions never alerted, by name

    @field_validator("disabled")
    @classmethod
    def _conditions(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        known = [str(c) for c in Condition if c != Condition.TEST]
        bad = [name for name in value if name not in known]
        if bad:
            raise ValueError(f"not a condition: {bad[0]!r} (one of {', '.join(known)})")
        return value

    @property
    def free_space_percent(self) -> float | None:
        match = _PERCENT_RE.match(self.free_space_min)
        return float(match.group(1)) if match else None

    @property
    def free_space_bytes(self) -> int | None:
        return None if self.free_space_percent is not None else parse_size(self.free_space_min)


def _secret_free_url(value: str) -> str:
    return http_url(value, example="https://alerts.example.org/hook",
                    secrets="put a bearer token in token_file")


class _ChannelBase(_Section):
    name: str = Field(default="", pattern=r"^$|^[A-Za-z0-9_.-]{1,64}$")  # default: its type
    attempts: int = Field(default=3, ge=1, le=10)  # tries of each send, with backoff between
    backoff: PositiveDuration = timedelta(seconds=1)  # before the second try; doubles
    timeout: PositiveDuration = timedelta(seconds=10)
    ca_bundle: Path | None = None  # the CA to check the server's certificate against

    @property
    def channel(self) -> str:
        return self.name or str(getattr(self, "type"))  # noqa: B009 - each type has its own


class WebhookChannelSettings(_ChannelBase):
    type: Literal["webhook"]
    url: Annotated[str, AfterValidator(_secret_free_url)]
    token_file: Path | None = None  # a bearer token, read at each send


class SmtpChannelSettings(_ChannelBase):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    type: Literal["smtp"]
    host: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,253}$")
    port: int = Field(default=587, ge=1, le=65535)
    starttls: bool = True
    sender: str = Field(alias="from", pattern=r"^[^\s<>,;]+@[^\s<>,;]+$")
    to: tuple[Annotated[str, Field(pattern=r"^[^\s<>,;]+@[^\s<>,;]+$")], ...] = Field(
        min_length=1)
    username: str | None = None
    password_file: Path | None = None  # read at each send, never logged

    @model_validator(mode="after")
    def _login(self) -> SmtpChannelSettings:
        if self.password_file is not None and not self.username:
            raise ValueError("password_file needs username")
        return self


#: One ``[[alerts]]`` table: a channel, by ``type``. The log is always one besides.
ChannelSettings = Annotated[WebhookChannelSettings | SmtpChannelSettings,
                            Field(discriminator="type")]
CHANNEL_TYPES: dict[str, type[_ChannelBase]] = {
    "webhook": WebhookChannelSettings, "smtp": SmtpChannelSettings}


_OID_RE = re.compile(r"^[0-2](\.(0|[1-9][0-9]*))+$")


class TimestampSettings(_Section):
    """RFC 3161 time-stamps on signed checkpoints: ``url`` names the time-stamping authority
    (none: checkpoints carry no time-stamp), ``ca_file`` the PEM certificates that must verify
    its tokens, ``policy`` the OID its tokens must be issued under (any, when unset)."""

    url: str | None = None
    ca_file: Path | None = None
    timeout: PositiveDuration = timedelta(seconds=10)
    policy: str | None = None

    @field_validator("url")
    @classmethod
    def _plain_url(cls, value: str | None) -> str | None:
        return None if value is None else http_url(value,
                                                    example="https://tsa.example.org/tsr")

    @field_validator("policy")
    @classmethod
    def _oid(cls, value: str | None) -> str | None:
        if value is not None and not _OID_RE.match(value):
            raise ValueError("not an object identifier (write like \"1.3.6.1.4.1.4146.2.3\")")
        return value

    @model_validator(mode="after")
    def _trust(self) -> TimestampSettings:
        if self.url is not None and self.ca_file is None:
            raise ValueError("url needs ca_file: the PEM certificates that verify the "
                             "authority's tokens")
        return self


class LogSettings(_Section):
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


class WebSettings(_Section):
    """The status page, the JSON API and ``/healthz``, served by ``ingestd run``."""

    listen: str | None = None  # "127.0.0.1:8765"; unset: not served
    token_file: Path | None = None  # a bearer token every request must carry
    tls_cert: Path | None = None
    tls_key: Path | None = None
    language: Literal["zh", "en"] = "zh"
    refresh: PositiveDuration = timedelta(seconds=30)  # the page reloads itself this often

    @field_validator("listen")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is not None:
            parse_listen(value)
        return value

    @model_validator(mode="after")
    def _guarded(self) -> WebSettings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together (give both, or neither)")
        if self.listen is not None and self.token_file is None and not is_loopback(
                parse_listen(self.listen)[0]):
            raise ValueError(f"token_file is required: listen = {self.listen!r} is not "
                             "a loopback address, and the status page would be open to the "
                             "network without a token")
        return self

    @property
    def address(self) -> tuple[str, int] | None:
        return parse_listen(self.listen) if self.listen is not None else None


class Settings(_Section):
    station: str = Field(default="station-01", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    home: Path
    store: Path = Path("store")
    catalog: str = ""  # SQLAlchemy URL; empty: SQLite in home
    keys: Path = Path("keys")
    ledger_mirror: Path = Path("ledger.jsonl")
    logs: Path = Path("logs")
    # The zone people read every time in (tables, reports, the custody report, `deadline_local`)
    # and in which dates they type are read; empty: the recorders' `ingest.recorder_timezone`.
    station_timezone: str = ""
    ingest: IngestSettings = IngestSettings()
    windows: WindowSettings = WindowSettings()
    retention: RetentionSettings = RetentionSettings()
    docks: DockSettings = DockSettings()
    scheduler: SchedulerSettings = SchedulerSettings()
    spotcheck: SpotCheckSettings = SpotCheckSettings()
    audit: AuditSettings = AuditSettings()
    targets: tuple[TargetSettings, ...] = ()
    log: LogSettings = LogSettings()
    cases: CaseSettings = CaseSettings()
    alerting: AlertingSettings = AlertingSettings()
    alerts: tuple[ChannelSettings, ...] = ()
    timestamping: TimestampSettings = TimestampSettings()
    web: WebSettings = WebSettings()

    @field_validator("station_timezone")
    @classmethod
    def _station_zone(cls, value: str) -> str:
        if value:
            parse_zone(value)
        return value

    @property
    def station_tz(self) -> tzinfo:
        """The zone times are shown to people in, and dates they type are read in."""
        return parse_zone(self.station_timezone) if self.station_timezone \
            else self.ingest.recorder_tz

    @model_validator(mode="after")
    def _unique_targets(self) -> Settings:
        names = [t.name for t in self.targets]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"targets: names must be unique ({', '.join(twice)} more than once)")
        return self

    @model_validator(mode="after")
    def _unique_channels(self) -> Settings:
        names = [c.channel for c in self.alerts]
        twice = sorted({n for n in names if names.count(n) > 1 or n == "log"})
        if twice:
            raise ValueError(f"alerts: channel names must be unique and not \"log\" "
                             f"({', '.join(twice)}); give each [[alerts]] table a name")
        return self

    @model_validator(mode="after")
    def _separate_targets(self) -> Settings:
        # Two targets at one place would count one copy twice: an item would be "replicated"
        # with a single off-site copy. A folder inside the store is not off-site at all.
        problems = [f"targets: {a.name!r} and {b.name!r} {why}"
                    for i, a in enumerate(self.targets) for b in self.targets[i + 1:]
                    if (why := _overlap(a, b, self))]
        store = _resolved(self.store_path)
        for t in self.targets:
            if isinstance(t, DirectoryTargetSettings) and t.path is not None:
                where = _resolved(self.path(t.path))
                if _inside(where, store) or _inside(store, where):
                    problems.append(f"targets: {t.name!r} ({where}) overlaps the store "
                                    f"({store}): it would not be an off-site copy")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @model_validator(mode="after")
    def _case_archive(self) -> Settings:
        where = self.cases.archive
        folder = self.archive_directory()
        if folder is not None:
            store = _resolved(self.store_path)
            if _inside(_resolved(folder), store) or _inside(store, _resolved(folder)):
                raise ValueError(f"cases.archive: {folder} overlaps the store ({store})")
            return self
        if not where:
            return self
        target = next((t for t in self.targets if t.name == where), None)
        if target is None:
            raise ValueError(f"cases.archive: {where!r} is no target in [[targets]]; a "
                             "directory is written with a / (\"./archive\", \"/srv/archive\")")
        if isinstance(target, S3TargetSettings) and not target.object_lock:
            raise ValueError(f"cases.archive: target {where!r} has object_lock = false; a "
                             "case archive is kept under Object Lock")
        return self

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
        return self.path(self.docks.watch_root) if self.docks.watch_root else None

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


def _describe(exc: ValidationError, source: str) -> str:
    lines = [f"invalid configuration in {source}:"]
    for err in exc.errors():
        parts = list(err["loc"])
        kind = ""
        # a [[targets]] table is checked as the settings of its type: pydantic puts the type
        # into the location (targets.0.directory.bucket); people know it as targets.0.bucket
        # (and so for an [[alerts]] channel)
        types: Mapping[str, object] = CHANNEL_TYPES if parts[:1] == ["alerts"] else TARGET_TYPES
        what = "channel" if types is CHANNEL_TYPES else "target"
        if len(parts) >= 3 and parts[0] in ("targets", "alerts") and parts[2] in types:
            kind = str(parts.pop(2))
        if err["type"] == "union_tag_invalid":
            parts.append("type")
        loc = ".".join(str(part) for part in parts) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = f"unknown key for {'an' if kind == 's3' else 'a'} {kind} {what}" if kind else (
                "unknown key")
        elif err["type"] == "union_tag_invalid":
            msg = "type must be one of " + ", ".join(repr(t) for t in types)
        elif err["type"] == "union_tag_not_found":
            msg = "needs type (" + " or ".join(repr(t) for t in types) + ")"
        lines.append(f"  {loc}: {msg}")
    return "\n".join(lines)


def from_mapping(data: dict[str, Any], *, home: Path, source: str = "<config>") -> Settings:
    raw = dict(data)
    raw.setdefault("home", str(home))
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, source)) from None
    if not settings.home.is_absolute():
        settings = settings.model_copy(update={"home": (home / settings.home).resolve()})
    return settings


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
