"""Which rio-tiler reader reads a mosaic's assets: chosen by the mosaic's `asset_type`, once,
for every entry point (the API, the CLI, the export and `MosaicBackend(uri)`)."""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lambda_handler.mosaic.model import MosaicJSON

# Mosaics whose assets are STAC items (read with a STAC reader and `assets=`).
STAC_ASSET_TYPES = {"stac", "stac-item", "stac_item"}


def is_stac_mosaic(mosaic: "MosaicJSON") -> bool:
    """Whether the mosaic's assets are STAC items."""
    return (mosaic.asset_type or "").lower() in STAC_ASSET_TYPES


def stac_reader() -> type:
    """The reader of STAC-item assets: rio-tiler's STAC reader, fed with the searched items."""
    from lambda_handler.stac.reader import SearchedItemReader

    return SearchedItemReader


def reader_for(mosaic: "MosaicJSON") -> type:
    """The reader of the mosaic's assets: STAC items or COGs (`AssetReader`: errors name the
    asset, extents are remembered to skip assets outside a tile)."""
    if is_stac_mosaic(mosaic):
        return stac_reader()
    # Imported here: reading imports this package's base module.
    from lambda_handler.reading import AssetReader

    return AssetReader
