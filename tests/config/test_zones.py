"""Zone lookup by name: unknown and malformed names are None, known ones are shared."""

from __future__ import annotations

import pytest

from playbookd.config.zones import zone


def test_known_zone_is_looked_up_once() -> None:
    tokyo = zone("Asia/Tokyo")
    assert tokyo is not None and str(tokyo) == "Asia/Tokyo"
    assert zone("Asia/Tokyo") is tokyo


@pytest.mark.parametrize("name", ["Mars/Olympus", "", "../../etc/passwd", "Europe/", "utc\x00"])
def test_unknown_or_malformed_names_are_none(name: str) -> None:
    assert zone(name) is None
