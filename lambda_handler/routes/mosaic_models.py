"""Request bodies of the management routes: what a mosaic is made of, and what is added to it.

Light on purpose (pydantic only): the batch jobs validate stored bodies with the same models.
"""

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from lambda_handler.rendering import ImageFormat
from lambda_handler.routes.common import MOSAIC_ID_PATTERN
from lambda_handler.routes.dependencies import TileMatrixSetId
from lambda_handler.stac.seasons import Season


class MosaicOptions(BaseModel):
    """Options shared by every way of creating a mosaic."""

    minzoom: int | None = Field(None, ge=0, le=30, description="Minimum zoom of the mosaic.")
    maxzoom: int | None = Field(None, ge=0, le=30, description="Maximum zoom of the mosaic.")
    quadkey_zoom: int | None = Field(None, ge=0, le=30, description="Zoom of the quadkey index.")
    tilematrixset: TileMatrixSetId | None = Field(None, description="TMS of the index.")
    name: str | None = Field(None, max_length=1000)
    description: str | None = Field(None, max_length=10000)
    attribution: str | None = Field(None, max_length=10000)
    tile_format: ImageFormat | None = Field(None, description="Format in the returned tile URL.")
    tile_scale: int = Field(1, ge=1, le=4, description="Scale in the returned tile URL.")


class MosaicSource(MosaicOptions):
    """What a mosaic is made of: exactly one of `urls`, `stac_api` (+ `search`) or `mosaic`."""

    urls: list[str] | None = Field(
        None, min_length=1, max_length=10000, description="COG URLs or paths."
    )
    stac_api: str | None = Field(
        None, description="STAC API search endpoint, e.g. https://host/search."
    )
    search: dict[str, Any] | None = Field(
        None, description="STAC search body: collections, bbox/intersects, datetime, query…"
    )
    seasons: list[Season] | None = Field(
        None, description="Keep STAC items whose datetime falls in these seasons."
    )
    asset: str | None = Field(
        None, description="STAC asset whose href is indexed (default: the item URL)."
    )
    max_items: int | None = Field(None, ge=1, le=100000, description="Cap of STAC items.")
    mosaic: dict[str, Any] | None = Field(None, description="A whole MosaicJSON document.")

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="after")
    def _one_source(self) -> "MosaicSource":
        given = [k for k in ("urls", "stac_api", "mosaic") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of 'urls', 'stac_api' or 'mosaic'"
                + (f" (got {', '.join(given)})" if given else "")
            )
        if self.stac_api is None and (self.search or self.seasons or self.asset):
            raise ValueError("'search', 'seasons' and 'asset' go with 'stac_api'")
        if self.stac_api is not None and not self.stac_api.startswith(("http://", "https://")):
            raise ValueError("'stac_api' must be an http(s) URL")
        return self


class MosaicCreate(MosaicSource):
    """Body of `POST /mosaics`."""

    id: str = Field(
        ...,
        description="Mosaic id: letters, digits, '-', '_', '.' (not first, never '..').",
        pattern=MOSAIC_ID_PATTERN,
        max_length=255,
    )


class MosaicAddition(BaseModel):
    """Body of `PATCH /mosaics/{mosaic_id}`: datasets to add."""

    urls: list[str] | None = Field(None, min_length=1, max_length=10000)
    features: list[dict[str, Any]] | None = Field(
        None, min_length=1, description="GeoJSON features with the asset in properties.path."
    )
    add_first: bool = Field(True, description="Put the new assets before the existing ones.")

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="after")
    def _one_source(self) -> "MosaicAddition":
        if (self.urls is None) == (self.features is None):
            raise ValueError("give exactly one of 'urls' or 'features'")
        return self
