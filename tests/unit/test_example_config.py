"""config/ingestd.toml is the documentation of every key: it must load, and name them all."""

import re
from pathlib import Path

import msgspec

from ingestd import config

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "ingestd.toml"


def _keys(model: type[msgspec.Struct], prefix: str = "") -> set[str]:
    """Every leaf key, with its section, as written in the file: ``windows.ingest``,
    ``station``, ``alerts.from``."""
    out = set()
    for field in msgspec.structs.fields(model):
        if isinstance(field.type, type) and issubclass(field.type, msgspec.Struct):
            out |= _keys(field.type, f"{prefix}{field.encode_name}.")
        else:
            out.add(prefix + field.encode_name)
    return out


def test_the_example_configuration_loads_with_the_documented_defaults() -> None:
    settings = config.load(EXAMPLE)
    defaults = config.from_mapping({}, home=EXAMPLE.parent)
    assert msgspec.structs.replace(settings, home=defaults.home) == defaults


def test_every_key_is_documented_in_the_example() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    written = set(re.findall(r"^#?\s*([a-z_]+)\s*=", text, flags=re.MULTILINE))
    sections = set(re.findall(r"^#?\s*\[\[?([a-z_]+)\]\]?", text, flags=re.MULTILINE))
    keys = (_keys(config.Settings) - {"targets", "home", "alerts"}) | _keys(
        config.S3TargetSettings, "targets.") | _keys(config.DirectoryTargetSettings, "targets.")
    keys |= _keys(config.WebhookChannelSettings, "alerts.") | _keys(
        config.SmtpChannelSettings, "alerts.")
    keys |= {"targets.type", "alerts.type"}  # the tag that says which settings a table takes
    assert "windows.ingest" in keys and "targets.bucket" in keys
    assert "home" in written  # documented, commented out: it defaults to the file's folder
    for key in keys:
        *section, name = key.split(".")
        assert name in written, f"{key} is not documented in {EXAMPLE}"
        if section:
            assert section[0] in sections, f"[{section[0]}] is not documented in {EXAMPLE}"
