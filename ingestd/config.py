"""Configuration: one TOML file, validated strictly into frozen settings.

An unknown key or a bad value is an error naming the key's path and the reason. Durations are
written like ``"24h"``, ``"90m"``, ``"2d"``; sizes like ``"4MiB"``, ``"10GB"``. Relative paths are
taken from ``home`` (by default the folder that holds the configuration file).
"""

from __future__ import annotations

import os
import re
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from .domain.policy import FilenameTime, RetentionPolicy, Windows, parse_utc_offset
from .errors import ConfigError

CONFIG_NAME = "ingestd.toml"
SYSTEM_CONFIG = Path("/etc/ingestd/ingestd.toml")

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w|y)\s*$")
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)?\s*$")
_SIZE_UNITS = {
    None: 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
    "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40,
}


def parse_duration(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        return value
    if isinstance(value, str):
        match = _DURATION_RE.match(value)
        if match:
            return timedelta(seconds=float(match.group(1)) * _DURATION_UNITS[match.group(2)])
    raise ValueError(f"not a duration: {value!r} (write like \"30s\", \"15m\", \"24h\", \"2d\")")


def parse_size(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str):
        match = _SIZE_RE.match(value)
        if match:
            return int(float(match.group(1)) * _SIZE_UNITS[match.group(2)])
    raise ValueError(f"not a size: {value!r} (write like \"4MiB\", \"10GB\")")


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
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
    unregistered: Literal["refuse", "unassigned"] = "refuse"
    filename_time: tuple[FilenameTimeRule, ...] = (
        FilenameTimeRule(pattern=r"(\d{8}_\d{6})", format="%Y%m%d_%H%M%S"),
        FilenameTimeRule(pattern=r"(\d{14})", format="%Y%m%d%H%M%S"),
    )
    recorder_timezone: str = "+08:00"
    clock_tolerance: Duration = timedelta(minutes=10)
    buffer_size: Size = 4 * 2**20
    changed_retries: int = Field(default=3, ge=0, le=20)
    parallel_files: int = Field(default=2, ge=1, le=16)
    probe_timeout: Duration = timedelta(seconds=60)

    @field_validator("recorder_timezone")
    @classmethod
    def _offset(cls, value: str) -> str:
        parse_utc_offset(value)
        return value

    @field_validator("buffer_size")
    @classmethod
    def _buffer(cls, value: int) -> int:
        if not 64 * 1024 <= value <= 256 * 2**20:
            raise ValueError("must be between 64KiB and 256MiB")
        return value

    def conventions(self) -> tuple[FilenameTime, ...]:
        return tuple(FilenameTime.of(r.pattern, r.format) for r in self.filename_time)


class WindowSettings(_Section):
    ingest: Duration = timedelta(hours=24)
    label: Duration = timedelta(hours=48)
    replication: Duration = timedelta(hours=24)

    def policy(self) -> Windows:
        return Windows(ingest=self.ingest, label=self.label, replication=self.replication)


class RetentionSettings(_Section):
    routine: Duration = timedelta(days=365)
    evidence: Duration = timedelta(days=365 * 30)
    long_term_categories: tuple[str, ...] = (
        "dispute", "complaint", "obstruction", "assault", "incident", "mass-incident",
    )
    local_keep: Duration = timedelta(days=30)

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
    ready_timeout: Duration = timedelta(seconds=30)
    fs_check: bool = True  # read-only file system check of a udev recorder before mounting
    fusefat_write: bool = False  # wipe FAT recorders through fusefat's experimental rw+ mode

    @field_validator("watch_root", mode="before")
    @classmethod
    def _off(cls, value: object) -> object:
        return None if value in ("", None) else value


class SchedulerSettings(_Section):
    window_check: Duration = timedelta(minutes=10)
    replication: Duration = timedelta(minutes=15)
    checkpoint: Duration = timedelta(hours=1)
    audit: Duration = timedelta(hours=6)
    audit_sample: int = Field(default=20, ge=0)
    retention: Duration = timedelta(hours=24)
    replication_parallel: int = Field(default=4, ge=1, le=32)


class TargetSettings(_Section):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    type: Literal["s3", "directory"]
    required: bool = True
    prefix: str = ""
    # s3
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
    # directory
    path: Path | None = None

    @model_validator(mode="after")
    def _shape(self) -> TargetSettings:
        if self.type == "s3" and not self.bucket:
            raise ValueError("an s3 target needs bucket")
        if self.type == "directory" and self.path is None:
            raise ValueError("a directory target needs path")
        if self.sse == "aws:kms" and not self.kms_key_id:
            raise ValueError("sse = \"aws:kms\" needs kms_key_id")
        return self


class LogSettings(_Section):
    format: Literal["text", "json"] = "text"
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class Settings(_Section):
    station: str = Field(default="station-01", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    home: Path
    store: Path = Path("store")
    catalog: str = ""  # SQLAlchemy URL; empty: SQLite in home
    keys: Path = Path("keys")
    ledger_mirror: Path = Path("ledger.jsonl")
    logs: Path = Path("logs")
    ingest: IngestSettings = IngestSettings()
    windows: WindowSettings = WindowSettings()
    retention: RetentionSettings = RetentionSettings()
    docks: DockSettings = DockSettings()
    scheduler: SchedulerSettings = SchedulerSettings()
    targets: tuple[TargetSettings, ...] = ()
    log: LogSettings = LogSettings()

    @model_validator(mode="after")
    def _unique_targets(self) -> Settings:
        names = [t.name for t in self.targets]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"targets: names must be unique ({', '.join(twice)} more than once)")
        return self

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


def _describe(exc: ValidationError, source: str) -> str:
    lines = [f"invalid configuration in {source}:"]
    for err in exc.errors():
        loc = ".".join(str(part) for part in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
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
