"""Canonical bytes (what is hashed and signed), times as signed, and recorder paths as text."""

from __future__ import annotations

import json
import math
import random
from datetime import UTC, datetime, timedelta, timezone

import pytest

from ingestd.domain.canonical import (
    canonical_bytes,
    display_path,
    format_time,
    parse_time,
    sha256_hex,
)


def test_canonical_bytes_do_not_depend_on_key_order_or_spacing() -> None:
    a = {"seq": 1, "data": {"b": 2, "a": [1, 2, {"z": None, "y": True}]}, "kind": "stored"}
    b = {"kind": "stored", "data": {"a": [1, 2, {"y": True, "z": None}], "b": 2}, "seq": 1}
    assert canonical_bytes(a) == canonical_bytes(b)
    assert canonical_bytes(a) == (
        b'{"data":{"a":[1,2,{"y":true,"z":null}],"b":2},"kind":"stored","seq":1}')


def test_canonical_bytes_are_utf8_not_escaped() -> None:
    value = {"party": "张三", "officer": "Zoë"}
    data = canonical_bytes(value)
    assert data == '{"officer":"Zoë","party":"张三"}'.encode()
    assert json.loads(data) == value


def test_list_order_is_significant() -> None:
    assert canonical_bytes([1, 2]) != canonical_bytes([2, 1])


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_canonical_bytes_refuse_nan_and_infinity(bad: float) -> None:
    with pytest.raises(ValueError):
        canonical_bytes({"duration": bad})


def test_sha256_hex() -> None:
    assert sha256_hex(b"") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_times_are_signed_as_utc_with_microseconds() -> None:
    local = datetime(2026, 3, 1, 10, 0, 0, 5, tzinfo=timezone(timedelta(hours=8)))
    assert format_time(local) == "2026-03-01T02:00:00.000005Z"
    assert parse_time(format_time(local)) == local
    assert parse_time("2026-03-01T02:00:00.000005Z").tzinfo == UTC


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        format_time(datetime(2026, 3, 1))


def test_formatted_times_sort_like_the_times() -> None:
    moments = [datetime(2026, 3, 1, tzinfo=UTC) + timedelta(microseconds=n) for n in
               (0, 1, 999_999, 1_000_000, 86_400_000_000)]
    texts = [format_time(m) for m in moments]
    assert texts == sorted(texts)


# -- display_path ----------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "shown"), [
    (b"DCIM/100MEDIA/CLIP0001.MP4", "DCIM/100MEDIA/CLIP0001.MP4"),
    (b"new\nline.mp4", "new\\nline.mp4"),
    (b"cr\rtab\t.mp4", "cr\\rtab\\t.mp4"),
    (b"bad\xff\xfe.mp4", "bad\\xff\\xfe.mp4"),
    (b"esc\x1b[31mred.mp4", "esc\\x1b[31mred.mp4"),
    (b"nul\x7f.mp4", "nul\\x7f.mp4"),
    ("张三的录像.mp4".encode(), "张三的录像.mp4"),
    ("rlo\u202egnp.mp4".encode(), "rlo\\u202egnp.mp4"),
    ("ls\u2028ep.mp4".encode(), "ls\\u2028ep.mp4"),
    (b"../../etc/passwd", "../../etc/passwd"),
    (b"back\\slash.mp4", "back\\\\slash.mp4"),
    (b"new\\nline.mp4", "new\\\\nline.mp4"),
    (b"bad\\xff.mp4", "bad\\\\xff.mp4"),
])
def test_display_path_escapes_what_a_terminal_would_interpret(raw: bytes, shown: str) -> None:
    assert display_path(raw) == shown


def test_display_path_is_always_one_printable_line() -> None:
    every_byte = bytes(range(256))
    shown = display_path(every_byte)
    assert shown.isprintable()
    assert "\n" not in shown and "\r" not in shown and "\x1b" not in shown


def test_display_path_shows_no_two_paths_alike() -> None:
    """Names made of the characters an escape is written with, and of what they escape:
    every one is shown differently from every other."""
    rng = random.Random(7)
    alphabet = [b"\\", b"x", b"n", b"f", b"u", b"2", b"\n", b"\xff", b"\x1b", b"a"]
    names = {b"".join(rng.choice(alphabet) for _ in range(rng.randint(0, 6)))
             for _ in range(5000)}
    shown = {display_path(name) for name in names}
    assert len(shown) == len(names)
