"""The `seasons` filter of STAC-built mosaics: keep items whose datetime falls in given seasons."""

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any, Literal

Season = Literal["spring", "summer", "autumn", "winter"]
# Meteorological seasons of the northern hemisphere (awspds-mosaic's `seasons` filter).
SEASON_MONTHS: dict[str, set[int]] = {
    "spring": {3, 4, 5},
    "summer": {6, 7, 8},
    "autumn": {9, 10, 11},
    "winter": {12, 1, 2},
}


def in_seasons(item: dict[str, Any], seasons: Iterable[str]) -> bool:
    """Whether the item's `datetime` (else `start_datetime`) falls in one of `seasons`.

    An item without a parsable timestamp is in no season.
    """
    props = item.get("properties") or {}
    stamp = props.get("datetime") or props.get("start_datetime")
    if not isinstance(stamp, str):
        return False
    try:
        month = dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).month
    except ValueError:
        return False
    return any(month in SEASON_MONTHS[season] for season in seasons)


def filter_seasons(
    items: Sequence[dict[str, Any]], seasons: Sequence[str] | None
) -> Sequence[dict[str, Any]]:
    """The items in one of `seasons` (all of them when no season is given)."""
    if not seasons:
        return items
    return [item for item in items if in_seasons(item, seasons)]
