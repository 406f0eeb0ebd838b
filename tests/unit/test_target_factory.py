"""Each ``[[targets]]`` table becomes its target, with its relative paths taken from home."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ingestd import config
from ingestd.errors import TargetUnreachable
from ingestd.targets.directory import DirectoryTarget
from ingestd.targets.factory import build_targets, target_locations
from ingestd.targets.s3 import S3Target

NAS = '[[targets]]\nname = "{name}"\ntype = "directory"\npath = "{path}"\n'
BUCKET = ('[[targets]]\nname = "offsite"\ntype = "s3"\nbucket = "evidence"\n'
          'endpoint_url = "https://rgw.example.org"\ncredentials_file = "s3-credentials"\n'
          'ca_bundle = "ca.pem"\n')


def home_with(tmp_path: Path, body: str) -> tuple[Path, config.Settings]:
    home = tmp_path / "home"
    for folder in ("store", "nas", "nas2"):
        (home / folder).mkdir(parents=True, exist_ok=True)
    (home / "s3-credentials").write_text(
        "[default]\naws_access_key_id = AKIDEXAMPLE\naws_secret_access_key = example\n")
    (home / "s3-credentials").chmod(0o600)
    (home / "ca.pem").write_text("not read until a connection is made\n")
    (home / "ingestd.toml").write_text(body, encoding="utf-8")
    return home, config.load(home / "ingestd.toml")


def test_relative_paths_are_taken_from_home(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    home, settings = home_with(
        tmp_path, NAS.format(name="nas", path="nas") + 'mount_point = "nas"\n'
        + NAS.format(name="nas2", path="nas2") + BUCKET)
    monkeypatch.chdir(tmp_path)  # not home: a path taken from here would be missed
    nas, nas2, bucket = build_targets(settings)  # reads credentials_file, checks ca_bundle
    assert isinstance(nas, DirectoryTarget) and nas.path == home / "nas"
    assert isinstance(nas2, DirectoryTarget) and isinstance(bucket, S3Target)
    # a copy counts at the place the target is built for, known from the configuration alone
    assert target_locations(settings) == {
        "nas": nas.location, "nas2": nas2.location, "offsite": bucket.location}
    assert nas.location == f"dir:{home / 'nas'}"
    # mount_point is taken from home too, and the local store is the station's
    with pytest.raises(TargetUnreachable, match=f"mounted at {home / 'nas'} "):
        nas.check()
    with pytest.raises(TargetUnreachable, match=f"local store {home / 'store'} "):
        nas2.check()


SHOW_BOTO3 = """
import sys
from pathlib import Path
from ingestd import config
from ingestd.targets.factory import build_targets
build_targets(config.load(Path(sys.argv[1])))
print("boto3" in sys.modules)
"""


@pytest.mark.parametrize(("body", "imported"), [
    (NAS.format(name="nas", path="nas"), "False"),
    (NAS.format(name="nas", path="nas") + BUCKET, "True"),
])
def test_boto3_is_imported_only_for_a_bucket(tmp_path: Path, body: str, imported: str) -> None:
    home, _ = home_with(tmp_path, body)
    shown = subprocess.run([sys.executable, "-c", SHOW_BOTO3, str(home / "ingestd.toml")],
                           capture_output=True, text=True, check=True, cwd=home)
    assert shown.stdout.strip() == imported
