"""Commands check the catalog's schema against a constant; it must name the newest migration."""

from ingestd.catalog.db import SCHEMA_HEAD, Catalog


def test_schema_head_constant_is_the_newest_migration(tmp_path) -> None:  # type: ignore[no-untyped-def]
    catalog = Catalog(f"sqlite:///{tmp_path / 'c.sqlite'}")
    assert catalog.head_revision() == SCHEMA_HEAD
    assert catalog.current_revision() is None
    catalog.upgrade()
    assert catalog.current_revision() == SCHEMA_HEAD
