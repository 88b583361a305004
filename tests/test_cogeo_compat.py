"""cogeo-mosaic 9.x call forms and names on the project's backends (issue 15): code written
against cogeo-mosaic runs with its import paths changed. Stores are real (files, SQLite, the
suite's STAC API on PostgreSQL)."""

import hashlib
import json

import morecantile
import pytest

from lambda_handler.backends import MosaicBackend
from lambda_handler.mosaic import MosaicJSON
from tests.stac_catalog import TEST_COLLECTION

TMS = morecantile.tms.get("WebMercatorQuad")


def square(west, south, size, path):
    ring = [[west, south], [west + size, south], [west + size, south + size]]
    ring += [[west, south + size], [west, south]]
    return {
        "type": "Feature",
        "properties": {"path": path},
        "geometry": {"type": "Polygon", "coordinates": [ring]},
    }


@pytest.fixture
def document():
    return MosaicJSON.from_features([square(10, 40, 2, "a.tif"), square(11, 41, 2, "b.tif")], 7, 9)


def test_memory_call_forms(document):
    from lambda_handler.backends.memory import MemoryBackend

    for backend in (
        MosaicBackend(":memory:", mosaic_def=document),
        MosaicBackend(None, mosaic_def=document),
        MosaicBackend(None, document),
        MosaicBackend(":memory:", document, TMS, 3, 5),
    ):
        with backend as mosaic:
            assert isinstance(mosaic, MemoryBackend)
            assert mosaic.mosaic_def.tiles == document.tiles
    assert (backend.minzoom, backend.maxzoom) == (3, 5)


def test_positional_forms_of_stores(document, tmp_path):
    path = tmp_path / "m.json.gz"
    # FileBackend(input, mosaic_def, tms, minzoom, maxzoom, ...) as in cogeo-mosaic.
    MosaicBackend(str(path), document).write()
    with MosaicBackend(str(path), None, TMS, 8, 8) as mosaic:
        assert (mosaic.minzoom, mosaic.maxzoom) == (8, 8)
        assert mosaic.mosaic_def.tiles == document.tiles
    MosaicBackend(f"sqlite:///{tmp_path / 'm.db'}:amosaic", document).write()
    with MosaicBackend(f"sqlite:///{tmp_path / 'm.db'}:amosaic") as mosaic:
        assert sorted(mosaic._quadkeys) == sorted(document.tiles)


def cogeo_hash(document):
    body = json.dumps(document.model_dump(exclude_none=True), sort_keys=True, default=str)
    return hashlib.sha224(body.encode()).hexdigest()


def test_mosaicid_is_cogeo_mosaics_hash(document, tmp_path):
    """sha224 of the sorted-key JSON of the document (cogeo-mosaic's `get_hash`); stores that
    keep the index apart hash the whole document, tiles included."""
    with MosaicBackend(":memory:", mosaic_def=document) as mosaic:
        assert mosaic.mosaicid == cogeo_hash(document)
    uri = f"sqlite:///{tmp_path / 'm.db'}:amosaic"
    MosaicBackend(uri, mosaic_def=document).write()
    with MosaicBackend(uri) as mosaic:
        assert mosaic.mosaic_def.tiles == {}  # kept apart
        stored = mosaic.to_document()
        assert stored.tiles == document.tiles
        assert mosaic.mosaicid == cogeo_hash(stored)
    changed = document.model_copy(update={"name": "other"})
    assert MosaicBackend(None, changed).mosaicid != cogeo_hash(document)


def test_find_quadkeys_matches_morecantile(document):
    with MosaicBackend(None, document) as mosaic:
        tile = morecantile.Tile(540, 380, 10)
        parent = TMS.parent(tile, zoom=7)[0]
        assert mosaic.find_quadkeys(tile, 7) == [TMS.quadkey(parent)]
        low = morecantile.Tile(33, 23, 6)
        children = TMS.children(low, zoom=8)
        assert sorted(mosaic.find_quadkeys(low, 8)) == sorted(TMS.quadkey(t) for t in children)
        assert mosaic.find_quadkeys(low, 6) == [TMS.quadkey(low)]


def test_documented_names_import():
    from lambda_handler.backends import ABSBackend, STACBackend
    from lambda_handler.backends.az import ABSBackend as az_backend
    from lambda_handler.backends.azure import AzureBackend
    from lambda_handler.backends.gcs import GCSBackend
    from lambda_handler.backends.gs import GCSBackend as gs_backend
    from lambda_handler.backends.http import HttpBackend
    from lambda_handler.backends.stac import StacBackend, _fetch, default_stac_accessor
    from lambda_handler.backends.web import HttpBackend as web_backend

    assert ABSBackend is az_backend is AzureBackend
    assert gs_backend is GCSBackend and web_backend is HttpBackend
    assert STACBackend is StacBackend
    assert callable(_fetch) and callable(default_stac_accessor)


def test_stac_positional_form_fetch_and_accessor(stac_api):
    from lambda_handler.backends.stac import StacBackend, _fetch, default_stac_accessor

    query = {"collections": [TEST_COLLECTION], "bbox": [10.0, 45.0, 10.3, 45.3]}
    with MosaicBackend(f"stac+{stac_api.search_url}", query, 8, 10) as mosaic:
        assert isinstance(mosaic, StacBackend)
        assert (mosaic.mosaic_def.minzoom, mosaic.mosaic_def.maxzoom) == (8, 10)
        listed = {a for assets in mosaic.mosaic_def.tiles.values() for a in assets}
    items = _fetch(stac_api.search_url, query, max_items=10)
    assert [default_stac_accessor(i) for i in items] and {
        default_stac_accessor(i) for i in items
    } == listed
    assert stac_api.item_url(0) in listed
