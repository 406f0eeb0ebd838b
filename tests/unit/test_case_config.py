"""``[cases]``: the archive window, and the archive named as a target or a directory."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from ingestd import config
from ingestd.errors import ConfigError

S3 = {"name": "vault", "type": "s3", "bucket": "cases"}
NAS = {"name": "nas", "type": "directory", "path": "/mnt/nas"}


def load(tmp_path: Path, cases: dict[str, Any], targets: list[dict[str, Any]] | None = None,
         ) -> config.Settings:
    return config.from_mapping({"cases": cases, "targets": targets or []}, home=tmp_path)


def test_the_defaults_keep_thirty_days_and_no_archive(tmp_path: Path) -> None:
    settings = config.from_mapping({}, home=tmp_path)
    assert settings.cases.case_archive_window == timedelta(days=30)
    assert settings.archive_target() is None and settings.archive_directory() is None


def test_the_archive_is_a_target_or_a_directory(tmp_path: Path) -> None:
    named = load(tmp_path, {"archive": "vault", "case_archive_window": "45d"}, [S3, NAS])
    assert named.cases.case_archive_window == timedelta(days=45)
    target = named.archive_target()
    assert target is not None and target.name == "vault"
    assert named.archive_directory() is None
    folder = load(tmp_path, {"archive": "./archive"})
    assert folder.archive_directory() == tmp_path / "archive"
    assert folder.archive_target() is None
    assert load(tmp_path, {"archive": "/srv/case-archive"}).archive_directory() == Path(
        "/srv/case-archive")


@pytest.mark.parametrize(("cases", "targets", "says"), [
    ({"archive": "nowhere"}, [NAS], "cases.archive: 'nowhere' is no target in [[targets]]"),
    ({"archive": "vault"}, [{**S3, "object_lock": False}], "object_lock = false"),
    ({"archive": "./store/archive"}, [], "overlaps the store"),
    ({"case_archive_window": "0s"}, [], "cases.case_archive_window"),
    ({"archive_window": "30d"}, [], "cases.archive_window"),
])
def test_a_bad_archive_setting_names_its_key(tmp_path: Path, cases: dict[str, Any],
                                             targets: list[dict[str, Any]], says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, cases, targets)
    assert says in str(caught.value)
