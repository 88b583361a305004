"""Overviews: the assets of a low-zoom tile in one item instead of thousands of quadkeys.

A tile far below the quadkey zoom covers thousands of quadkeys, too many for one request. So
for every prefix zoom at least `OVERVIEW_DEPTH` levels below the quadkey zoom, down to the
mosaic's minzoom, the writer stores the prefix's assets (its children's in quadkey order,
first occurrence kept: exactly what the Query answers) as one item of the partition
`{mosaic}#overview`, sort key `z{zoom}:{prefix}`, with the same two slots as tile items (the
marker OVERSIZE when they exceed the slot limit). The metadata item describes them
(`_overviews`: zooms and a fingerprint of the other metadata values); readers use overviews only
when the fingerprint matches, so a mosaic rewritten by a tool that does not know them falls back
to the Query. The overview partition has no `-1` item, so table listings never show it.
"""

import itertools
from collections.abc import Iterable, Sequence
from typing import Any

from lambda_handler.backends.dynamodb.records import (
    OVERSIZE,
    OVERVIEW_SUFFIX,
    OVERVIEWS_ATTR,
    SLOT_LIMIT,
    Overview,
    metadata_fingerprint,
    tile_item_size,
)
from lambda_handler.mosaic.model import MosaicJSON

OVERVIEW_FORMAT = 2
# Overviews for prefixes this many zooms above the quadkey zoom and more (64+ children): one or
# two levels above, the Query returns at most 16 items and stays cheap.
OVERVIEW_DEPTH = 3


def overview_key(prefix: str) -> str:
    """Sort key of a prefix's overview item (zoom 0's prefix is empty, keys cannot be)."""
    return f"z{len(prefix)}:{prefix}"


def union_assets(lists: Iterable[Sequence[str]]) -> list[str]:
    """Concatenation without duplicates, first occurrence kept (the Query path's order)."""
    return list(dict.fromkeys(itertools.chain.from_iterable(lists)))


class OverviewBuilder:
    """Computes a mosaic's overview assets from tile assets, bottom-up, guarding the slot size.

    Overview zooms: from the mosaic's minzoom (`top`) to `OVERVIEW_DEPTH` zooms above its
    quadkey zoom (`bottom`); none when that range is empty.
    """

    def __init__(self, mosaic_name: str, document: MosaicJSON):
        self.partition = mosaic_name + OVERVIEW_SUFFIX
        self.quadkey_zoom = document.index_zoom
        self.bottom = self.quadkey_zoom - OVERVIEW_DEPTH
        self.top = max(0, document.minzoom)
        self.zooms = frozenset(range(self.top, self.bottom + 1))

    def fit(self, prefix: str, assets: Overview) -> Overview:
        """`assets`, or OVERSIZE when they would not fit in one slot."""
        if assets is OVERSIZE:
            return OVERSIZE
        if tile_item_size(self.partition, overview_key(prefix), assets) > SLOT_LIMIT:
            return OVERSIZE
        return assets

    def bottom_level(self, tiles: dict[str, list[str]]) -> dict[str, Overview]:
        """Overviews at the bottom zoom of the prefixes holding `tiles` (every child of each
        of those prefixes must be in `tiles`)."""
        groups: dict[str, list[list[str]]] = {}
        for quadkey in sorted(tiles):
            groups.setdefault(quadkey[: self.bottom], []).append(tiles[quadkey])
        return {prefix: self.fit(prefix, union_assets(lists)) for prefix, lists in groups.items()}

    def upward(
        self, level: dict[str, Overview], known: dict[str, Overview] | None = None
    ) -> dict[str, Overview]:
        """`level` (bottom-zoom overviews) and the overviews of all their ancestors, each from
        its four children: those computed here, else `known` (stored items); a child in
        neither has no tiles. An ancestor of an oversized prefix is oversized too."""
        known = known or {}
        result = dict(level)
        for zoom in range(self.bottom - 1, self.top - 1, -1):
            parents = sorted({prefix[:zoom] for prefix in level})
            upper: dict[str, Overview] = {}
            for parent in parents:
                children = [parent + digit for digit in "0123"]
                parts = [level[c] if c in level else known.get(c, []) for c in children]
                if any(part is OVERSIZE for part in parts):
                    upper[parent] = OVERSIZE
                else:
                    upper[parent] = self.fit(parent, union_assets(parts))  # type: ignore[arg-type]
            result.update(upper)
            level = upper
        return result

    def build(self, tiles: dict[str, list[str]]) -> dict[str, Overview]:
        """Every overview of a whole mosaic's tiles (none without overview zooms)."""
        if not self.zooms:
            return {}
        return self.upward(self.bottom_level(tiles))

    def affected_prefixes(self, level: Iterable[str]) -> set[str]:
        """The overview prefixes an update of the bottom-zoom prefixes `level` reads: those
        prefixes, their ancestors and the siblings every ancestor is computed from."""
        wanted: set[str] = set(level)
        for zoom in range(self.top, self.bottom):
            for parent in {prefix[:zoom] for prefix in level}:
                wanted.update(parent + d for d in "0123")
                wanted.add(parent)
        return wanted

    def description(self, fingerprint: str) -> dict[str, Any]:
        """The metadata item's `_overviews` attribute: which zooms have overviews, for which
        metadata values."""
        return {
            "M": {
                "format": {"N": str(OVERVIEW_FORMAT)},
                "fingerprint": {"S": fingerprint},
                "quadkey_zoom": {"N": str(self.quadkey_zoom)},
                "minzoom": {"N": str(self.top)},
                "maxzoom": {"N": str(self.bottom)},
            }
        }


def trusted_zooms(metadata: dict[str, Any], quadkey_zoom: int) -> frozenset[int]:
    """The overview zooms the metadata item vouches for (its values unchanged since)."""
    try:
        info = metadata[OVERVIEWS_ATTR]["M"]
        if (
            int(info["format"]["N"]) != OVERVIEW_FORMAT
            or info["fingerprint"]["S"] != metadata_fingerprint(metadata)
            or int(info["quadkey_zoom"]["N"]) != quadkey_zoom
        ):
            return frozenset()
        return frozenset(range(int(info["minzoom"]["N"]), int(info["maxzoom"]["N"]) + 1))
    except (KeyError, ValueError, TypeError):
        return frozenset()  # none, or a description this version does not understand
