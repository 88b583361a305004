"""The answers of the management routes: listing pages, the created mosaic's TileJSON, the
202 of a write handed to a job."""

from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from lambda_handler.api_errors import ApiError
from lambda_handler.routes.mosaic_models import MosaicOptions
from lambda_handler.routes.tilejson import tile_url, tilejson_document
from lambda_handler.settings import ApiSettings

if TYPE_CHECKING:
    from lambda_handler.mosaic.model import MosaicJSON

NO_STORE = {"Cache-Control": "no-store"}
# Listings change with every write, but may be revalidated.
NO_CACHE = {"Cache-Control": "no-cache"}


def mosaic_links(request: Request, mosaic_id: str) -> dict[str, str]:
    """Links of a stored mosaic: its metadata, TileJSON and map page."""
    return {
        "self": str(request.url_for("id:metadata", mosaic_id=mosaic_id)),
        "tilejson": str(request.url_for("id:tilejson", mosaic_id=mosaic_id)),
        "map": str(request.url_for("id:map", mosaic_id=mosaic_id)),
    }


def created_answer(
    request: Request, mosaic_id: str, document: "MosaicJSON", body: MosaicOptions, status: int
) -> JSONResponse:
    """The TileJSON of the stored mosaic (tile URL with the body's tile_format/tile_scale),
    with its id and links; `Location` is its metadata."""
    tiles_url = tile_url(
        request,
        "id",
        {"mosaic_id": mosaic_id},
        document.tms.id,
        body.tile_format,
        body.tile_scale,
    )
    query: dict[str, Any] = {"tile_scale": body.tile_scale}
    if body.tile_format:
        query["tile_format"] = body.tile_format.value
    links = mosaic_links(request, mosaic_id)
    links["tilejson"] += "?" + urlencode(query)
    document_fields = tilejson_document(
        name=document.name or mosaic_id,
        version=document.version,
        tiles_url=tiles_url,
        minzoom=document.minzoom,
        maxzoom=document.maxzoom,
        bounds=document.bounds,
    )
    content = {"tilejson": "3.0.0", "id": mosaic_id, **document_fields, "links": links}
    headers = {**NO_STORE, "Location": links["self"]}
    return JSONResponse(content, status_code=status, headers=headers)


def needs_job(settings: ApiSettings, quadkeys: int) -> bool:
    """Whether a write of `quadkeys` quadkeys is too large for the request (a job does it)."""
    limit = settings.sync_write_max_quadkeys
    return limit is not None and quadkeys > limit


def job_answer(
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


def _listed(request: Request, ids: list[str]) -> list[dict[str, Any]]:
    return [{"id": i, "links": mosaic_links(request, i)} for i in ids]


def token_page(request: Request, size: int, ids: list[str], token: str | None) -> JSONResponse:
    """A listing page of a store paged by continuation token."""
    base = str(request.url_for("list_mosaics"))
    links = []
    if token is not None:
        links.append(
            {"rel": "next", "href": base + "?" + urlencode({"limit": size, "token": token})}
        )
    content = {
        "mosaics": _listed(request, ids),
        "numberReturned": len(ids),
        "links": links,
    }
    return JSONResponse(content, headers=NO_CACHE)


def offset_page(request: Request, size: int, offset: int, ids: list[str]) -> JSONResponse:
    """A listing page of a store listed whole: `size` ids from `offset`, with `next` and
    `prev` links and the total."""
    page = ids[offset : offset + size]
    base = str(request.url_for("list_mosaics"))
    links = []
    if offset + size < len(ids):
        next_query = urlencode({"limit": size, "offset": offset + size})
        links.append({"rel": "next", "href": base + "?" + next_query})
    if offset > 0:
        prev_query = urlencode({"limit": size, "offset": max(0, offset - size)})
        links.append({"rel": "prev", "href": base + "?" + prev_query})
    content = {
        "mosaics": _listed(request, page),
        "numberMatched": len(ids),
        "numberReturned": len(page),
        "links": links,
    }
    return JSONResponse(content, headers=NO_CACHE)
