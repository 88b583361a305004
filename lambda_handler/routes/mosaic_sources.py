"""From a write body to what the store writes: the MosaicJSON document a create/replace body
describes, the footprint features a PATCH body adds.

The MosaicJSON model and builder (morecantile, numpy, shapely) and the STAC client are imported
by the functions that use them, not at startup. The batch jobs run the same functions.
"""

from typing import TYPE_CHECKING, Any

from lambda_handler.api_errors import ApiError
from lambda_handler.errors import InvalidMosaicError
from lambda_handler.routes import limits
from lambda_handler.routes.dependencies import get_tms
from lambda_handler.routes.mosaic_models import MosaicAddition, MosaicSource
from lambda_handler.settings import ApiSettings

if TYPE_CHECKING:
    from lambda_handler.mosaic.model import MosaicJSON


def _stac_document(
    body: MosaicSource, builder_options: dict[str, Any], settings: ApiSettings | None = None
) -> "MosaicJSON":
    # Imported here: only mosaic creation from a STAC search needs the STAC client.
    from lambda_handler.stac.mosaic import EmptySearchError, mosaic_from_search

    if body.minzoom is None or body.maxzoom is None:
        raise ApiError(422, "a mosaic from a STAC search needs minzoom and maxzoom", "minzoom")
    try:
        return mosaic_from_search(
            body.stac_api,
            body.search or {},
            body.minzoom,
            body.maxzoom,
            asset=body.asset,
            seasons=body.seasons,
            max_items=body.max_items or (settings.max_items if settings else None),
            allowed_prefixes=settings.allowed_asset_prefixes if settings else [],
            **builder_options,
        )
    except EmptySearchError as err:
        # The body's 'search' (with its seasons) is what to change: name it in the 422.
        raise ApiError(422, str(err), "search") from err


def build_document(
    body: MosaicSource, name: str, settings: ApiSettings | None = None
) -> "MosaicJSON":
    """The MosaicJSON document a create/replace body describes, within the settings' limits
    (checked before anything is read or built, and on the result: routes/limits.py)."""
    if settings is not None:
        limits.check_source(body, settings)
    document = _build_document(body, name, settings)
    if settings is not None:
        limits.check_document(document, settings)
    return document


def _build_document(body: MosaicSource, name: str, settings: ApiSettings | None) -> "MosaicJSON":
    from lambda_handler.mosaic.builder import from_urls
    from lambda_handler.mosaic.model import MosaicJSON

    options: dict[str, Any] = {
        "name": body.name or name,
        "description": body.description,
        "attribution": body.attribution,
        "quadkey_zoom": body.quadkey_zoom,
    }
    if body.tilematrixset:
        options["tilematrixset"] = get_tms(body.tilematrixset)
    if settings is not None:
        options["max_tiles"] = settings.max_quadkeys
    options = {k: v for k, v in options.items() if v is not None}
    if body.mosaic is not None:
        document = MosaicJSON.parse(body.mosaic, source="request body 'mosaic'")
        return document.model_copy(update={"name": body.name or document.name or name})
    if body.stac_api is not None:
        return _stac_document(body, options, settings)
    return from_urls(body.urls, minzoom=body.minzoom, maxzoom=body.maxzoom, **options)


def addition_features(body: MosaicAddition, backend: Any) -> list[dict[str, Any]]:
    """The footprint features a PATCH body adds (read from its URLs, or given)."""
    if body.urls is not None:
        from lambda_handler.mosaic.builder import get_footprints

        return get_footprints(body.urls, tms=backend.mosaic_tms)
    features = body.features or []
    for index, feature in enumerate(features):
        if not isinstance((feature.get("properties") or {}).get("path"), str):
            raise InvalidMosaicError(f"feature #{index} has no 'properties.path' naming its asset")
    return features
