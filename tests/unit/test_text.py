"""Text checks and URL redaction (ingestd.domain.text): what may be stored, shown and logged."""

from __future__ import annotations

import json
import random

import pytest

from ingestd.domain.text import (
    _json_escape,
    json_printable,
    plural,
    printable,
    redact_url,
    redact_urls,
    text_problem,
    url_has_userinfo,
)


@pytest.mark.parametrize(("url", "shown"), [
    ("http://KEY:SECRET@rgw.example.org:7480/b", "http://***@rgw.example.org:7480/b"),
    ("https://token@rgw.example.org", "https://***@rgw.example.org"),
    ("https://rgw.example.org/?X-Amz-Signature=abc&x=1", "https://rgw.example.org/?***"),
    ("https://rgw.example.org/#frag", "https://rgw.example.org/"),
    ("http://[::1]:9000", "http://[::1]:9000"),
    ("postgresql+psycopg://ingestd:pw@db/ingestd?sslpassword=x",
     "postgresql+psycopg://***@db/ingestd?***"),
    ("sqlite:////var/lib/ingestd/catalog.sqlite", "sqlite:////var/lib/ingestd/catalog.sqlite"),
    ("https://rgw.example.org", "https://rgw.example.org"),
    ("KEY:SECRET@host", "<url>"),
])
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_redact_urls_in_a_library_message() -> None:
    text = ('Could not connect to the endpoint URL: "http://AK:SK@127.0.0.1:9/b?s=1"; '
            "custom endpoint `https://u:p@h/` was not valid")
    out = redact_urls(text)
    assert "SK" not in out and "AK" not in out and "u:p" not in out
    assert '"http://***@127.0.0.1:9/b?***"' in out and "`https://***@h/`" in out


def test_userinfo_is_found() -> None:
    assert url_has_userinfo("http://a:b@h") and url_has_userinfo("http://a@h")
    assert not url_has_userinfo("http://h/a@b")


@pytest.mark.parametrize(("value", "why"), [
    ("", "must not be empty"),
    ("   ", "must not be empty"),
    ("x" * 11, "11 characters long; at most 10"),
    ("a\x1bb", "U+001B"),
    ("a\x00", "U+0000"),
    ("a\rb", "U+000D"),
    ("a\x07", "U+0007"),
    ("a\x7f", "U+007F"),
    ("a\x9b", "U+009B"),
    ("a\u202eb", "U+202E"),
    ("a\u200bb", "U+200B"),
    ("a\u2028b", "U+2028"),
    ("a\udcffb", "U+DCFF"),
])
def test_text_problems_name_the_field(value: str, why: str) -> None:
    problem = text_problem("--party", value, limit=10)
    assert problem is not None and problem.startswith("--party ") and why in problem


@pytest.mark.parametrize("value", ["张三", "C-2026/001", "O'Brien", "x" * 10, "Zoë Ünal"])
def test_ordinary_text_passes(value: str) -> None:
    assert text_problem("--party", value, limit=10) is None


def test_printable_escapes_what_a_terminal_acts_on() -> None:
    assert printable("ok 张三") == "ok 张三"
    assert printable("a\x1b[2Jb\r\n\u202e") == "a\\x1b[2Jb\\r\\n\\u202e"
    assert printable("\udcff").isprintable()


def test_json_printable_keeps_the_values() -> None:
    data = {"serial": "A\x1b\u009b\u202e\u2028\U000e0001", "party": "张三"}
    out = json_printable(json.dumps(data, indent=2, ensure_ascii=False))
    assert json.loads(out) == data
    assert "张三" in out
    assert all(ch.isprintable() or ch == "\n" for ch in out)


def test_json_printable_escapes_exactly_what_a_terminal_would_act_on() -> None:
    """Against the rule itself, character by character, on documents mixing printable text,
    newlines, tabs, C1 controls, bidi overrides, separators, astral and unassigned code
    points, in long and short lines."""
    rng = random.Random(7)
    pool = ["a", "张", " ", "\n", "\t", "\u009b", "\u202e", "\u2028", "\u00ad", "\U000e0001",
            "\U0001f693", "\ufeff", "\u0378", "\"", "{"]

    def by_the_rule(document: str) -> str:
        return "".join(ch if ch.isprintable() or ch in "\n\t" else _json_escape(ch)
                       for ch in document)

    for _ in range(300):
        document = "".join(rng.choice(pool) * rng.randint(1, 30)
                           for _ in range(rng.randint(0, 40)))
        assert json_printable(document) == by_the_rule(document), repr(document)
    clean = json.dumps({"items": [{"name": "张三", "n": i} for i in range(100)]}, indent=2,
                       ensure_ascii=False)
    assert json_printable(clean) is clean, "a clean document is returned as it is"


def test_counts_are_written_in_good_grammar() -> None:
    assert plural(1, "recorder") == "1 recorder"
    assert plural(0, "recorder") == "0 recorders"
    assert plural(2, "entry", "entries") == "2 entries"
    assert plural(1, "entry", "entries") == "1 entry"
