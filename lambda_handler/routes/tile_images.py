"""What the map-tile routes need besides the mosaic: their parameters' variants, their
documented answers and the bounds of their asset reads."""

import functools
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Request
from pydantic import Field

from lambda_handler.deadline import DEADLINE_KEY
from lambda_handler.rendering import ImageFormat
from lambda_handler.settings import ApiSettings
from lambda_handler.tile_pipeline import TileOptions

if TYPE_CHECKING:
    from lambda_handler.reading import ReadGuard
    from lambda_handler.routes.dependencies import (
        DatasetParams,
        LayerParams,
        RenderParams,
        TileParams,
    )

IMAGE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {fmt.media_type: {} for fmt in ImageFormat},
        "description": "The tile.",
    },
    204: {"description": "No asset has data for this tile."},
    304: {"description": "Not modified (If-None-Match)."},
    404: {"description": "Unknown mosaic, or tile outside the mosaic, its zooms or the TMS."},
    424: {"description": "An asset could not be read (named in the message)."},
}
# Path parameters in some variants of the tile route, query parameters in the others.
ScaleField = Annotated[int, Field(ge=1, le=4, description="Tile scale (@2x = 512px).")]
FormatField = Annotated[ImageFormat | None, Field(description="Output format.")]


def format_required(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    """`endpoint` with `format` typed as a required ImageFormat: in a path (`….{format}`) the
    optional query parameter's `null` would be a lie in the OpenAPI document."""
    signature = inspect.signature(endpoint)
    parameters = [
        param.replace(
            kind=inspect.Parameter.KEYWORD_ONLY,
            **(
                {"annotation": ImageFormat, "default": inspect.Parameter.empty}
                if param.name == "format"
                else {}
            ),
        )
        for param in signature.parameters.values()
    ]

    @functools.wraps(endpoint)
    def wrapped(**kwargs: Any) -> Any:
        return endpoint(**kwargs)

    wrapped.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    return wrapped


def read_guard(request: Request, settings: ApiSettings) -> "ReadGuard":
    """The bounds of this request's asset reads (allow-list, GDAL timeouts, deadline)."""
    from lambda_handler.app import asset_gdal_options
    from lambda_handler.reading import ReadGuard

    return ReadGuard(
        allowed_prefixes=settings.allowed_asset_prefixes,
        gdal_options=asset_gdal_options(settings),
        deadline=request.scope.get(DEADLINE_KEY),
        max_expression_length=settings.max_expression_length,
    )


def tile_options(
    layer: "LayerParams",
    dataset: "DatasetParams",
    tile: "TileParams",
    render: "RenderParams",
    pixel_selection: str,
) -> TileOptions:
    """The tile pipeline's options from the route's parsed query parameters (the same object
    the export builds, so both read and adjust a tile alike)."""
    return TileOptions(
        assets=tuple(layer.assets or ()),
        bidx=tuple(layer.indexes or ()),
        expression=layer.expression,
        pixel_selection=pixel_selection,
        nodata=dataset.nodata_value,
        unscale=dataset.unscale,
        resampling=dataset.resampling_method,
        reproject=dataset.reproject_method,
        buffer=tile.buffer,
        padding=tile.padding,
        rescale=tuple(render.ranges or ()),
        color_formula=render.color_formula,
    )
