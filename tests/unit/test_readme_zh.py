"""The operators' README in Chinese keeps in step with the English one: every command line the
English README shows in a code block (``ingestd ...``, ``scripts/...``) is in a code block of
``README.zh-CN.md`` too, word for word."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def commands(markdown: str) -> list[str]:
    """The command lines of the fenced code blocks: comments and a leading ``sudo`` taken
    off, runs of spaces made one."""
    found = []
    for block in re.findall(r"^```[^\n]*\n(.*?)^```", markdown, flags=re.MULTILINE | re.DOTALL):
        for line in block.splitlines():
            command = re.split(r"\s#\s", f" {line.strip()} ", maxsplit=1)[0].strip()
            command = re.sub(r"^sudo\s+", "", command)
            if re.match(r"(\./)?(ingestd|scripts/)", command):
                found.append(" ".join(command.split()))
    return found


def test_every_command_of_the_english_readme_is_in_the_chinese_one() -> None:
    english = commands((ROOT / "README.md").read_text(encoding="utf-8"))
    chinese = set(commands((ROOT / "README.zh-CN.md").read_text(encoding="utf-8")))
    assert len(english) >= 20, english  # the check reads the blocks it means to
    missing = [c for c in english if c not in chinese]
    assert not missing, f"README.zh-CN.md lacks: {missing}"


def test_the_check_finds_commands_and_ignores_comments_and_prose() -> None:
    text = ("Run `ingestd status`.\n\n```sh\nsudo scripts/setup    # the venv\n"
            "ingestd --home .home  items --since 2026-11-01   # 从 11 月 1 日起\n"
            "journalctl -u ingestd -f\n./scripts/run --once\n```\n")
    assert commands(text) == ["scripts/setup", "ingestd --home .home items --since 2026-11-01",
                              "./scripts/run --once"]
