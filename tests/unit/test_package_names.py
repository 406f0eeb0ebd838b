"""Names in a court package: readable, unique ignoring case, and accepted by Windows."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ingestd.domain.names import NAME_MAX, item_file_name, safe_name, unique_names

WINDOWS_REFUSES = set('<>:"/\\|?*')


def windows_accepts(name: str) -> bool:
    stem = name.split(".")[0].rstrip(" ").upper()
    return (bool(name) and not set(name) & WINDOWS_REFUSES
            and all(ord(c) >= 32 and ord(c) != 127 for c in name)
            and not name.endswith((".", " ")) and len(name) <= NAME_MAX
            and stem not in {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)),
                             *(f"LPT{i}" for i in range(1, 10))})


@pytest.mark.parametrize("raw", [
    "CON", "con.mp4", "Nul .txt", "COM1.MP4", "lpt9", "a<b>c:d\"e/f\\g|h?i*j.MP4",
    "trailing dots...", "trailing space .mp4 ", "tab\there\nnewline\x07bell.mp4", "",
    "...", "   ", "x" * 400 + ".MP4", "案件_张三_现场.MP4", "\u202egnp.exe",
])
def test_every_name_is_one_windows_accepts(raw: str) -> None:
    name = safe_name(raw)
    assert windows_accepts(name), (raw, name)


def test_the_extension_and_the_readable_parts_are_kept() -> None:
    name = item_file_name(officer="王芳", recorded=datetime(2026, 3, 1, 10, 0, tzinfo=UTC),
                          original="DCIM/100MEDIA/20260301_100000_0001.MP4")
    assert name == "王芳_20260301T100000Z_20260301_100000_0001.MP4"
    long = safe_name("y" * 300 + ".MP4")
    assert long.endswith(".MP4") and len(long) == NAME_MAX


def test_reserved_names_are_changed_and_others_left_alone() -> None:
    assert safe_name("CON.txt") == "_CON.txt"
    assert safe_name("console.txt") == "console.txt"


def test_names_alike_but_for_case_or_unicode_form_are_made_unique() -> None:
    names = unique_names([safe_name("Clip.MP4"), safe_name("clip.mp4"), safe_name("CLIP.MP4"),
                          safe_name("e\u0301.mp4"), safe_name("\u00e9.mp4")])
    assert names == ["Clip.MP4", "clip~2.mp4", "CLIP~3.MP4", "\u00e9.mp4", "\u00e9~2.mp4"]
    assert len({n.casefold() for n in names}) == len(names)
    assert all(windows_accepts(n) for n in names)
