"""The configured targets: each ``[[targets]]`` table made into its target.

A target is built from its own settings, with the relative paths in them taken from home as
every path of the configuration is (``Settings.path``); a directory target also learns where
the local store is, so that a share that did not mount is not taken for it. boto3 is imported
only when an S3 target is built: it is slow to import, and a station with folders only never
needs it.
"""

from __future__ import annotations

from msgspec.structs import replace

from ..config import DirectoryTargetSettings, Settings, TargetSettings
from . import Target, directory_location, s3_location
from .directory import DirectoryTarget


def _resolved(spec: TargetSettings, settings: Settings) -> TargetSettings:
    """``spec`` with every path in it taken from home."""
    if isinstance(spec, DirectoryTargetSettings):
        assert spec.path is not None
        return replace(
            spec, path=settings.path(spec.path),
            mount_point=settings.path(spec.mount_point) if spec.mount_point else None)
    return replace(
        spec, credentials_file=settings.path(spec.credentials_file)
        if spec.credentials_file else None,
        ca_bundle=settings.path(spec.ca_bundle) if spec.ca_bundle else None)


def build_target(spec: TargetSettings, settings: Settings) -> Target:
    spec = _resolved(spec, settings)
    if isinstance(spec, DirectoryTargetSettings):
        return DirectoryTarget(spec, local=settings.store_path)
    from .s3 import S3Target  # boto3 is heavy to import: only when a bucket is used

    return S3Target(spec)


def build_targets(settings: Settings) -> list[Target]:
    return [build_target(spec, settings) for spec in settings.targets]


def target_locations(settings: Settings) -> dict[str, str]:
    """Where each configured target keeps its copies (what ``Target.location`` says), from
    the configuration alone: a copy counts only at the location its target has now."""
    out = {}
    for spec in settings.targets:
        if isinstance(spec, DirectoryTargetSettings):
            assert spec.path is not None
            out[spec.name] = directory_location(settings.path(spec.path), spec.prefix)
        else:
            assert spec.bucket is not None
            out[spec.name] = s3_location(spec.endpoint_url, spec.bucket, spec.prefix)
    return out
