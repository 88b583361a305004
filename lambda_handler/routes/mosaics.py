"""Mosaic management: list, create (COG URLs, STAC search or document), replace, add, delete.

The MosaicJSON model and builder (morecantile, numpy, shapely) are imported by the routes that
build or parse documents, not at startup.
"""

import uuid
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.responses import Response

from lambda_handler.api_errors import WRITE_RESPONSES, ApiError, ErrorMappingRoute
from lambda_handler.backends import MosaicBackend
from lambda_handler.errors import InvalidMosaicError
from lambda_handler.rendering import ImageFormat
from lambda_handler.routes import limits
from lambda_handler.routes.common import (
    MOSAIC_ID_PATTERN,
    MosaicIdPath,
    mosaic_etag,
    open_backend,
    uri_for_id,
)
from lambda_handler.routes.dependencies import TileMatrixSetId, get_settings, get_tms
from lambda_handler.routes.security import require_write_access
from lambda_handler.routes.write_locks import if_match_precondition, mosaic_write_lock
from lambda_handler.settings import ApiSettings
from lambda_handler.stac.seasons import Season

if TYPE_CHECKING:
    from lambda_handler.mosaic.model import MosaicJSON

NO_STORE = {"Cache-Control": "no-store"}


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


# ---------------------------------------------------------------------------- building
def _stac_document(
    body: MosaicSource, builder_options: dict[str, Any], settings: ApiSettings | None = None
) -> "MosaicJSON":
    # Imported here: only mosaic creation from a STAC search needs the STAC client.
    from lambda_handler.stac.mosaic import mosaic_from_search

    if body.minzoom is None or body.maxzoom is None:
        raise ApiError(422, "a mosaic from a STAC search needs minzoom and maxzoom", "minzoom")
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


def _needs_job(settings: ApiSettings, quadkeys: int) -> bool:
    limit = settings.sync_write_max_quadkeys
    return limit is not None and quadkeys > limit


def _job_answer(
    request: Request,
    settings: ApiSettings,
    operation: str,
    mosaic_id: str,
    body: BaseModel,
    quadkeys: int,
    document: Any = None,
) -> JSONResponse:
    """Hand a write too large for the request to a job: 202 with the job's status URL."""
    from lambda_handler import jobs

    try:
        job = jobs.submit(
            settings,
            operation,
            mosaic_id,
            body.model_dump(mode="json", exclude_none=True),
            quadkeys,
            document=document,
            if_match=request.headers.get("if-match"),
            path=request.url.path,
        )
    except (jobs.JobTooLargeError, jobs.JobsUnavailableError) as err:
        raise ApiError(413, str(err)) from err
    url = str(request.url_for("job_status", job_id=job["id"]))
    content = {**job, "links": {"status": url}}
    return JSONResponse(content, status_code=202, headers={**NO_STORE, "Location": url})


def _mosaic_links(request: Request, mosaic_id: str) -> dict[str, str]:
    return {
        "self": str(request.url_for("id:metadata", mosaic_id=mosaic_id)),
        "tilejson": str(request.url_for("id:tilejson", mosaic_id=mosaic_id)),
        "map": str(request.url_for("id:map", mosaic_id=mosaic_id)),
    }


def _token_page(request: Request, size: int, ids: list[str], token: str | None) -> JSONResponse:
    """A listing page of a store paged by continuation token."""
    base = str(request.url_for("list_mosaics"))
    links = []
    if token is not None:
        links.append(
            {"rel": "next", "href": base + "?" + urlencode({"limit": size, "token": token})}
        )
    content = {
        "mosaics": [{"id": i, "links": _mosaic_links(request, i)} for i in ids],
        "numberReturned": len(ids),
        "links": links,
    }
    return JSONResponse(content, headers={"Cache-Control": "no-cache"})


# ---------------------------------------------------------------------------- routes
def mosaics_router() -> APIRouter:  # noqa: C901
    """`/mosaics` management routes."""
    router = APIRouter(
        prefix="/mosaics",
        tags=["Mosaics"],
        route_class=ErrorMappingRoute,
        responses=WRITE_RESPONSES,
    )
    Settings = Annotated[ApiSettings, Depends(get_settings)]
    writes = [Depends(require_write_access)]

    def tilejson_url(request: Request, mosaic_id: str, body: MosaicOptions) -> str:
        url = str(request.url_for("id:tilejson", mosaic_id=mosaic_id))
        query = {"tile_scale": body.tile_scale}
        if body.tile_format:
            query["tile_format"] = body.tile_format.value
        return url + "?" + urlencode(query)

    def created_answer(
        request: Request, mosaic_id: str, document: "MosaicJSON", body: MosaicOptions, status: int
    ) -> JSONResponse:
        """The TileJSON of the stored mosaic (tile URL with tile_format/tile_scale)."""
        tms_id = document.tms.id
        params: dict[str, Any] = {"mosaic_id": mosaic_id, "tileMatrixSetId": tms_id}
        kind = "tile"
        for key in ("z", "x", "y"):
            params[key] = "{" + key + "}"
        if body.tile_scale > 1:
            kind += "_scale"
            params["scale"] = body.tile_scale
        if body.tile_format:
            kind += "_format"
            params["format"] = body.tile_format.value
        west, south, east, north = document.bounds
        content = {
            "tilejson": "3.0.0",
            "id": mosaic_id,
            "name": document.name or mosaic_id,
            "version": document.version,
            "scheme": "xyz",
            "tiles": [str(request.url_for(f"id:{kind}", **params))],
            "minzoom": document.minzoom,
            "maxzoom": document.maxzoom,
            "bounds": [west, south, east, north],
            "center": [(west + east) / 2, (south + north) / 2, document.minzoom],
            "links": {
                "self": str(request.url_for("id:metadata", mosaic_id=mosaic_id)),
                "tilejson": tilejson_url(request, mosaic_id, body),
                "map": str(request.url_for("id:map", mosaic_id=mosaic_id)),
            },
        }
        headers = {**NO_STORE, "Location": content["links"]["self"]}
        return JSONResponse(content, status_code=status, headers=headers)

    @router.get("", summary="List mosaics")
    def list_mosaics(
        request: Request,
        settings: Settings,
        limit: Annotated[int | None, Query(ge=1, description="Page size.")] = None,
        offset: Annotated[int, Query(ge=0, description="Mosaics to skip.")] = 0,
        token: Annotated[
            str | None,
            Query(max_length=1000, description="Continuation token of a paged store (`next`)."),
        ] = None,
    ) -> JSONResponse:
        """Ids of the stored mosaics, a page at a time (`next`/`prev` links). DynamoDB stores
        are paged with a continuation token (each page costs the same on any table; a page may
        hold fewer ids than `limit`, and there is no total)."""
        size = min(limit or settings.default_page_size, settings.max_page_size)
        from lambda_handler.stores import list_mosaic_ids, list_mosaic_page

        try:
            paged = list_mosaic_page(settings.mosaic_uri_template, size, token)
        except InvalidMosaicError as err:
            raise ApiError(422, str(err), "token") from err
        if paged is not None:
            return _token_page(request, size, *paged)
        ids = list_mosaic_ids(settings.mosaic_uri_template)
        page = ids[offset : offset + size]
        base = str(request.url_for("list_mosaics"))
        links = []
        if offset + size < len(ids):
            links.append(
                {
                    "rel": "next",
                    "href": base + "?" + urlencode({"limit": size, "offset": offset + size}),
                }
            )
        if offset > 0:
            prev = max(0, offset - size)
            links.append(
                {"rel": "prev", "href": base + "?" + urlencode({"limit": size, "offset": prev})}
            )
        content = {
            "mosaics": [
                {
                    "id": mosaic_id,
                    "links": {
                        "self": str(request.url_for("id:metadata", mosaic_id=mosaic_id)),
                        "tilejson": str(request.url_for("id:tilejson", mosaic_id=mosaic_id)),
                        "map": str(request.url_for("id:map", mosaic_id=mosaic_id)),
                    },
                }
                for mosaic_id in page
            ],
            "numberMatched": len(ids),
            "numberReturned": len(page),
            "links": links,
        }
        return JSONResponse(content, headers={"Cache-Control": "no-cache"})

    @router.post("", status_code=201, dependencies=writes, summary="Create a mosaic")
    def create_mosaic(request: Request, settings: Settings, body: MosaicCreate) -> JSONResponse:
        """Create a mosaic from COG URLs, a STAC search or a MosaicJSON document (409 if the
        id is taken); answers its TileJSON."""
        uri = uri_for_id(body.id, settings)
        document = build_document(body, body.id, settings)
        if _needs_job(settings, len(document.tiles)):
            return _job_answer(
                request, settings, "create", body.id, body, len(document.tiles), document
            )
        backend = MosaicBackend(uri, mosaic_def=document)
        try:
            with mosaic_write_lock(uri):
                backend.write(overwrite=False)
        finally:
            backend.close()
        answer = created_answer(request, body.id, document, body, 201)
        # The ETag GET of the new mosaic (its Location) answers: usable with If-Match at once.
        location = urlsplit(answer.headers["Location"]).path
        answer.headers["ETag"] = mosaic_etag(uri, backend.revision, location)
        return answer

    @router.put("/{mosaic_id}", dependencies=writes, summary="Replace a mosaic")
    def replace_mosaic(
        request: Request, settings: Settings, mosaic_id: MosaicIdPath, body: MosaicSource
    ) -> JSONResponse:
        """Replace an existing mosaic (404 if there is none) in one write; with `If-Match`,
        only if the mosaic still has that ETag (412 otherwise)."""
        uri = uri_for_id(mosaic_id, settings)
        with open_backend(uri):
            pass  # 404 when missing (before building): PUT replaces, POST creates
        document = build_document(body, mosaic_id, settings)
        if _needs_job(settings, len(document.tiles)):
            return _job_answer(
                request, settings, "replace", mosaic_id, body, len(document.tiles), document
            )
        precondition = if_match_precondition(request, uri)
        with mosaic_write_lock(uri), open_backend(uri) as backend:
            backend.replace(document, precondition=precondition)
            etag = mosaic_etag(uri, backend.revision, request.url.path)
        answer = created_answer(request, mosaic_id, document, body, 200)
        answer.headers["ETag"] = etag
        return answer

    @router.patch("/{mosaic_id}", dependencies=writes, summary="Add datasets to a mosaic")
    def update_mosaic(
        request: Request, settings: Settings, mosaic_id: MosaicIdPath, body: MosaicAddition
    ) -> JSONResponse:
        """Add datasets (COG URLs or footprint features); bumps the mosaic version. Concurrent
        additions are all applied (409 only for a writer refused after the store's retries);
        with `If-Match`, only if the mosaic still has that ETag (412 otherwise)."""
        uri = uri_for_id(mosaic_id, settings)
        precondition = if_match_precondition(request, uri)
        limits.check_addition(body, settings)
        with open_backend(uri) as backend:
            features = addition_features(body, backend)
            # Indexed once: sizes the write here and is merged by the update below.
            addition = backend.addition_index(features)
            # Additions over MOSAIC_API_SYNC_WRITE_MAX_QUADKEYS quadkeys run as a job (202).
            if settings.sync_write_max_quadkeys is not None:
                planned = len(addition.tiles)
                if _needs_job(settings, planned):
                    if body.urls is not None:  # footprints already read: the job needs not
                        body = MosaicAddition(features=features, add_first=body.add_first)
                    return _job_answer(request, settings, "update", mosaic_id, body, planned)
            # Footprints are read above, outside the lock; the merge happens on a fresh read.
            with mosaic_write_lock(uri):
                backend.update(
                    features,
                    add_first=body.add_first,
                    precondition=precondition,
                    addition=addition,
                )
            content = backend.mosaic_def.metadata()
            etag = mosaic_etag(uri, backend.revision, request.url.path)
        return JSONResponse(content, headers={**NO_STORE, "ETag": etag})

    @router.get(
        "/jobs/{job_id:uuid}", name="job_status", dependencies=writes, summary="Write job status"
    )
    def job_status(settings: Settings, job_id: uuid.UUID) -> JSONResponse:
        """Status of an asynchronous write: pending, running, succeeded (with the mosaic's
        version) or failed (with the status code and message of the error)."""
        from lambda_handler import jobs

        return JSONResponse(jobs.job_status(settings, str(job_id)), headers=NO_STORE)

    @router.delete("/{mosaic_id}", status_code=204, dependencies=writes, summary="Delete")
    def delete_mosaic(request: Request, settings: Settings, mosaic_id: MosaicIdPath) -> Response:
        """Delete a mosaic; with `If-Match`, only if it still has that ETag (412 otherwise)."""
        uri = uri_for_id(mosaic_id, settings)
        precondition = if_match_precondition(request, uri)
        with mosaic_write_lock(uri), open_backend(uri) as backend:
            if precondition is None:
                backend.delete()
            else:
                backend.delete_if(precondition)
        return Response(status_code=204, headers=NO_STORE)

    return router
