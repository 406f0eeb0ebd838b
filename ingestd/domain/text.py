"""Text that people type and recorders report: length limits, characters a terminal or a log
would act on, and URLs fit to be shown.

Labels, reasons and names go into signed ledger entries that can never be changed, and are
printed on terminals: a control character in them (an escape sequence, a carriage return that
hides what came before, a NUL) is refused at the door rather than stored for ever.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import SplitResult, urlsplit

#: The longest value each field may hold (the catalog's column widths, and for free text a
#: bound generous enough for any reason a person writes).
CASE_MAX = 200
PARTY_MAX = 200
OFFICER_MAX = 200
ACTOR_MAX = 200
SERIAL_MAX = 128
OFFICER_ID_MAX = 64
UNIT_MAX = 200
VENDOR_MAX = 128
MODEL_MAX = 128
REASON_MAX = 2000

#: Unicode categories refused in text: controls (C0, DEL, C1), format characters (bidi
#: overrides, zero-width marks), surrogates (undecodable command-line bytes) and the line and
#: paragraph separators.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def _refused(ch: str) -> bool:
    return unicodedata.category(ch) in _REFUSED_CATEGORIES


def text_problem(field: str, value: str, *, limit: int, empty_ok: bool = False) -> str | None:
    """Why ``value`` cannot be stored as ``field``, or None when it can."""
    if not empty_ok and not value.strip():
        return f"{field} must not be empty"
    if len(value) > limit:
        return f"{field} is {len(value)} characters long; at most {limit} are allowed"
    bad = next((ch for ch in value if _refused(ch)), None)
    if bad is not None:
        return f"{field} contains a control character (U+{ord(bad):04X}), which is not allowed"
    return None


def printable(value: str) -> str:
    """``value`` as one line a terminal shows as it is: anything it would act on (controls,
    bidi overrides, line breaks, lone surrogates) written as an escape instead."""
    if value.isprintable():
        return value
    out = []
    for ch in value:
        if ch.isprintable():
            out.append(ch)
        else:
            out.append(ch.encode("unicode_escape").decode("ascii"))
    return "".join(out)


def json_printable(document: str) -> str:
    """A JSON document from ``json.dumps(ensure_ascii=False)`` with every character a terminal
    would act on (C1 controls, bidi overrides, separators; json already escapes C0) written as
    a ``\\uXXXX`` escape: the same JSON values, safe to show."""
    # Asked of the whole document, then of each line, at the speed of str methods: only a
    # line that holds such a character is gone through one character at a time (a listing of
    # 100,000 items is tens of megabytes).
    if document.replace("\n", "").replace("\t", "").isprintable():
        return document
    return "\n".join(
        line if line.replace("\t", "").isprintable()
        else "".join(ch if ch.isprintable() or ch == "\t" else _json_escape(ch) for ch in line)
        for line in document.split("\n"))


def _json_escape(ch: str) -> str:
    code = ord(ch)
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    code -= 0x10000  # beyond the BMP: a UTF-16 surrogate pair, as JSON writes it
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def _without_secrets(parts: SplitResult) -> str:
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"  # an IPv6 literal keeps its brackets
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = ("***@" if "@" in parts.netloc else "") + host + (f":{port}" if port else "")
    query = "***" if parts.query else ""
    return parts._replace(netloc=netloc, query=query, fragment="").geturl()


def redact_url(url: str) -> str:
    """A URL fit for a log, a message or a ledger entry: user name, password and query string
    (where credentials and signatures travel) replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<url>"
    if not parts.scheme or not parts.netloc:
        return url if "@" not in url and "?" not in url else "<url>"
    return _without_secrets(parts)


_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"`<>]+")


def redact_urls(text: str) -> str:
    """``text`` (an error from a library, say) with every URL in it redacted."""
    return _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)


def url_has_userinfo(url: str) -> bool:
    try:
        return "@" in urlsplit(url).netloc
    except ValueError:
        return "@" in url


def plural(count: int, one: str, many: str | None = None) -> str:
    """A count as people write it: ``1 item``, ``2 items``; ``many`` for a plural that is not
    ``one`` + s (``entries``)."""
    return f"{count} {one if count == 1 else many or one + 's'}"
