"""File names for a court package: readable, unique, and accepted by Windows.

An exported item is named for a person (officer, recorded time, original name), but the name
must also open on whatever machine a court uses: no character Windows refuses (``<>:"/\\|?*``,
control characters), no trailing dot or space, no reserved device name (``CON``, ``NUL``,
``COM1``...), a bounded length, and no two names that differ only by case or Unicode form.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from datetime import UTC, datetime

#: Characters Windows refuses in a file name, besides control characters.
FORBIDDEN = frozenset('<>:"/\\|?*')
#: Names Windows reserves for devices, whatever extension follows them.
RESERVED = frozenset(
    {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"}
    | {f"{dev}{n}" for dev in ("COM", "LPT") for n in (*"123456789", "¹", "²", "³")})
#: At most this many characters in a name (Windows allows 255 in a component; a court's copy
#: often sits a few folders deep under a 260-character path limit).
NAME_MAX = 120
_EXT_MAX = 16


def _clean(text: str) -> str:
    out = []
    for ch in unicodedata.normalize("NFC", text):
        if ch in FORBIDDEN or unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl",
                                                           "Zp"):
            out.append("_")
        else:
            out.append(ch)
    return re.sub(r"\s+", " ", "".join(out))


def safe_name(text: str, *, limit: int = NAME_MAX) -> str:
    """``text`` as one file name Windows accepts, at most ``limit`` characters, its extension
    kept where there is room."""
    name = _clean(text).strip(" ")
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem or len(ext) > _EXT_MAX or " " in ext:
        stem, ext = name, ""
    stem = stem.rstrip(". ")
    if len(stem) + len(ext) + 1 > limit:
        stem = stem[: max(1, limit - len(ext) - 1)].rstrip(". ")
    name = f"{stem}.{ext}" if ext else stem
    name = name.rstrip(". ") or "item"
    if name.split(".")[0].rstrip(" ").upper() in RESERVED:
        name = "_" + name
    return name[:limit].rstrip(". ") or "item"


def item_file_name(*, officer: str, recorded: datetime, original: str) -> str:
    """An item's readable name: ``<officer>_<recorded, UTC>_<original name>``."""
    stamp = recorded.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    base = original.replace("\\", "/").rsplit("/", 1)[-1]
    return safe_name(f"{officer}_{stamp}_{base}")


def unique_names(names: Iterable[str], *, limit: int = NAME_MAX) -> list[str]:
    """The names, in order, each made unique ignoring case (Windows folders do) by ``~2``,
    ``~3``... before its extension."""
    taken: set[str] = set()
    out: list[str] = []
    for name in names:
        candidate, n = name, 1
        while candidate.casefold() in taken:
            n += 1
            stem, dot, ext = name.rpartition(".")
            if not dot or not stem:
                stem, ext = name, ""
            suffix = f"~{n}"
            stem = stem[: max(1, limit - len(suffix) - len(ext) - 1)]
            candidate = f"{stem}{suffix}.{ext}" if ext else f"{stem}{suffix}"
        taken.add(candidate.casefold())
        out.append(candidate)
    return out
