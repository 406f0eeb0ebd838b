"""Wipe eligibility: each ``docks.wipe`` mode with each condition. A recorder that ingestd mounts
is made writable only after a clean file system check (and through fusefat only when asked);
a file goes only once its bytes are a verified item, and under ``after-offsite-verify`` only
once every required target (there must be one) holds a proven copy."""

from __future__ import annotations

from collections.abc import Set
from typing import get_args, get_type_hints

import pytest

from ingestd.config import DockSettings
from ingestd.domain import policy
from ingestd.domain.policy import FsCheck, WipeBar, WipeMode

NEVER, LOCAL, OFFSITE = WipeMode.NEVER, WipeMode.AFTER_LOCAL_VERIFY, WipeMode.AFTER_OFFSITE_VERIFY
REQUIRED = frozenset({"nas", "cloud"})


def test_the_modes_are_the_configuration_words() -> None:
    assert [str(m) for m in WipeMode] == ["never", "after-local-verify", "after-offsite-verify"]
    assert set(get_args(get_type_hints(DockSettings)["wipe"])) == set(WipeMode)
    assert [m.needs_offsite_proof for m in WipeMode] == [False, False, True]


# -- the recorder: may it be made writable? --------------------------------------------------


def recorder(mode: WipeMode, fs_check: FsCheck = FsCheck.CLEAN, *, fusefat: bool = False,
             fusefat_write: bool = False) -> WipeBar | None:
    return policy.recorder_wipe_bar(mode=mode, fs_check=fs_check, fusefat=fusefat,
                                    fusefat_write=fusefat_write)


@pytest.mark.parametrize("mode", [LOCAL, OFFSITE])
@pytest.mark.parametrize(("fs_check", "fusefat", "fusefat_write", "bar"), [
    (FsCheck.CLEAN, False, False, None),
    (FsCheck.CLEAN, False, True, None),
    (FsCheck.ERRORS, False, False, WipeBar.FS_ERRORS),
    (FsCheck.NOT_RUN, False, False, WipeBar.FS_NOT_CHECKED),
    (FsCheck.CLEAN, True, False, WipeBar.FUSEFAT_WRITE_OFF),
    (FsCheck.CLEAN, True, True, None),
    # The check comes first: fusefat_write never makes a damaged or unchecked one writable.
    (FsCheck.ERRORS, True, True, WipeBar.FS_ERRORS),
    (FsCheck.NOT_RUN, True, True, WipeBar.FS_NOT_CHECKED),
    (FsCheck.ERRORS, True, False, WipeBar.FS_ERRORS),
])
def test_a_recorder_is_made_writable_only_after_a_clean_check(
        mode: WipeMode, fs_check: FsCheck, fusefat: bool, fusefat_write: bool,
        bar: WipeBar | None) -> None:
    assert recorder(mode, fs_check, fusefat=fusefat, fusefat_write=fusefat_write) is bar


@pytest.mark.parametrize("fs_check", list(FsCheck))
@pytest.mark.parametrize("fusefat", [False, True])
def test_never_makes_a_recorder_writable_whatever_its_file_system(
        fs_check: FsCheck, fusefat: bool) -> None:
    assert recorder(NEVER, fs_check, fusefat=fusefat, fusefat_write=True) is WipeBar.NEVER


# -- the mode and the targets ----------------------------------------------------------------


@pytest.mark.parametrize(("mode", "required", "bar"), [
    (NEVER, REQUIRED, WipeBar.NEVER),
    (NEVER, frozenset(), WipeBar.NEVER),
    (LOCAL, REQUIRED, None),
    (LOCAL, frozenset(), None),  # no off-site proof is asked for
    (OFFSITE, REQUIRED, None),
    (OFFSITE, frozenset(), WipeBar.NO_REQUIRED_TARGET),
])
def test_what_the_mode_and_the_required_targets_allow(
        mode: WipeMode, required: frozenset[str], bar: WipeBar | None) -> None:
    assert policy.wipe_bar(mode=mode, required=required) is bar


# -- one file --------------------------------------------------------------------------------


def file(mode: WipeMode, *, verified: bool = True, proven: Set[str] = frozenset(),
         required: Set[str] = REQUIRED) -> WipeBar | None:
    return policy.file_wipe_bar(mode=mode, required=required, verified=verified, proven=proven)


def test_never_wipes_a_file_whatever_is_proven() -> None:
    assert file(NEVER, proven=REQUIRED) is WipeBar.NEVER
    assert file(NEVER, proven=REQUIRED, required=frozenset()) is WipeBar.NEVER
    assert file(NEVER, verified=False) is WipeBar.NEVER


def test_after_local_verify_asks_for_a_verified_item_only() -> None:
    assert file(LOCAL) is None
    assert file(LOCAL, required=frozenset()) is None
    assert file(LOCAL, verified=False) is WipeBar.NOT_VERIFIED
    assert file(LOCAL, verified=False, proven=REQUIRED) is WipeBar.NOT_VERIFIED


@pytest.mark.parametrize(("proven", "bar"), [
    (frozenset(), WipeBar.NOT_PROVEN),
    (frozenset({"nas"}), WipeBar.NOT_PROVEN),
    (frozenset({"cloud", "spare"}), WipeBar.NOT_PROVEN),
    (REQUIRED, None),
    (REQUIRED | {"spare"}, None),
])
def test_after_offsite_verify_asks_for_a_proven_copy_on_every_required_target(
        proven: frozenset[str], bar: WipeBar | None) -> None:
    assert file(OFFSITE, proven=proven) is bar


def test_after_offsite_verify_asks_for_a_verified_item_too() -> None:
    assert file(OFFSITE, proven=REQUIRED, verified=False) is WipeBar.NOT_VERIFIED


def test_after_offsite_verify_with_no_required_target_wipes_nothing() -> None:
    # Nothing required would make every file "proven everywhere it must be": refused instead.
    assert file(OFFSITE, required=frozenset(), proven=frozenset()) is WipeBar.NO_REQUIRED_TARGET
    assert file(OFFSITE, required=frozenset(), proven={"nas"}) is WipeBar.NO_REQUIRED_TARGET
