"""Mosaic management routes: list, create (COG URLs, STAC search or document), replace, add,
delete, and the status of a write handed to a job.

Request bodies are in `routes/mosaic_models.py`, what a body builds in
`routes/mosaic_sources.py`, the answers' shapes in `routes/mosaic_answers.py`. The MosaicJSON
model and builder (morecantile, numpy, shapely) are imported by the routes that build or parse
documents, not at startup.
"""

import uuid
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from starlette.responses import Response

from lambda_handler.api_errors import WRITE_RESPONSES, ApiError, ErrorMappingRoute
from lambda_handler.backends import MosaicBackend
from lambda_handler.errors import InvalidMosaicError
from lambda_handler.routes import limits
from lambda_handler.routes.common import MosaicIdPath, mosaic_etag, open_backend, uri_for_id
from lambda_handler.routes.dependencies import get_settings
from lambda_handler.routes.mosaic_answers import (
    NO_STORE,
    created_answer,
    job_answer,
    needs_job,
    offset_page,
    token_page,
)
from lambda_handler.routes.mosaic_models import MosaicAddition, MosaicCreate, MosaicSource
from lambda_handler.routes.mosaic_sources import addition_features, build_document
from lambda_handler.routes.security import require_write_access
from lambda_handler.routes.write_locks import if_match_precondition, mosaic_write_lock
from lambda_handler.settings import ApiSettings

Settings = Annotated[ApiSettings, Depends(get_settings)]
WRITES = [Depends(require_write_access)]


def mosaics_router() -> APIRouter:
    """`/mosaics` management routes."""
    router = APIRouter(
        prefix="/mosaics",
        tags=["Mosaics"],
        route_class=ErrorMappingRoute,
        responses=WRITE_RESPONSES,
    )
    router.add_api_route("", list_mosaics, methods=["GET"], summary="List mosaics")
    router.add_api_route(
        "",
        create_mosaic,
        methods=["POST"],
        status_code=201,
        dependencies=WRITES,
        summary="Create a mosaic",
    )
    router.add_api_route(
        "/{mosaic_id}",
        replace_mosaic,
        methods=["PUT"],
        dependencies=WRITES,
        summary="Replace a mosaic",
    )
    router.add_api_route(
        "/{mosaic_id}",
        update_mosaic,
        methods=["PATCH"],
        dependencies=WRITES,
        summary="Add datasets to a mosaic",
    )
    router.add_api_route(
        "/jobs/{job_id:uuid}",
        job_status,
        methods=["GET"],
        name="job_status",
        dependencies=WRITES,
        summary="Write job status",
    )
    router.add_api_route(
        "/{mosaic_id}",
        delete_mosaic,
        methods=["DELETE"],
        status_code=204,
        dependencies=WRITES,
        summary="Delete",
    )
    return router


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
        return token_page(request, size, *paged)
    return offset_page(request, size, offset, list_mosaic_ids(settings.mosaic_uri_template))


def create_mosaic(request: Request, settings: Settings, body: MosaicCreate) -> JSONResponse:
    """Create a mosaic from COG URLs, a STAC search or a MosaicJSON document (409 if the
    id is taken); answers its TileJSON."""
    uri = uri_for_id(body.id, settings)
    document = build_document(body, body.id, settings)
    if needs_job(settings, len(document.tiles)):
        return job_answer(request, settings, "create", body.id, body, len(document.tiles), document)
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


def replace_mosaic(
    request: Request, settings: Settings, mosaic_id: MosaicIdPath, body: MosaicSource
) -> JSONResponse:
    """Replace an existing mosaic (404 if there is none) in one write; with `If-Match`,
    only if the mosaic still has that ETag (412 otherwise)."""
    uri = uri_for_id(mosaic_id, settings)
    with open_backend(uri):
        pass  # 404 when missing (before building): PUT replaces, POST creates
    document = build_document(body, mosaic_id, settings)
    if needs_job(settings, len(document.tiles)):
        return job_answer(
            request, settings, "replace", mosaic_id, body, len(document.tiles), document
        )
    precondition = if_match_precondition(request, uri)
    with mosaic_write_lock(uri), open_backend(uri) as backend:
        backend.replace(document, precondition=precondition)
        etag = mosaic_etag(uri, backend.revision, request.url.path)
    answer = created_answer(request, mosaic_id, document, body, 200)
    answer.headers["ETag"] = etag
    return answer


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
        if needs_job(settings, len(addition.tiles)):
            if body.urls is not None:  # footprints already read: the job needs not
                body = MosaicAddition(features=features, add_first=body.add_first)
            return job_answer(request, settings, "update", mosaic_id, body, len(addition.tiles))
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


def job_status(settings: Settings, job_id: uuid.UUID) -> JSONResponse:
    """Status of an asynchronous write: pending, running, succeeded (with the mosaic's
    version) or failed (with the status code and message of the error)."""
    from lambda_handler import jobs

    return JSONResponse(jobs.job_status(settings, str(job_id)), headers=NO_STORE)


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
