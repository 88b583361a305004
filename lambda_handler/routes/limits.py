"""Limits of the write routes, checked before any work: how much a request may ask the server
to build, and which assets a mosaic may name.

A writer could ask for `quadkey_zoom` 30 (an index build of many GB), a zoom span the stores
multiply into overviews, or 100,000 URLs for the server to open; and could store assets
anywhere GDAL reaches (instance metadata, local files), which every anonymous tile request
would then fetch. Each limit is a setting (`MOSAIC_API_MAX_*`, `MOSAIC_API_ALLOWED_ASSET_PREFIXES`);
going beyond is a 422 naming the field.
"""

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from lambda_handler.api_errors import ApiError
from lambda_handler.settings import ApiSettings
from lambda_handler.url_policy import UrlNotAllowed, check_url

if TYPE_CHECKING:
    from lambda_handler.mosaic.model import MosaicJSON

ASSET_SETTING = "MOSAIC_API_ALLOWED_ASSET_PREFIXES"


def check_assets(assets: Iterable[str], settings: ApiSettings, field: str = "urls") -> None:
    """422 naming the first asset outside the allow-list (or of a form always refused)."""
    for asset in assets:
        try:
            check_url(asset, settings.allowed_asset_prefixes, "asset", ASSET_SETTING)
        except UrlNotAllowed as err:
            raise ApiError(422, f"{field}: {err}", field=field) from err


def check_stac_api(url: str, settings: ApiSettings) -> None:
    """422 unless the STAC API URL passes the asset allow-list (its items become assets)."""
    try:
        check_url(url, settings.allowed_asset_prefixes, "STAC API", ASSET_SETTING)
    except UrlNotAllowed as err:
        raise ApiError(422, f"stac_api: {err}", field="stac_api") from err


def check_count(field: str, count: int, settings: ApiSettings) -> None:
    """422 when a request lists more datasets than MOSAIC_API_MAX_ITEMS."""
    if count > settings.max_items:
        raise ApiError(
            422,
            f"{field}: {count} datasets, more than {settings.max_items} (MOSAIC_API_MAX_ITEMS)",
            field=field,
        )


def check_zooms(
    settings: ApiSettings,
    minzoom: int | None,
    maxzoom: int | None,
    quadkey_zoom: int | None,
) -> None:
    """422 when the zooms ask for more index work than the settings allow."""
    if quadkey_zoom is not None and quadkey_zoom > settings.max_quadkey_zoom:
        raise ApiError(
            422,
            f"quadkey_zoom: {quadkey_zoom} is above {settings.max_quadkey_zoom} "
            "(MOSAIC_API_MAX_QUADKEY_ZOOM)",
            field="quadkey_zoom",
        )
    if minzoom is None:
        return
    for name, zoom in (("maxzoom", maxzoom), ("quadkey_zoom", quadkey_zoom)):
        if zoom is not None and zoom - minzoom > settings.max_zoom_span:
            raise ApiError(
                422,
                f"{name}: {name} - minzoom is {zoom - minzoom}, more than "
                f"{settings.max_zoom_span} (MOSAIC_API_MAX_ZOOM_SPAN)",
                field=name,
            )
    if quadkey_zoom is None and minzoom > settings.max_quadkey_zoom:
        # quadkey_zoom defaults to minzoom
        raise ApiError(
            422,
            f"minzoom: {minzoom} would be the quadkey zoom, above {settings.max_quadkey_zoom} "
            "(MOSAIC_API_MAX_QUADKEY_ZOOM): set a lower quadkey_zoom",
            field="minzoom",
        )


def check_source(body: Any, settings: ApiSettings) -> None:
    """Every limit a create/replace body can be checked against before anything is built."""
    check_zooms(settings, body.minzoom, body.maxzoom, body.quadkey_zoom)
    if body.urls is not None:
        check_count("urls", len(body.urls), settings)
        check_assets(body.urls, settings)
    if body.stac_api is not None:
        check_stac_api(body.stac_api, settings)
        if body.max_items is not None:
            check_count("max_items", body.max_items, settings)
    if body.mosaic is not None:
        tiles = body.mosaic.get("tiles")
        if isinstance(tiles, dict) and len(tiles) > settings.max_quadkeys:
            raise ApiError(
                422,
                f"mosaic: {len(tiles)} quadkeys, more than {settings.max_quadkeys} "
                "(MOSAIC_API_MAX_QUADKEYS)",
                field="mosaic",
            )


def check_document(document: "MosaicJSON", settings: ApiSettings) -> None:
    """The limits of a built or given document: zooms and every asset it names."""
    check_zooms(settings, document.minzoom, document.maxzoom, document.quadkey_zoom)
    prefix = document.asset_prefix or ""
    seen: set[str] = set()
    for assets in document.tiles.values():
        for asset in assets:
            if asset not in seen:
                seen.add(asset)
                check_assets([prefix + asset], settings, field="mosaic")


def check_addition(body: Any, settings: ApiSettings) -> None:
    """The limits of a PATCH body (URLs or features to add), before any footprint is read."""
    if body.urls is not None:
        check_count("urls", len(body.urls), settings)
        check_assets(body.urls, settings)
    if body.features is not None:
        check_count("features", len(body.features), settings)
        paths = [(f.get("properties") or {}).get("path") for f in body.features]
        check_assets([p for p in paths if isinstance(p, str)], settings, field="features")
