"""STAC backend (`stac+http://…/search`): searches against a real STAC API (stac-fastapi-pgstac
over PostgreSQL/PostGIS) and against the two real search pages of `../shared/fixtures`."""

import morecantile
import numpy as np
import pytest
import shapely

from lambda_handler.backends import MosaicBackend
from lambda_handler.backends.stac import StacBackend
from lambda_handler.errors import InvalidMosaicError, MosaicNotFoundError, ReadOnlyBackendError
from lambda_handler.stac.client import (
    StacApiError,
    StacApiUnreachableError,
    StacResponseError,
    search,
)
from tests.processes import free_port
from tests.stac_catalog import (
    TEST_CLOUD_COVER,
    TEST_COLLECTION,
    expected_value,
    items_intersecting,
)

WEB_MERCATOR = morecantile.tms.get("WebMercatorQuad")


def stac_uri(url: str) -> str:
    return "stac+" + url


def index_assets(mosaic) -> set[str]:
    """Every asset listed anywhere in the mosaic's index."""
    return {asset for assets in mosaic.mosaic_def.tiles.values() for asset in assets}


def pixel_tile(lon: float, lat: float, zoom: int) -> morecantile.Tile:
    return WEB_MERCATOR.tile(lon, lat, zoom)


# ---------------------------------------------------------------------------- mosaics
def test_dispatcher_builds_a_mosaic_of_every_item(stac_api):
    mosaic = MosaicBackend(
        stac_uri(stac_api.search_url),
        query={"collections": [TEST_COLLECTION]},
        minzoom=7,
        maxzoom=12,
        stac_api_options={"limit": 5},
    )
    assert isinstance(mosaic, StacBackend)
    assert index_assets(mosaic) == {stac_api.item_url(i) for i in range(13)}
    assert mosaic.mosaic_def.minzoom == 7
    assert mosaic.mosaic_def.quadkey_zoom == 7
    assert (mosaic.minzoom, mosaic.maxzoom) == (7, 12)
    # The antimeridian item stretches the bounds to the whole longitude range.
    assert mosaic.bounds[0] == pytest.approx(-180.0)
    assert mosaic.bounds[2] == pytest.approx(180.0)


def test_intersects_limits_the_mosaic(stac_api):
    area = shapely.box(10.05, 45.05, 10.3, 45.3)
    mosaic = MosaicBackend(
        stac_uri(stac_api.search_url),
        query={"collections": [TEST_COLLECTION], "intersects": shapely.geometry.mapping(area)},
        minzoom=8,
        maxzoom=12,
    )
    expected = items_intersecting(stac_api.items, area)
    assert expected == ["item-00"]
    assert index_assets(mosaic) == {stac_api.item_url(0)}


def test_max_items_in_mosaic(stac_api):
    mosaic = MosaicBackend(
        stac_uri(stac_api.search_url),
        query={"collections": [TEST_COLLECTION], "sortby": "eo:cloud_cover"},
        minzoom=7,
        maxzoom=12,
        stac_api_options={"max_items": 3, "limit": 2},
    )
    lowest = sorted(range(13), key=lambda i: TEST_CLOUD_COVER[i])[:3]
    assert index_assets(mosaic) == {stac_api.item_url(i) for i in lowest}


def test_multipolygon_items_are_indexed_by_their_parts(stac_api):
    zoom = 10
    mosaic = MosaicBackend(
        stac_uri(stac_api.search_url),
        query={"collections": [TEST_COLLECTION], "ids": ["item-10"]},
        minzoom=zoom,
        maxzoom=12,
    )
    parts = [(12.5, 45.0, 12.7, 45.2), (13.5, 45.0, 13.7, 45.2)]
    expected = {
        morecantile.Tile(t.x, t.y, t.z)
        for part in parts
        for t in WEB_MERCATOR.tiles(*part, zooms=[zoom])
    }
    found = {WEB_MERCATOR.quadkey_to_tile(qk) for qk in mosaic.mosaic_def.tiles}
    assert found == expected
    # A tile of the gap between the parts (inside the item's bbox) is not listed.
    gap = pixel_tile(13.1, 45.1, zoom)
    assert gap not in found
    assert mosaic.assets_for_point(12.6, 45.1) == [stac_api.item_url(10)]
    assert mosaic.assets_for_point(13.1, 45.1) == []


def test_antimeridian_item_is_indexed_on_both_sides(stac_api):
    zoom = 7
    mosaic = MosaicBackend(
        stac_uri(stac_api.search_url),
        query={"collections": [TEST_COLLECTION], "ids": ["item-12"]},
        minzoom=zoom,
        maxzoom=9,
    )
    xs = {WEB_MERCATOR.quadkey_to_tile(qk).x for qk in mosaic.mosaic_def.tiles}
    assert xs == {0, 2**zoom - 1}
    assert mosaic.assets_for_point(179.8, -16.0) == [stac_api.item_url(12)]
    assert mosaic.assets_for_point(-179.8, -16.0) == [stac_api.item_url(12)]
    assert mosaic.assets_for_point(0.0, -16.0) == []


@pytest.mark.parametrize(
    ("accessor", "expected"),
    [
        (None, lambda api, i: api.item_url(i)),
        ("B02", lambda api, i: api.items[i]["assets"]["B02"]["href"]),
        (lambda item: f"custom://{item['id']}", lambda api, i: f"custom://item-{i:02d}"),
    ],
    ids=["item-url", "asset-name", "callable"],
)
def test_accessor_variants(stac_api, accessor, expected):
    options = {} if accessor is None else {"accessor": accessor}
    mosaic = MosaicBackend(
        stac_uri(stac_api.search_url),
        query={"collections": [TEST_COLLECTION], "ids": ["item-03", "item-07"]},
        minzoom=8,
        maxzoom=12,
        mosaic_options=options,
    )
    assert index_assets(mosaic) == {expected(stac_api, 3), expected(stac_api, 7)}


def test_mosaic_options_reach_the_builder(stac_api):
    mosaic = MosaicBackend(
        stac_uri(stac_api.search_url),
        query={"collections": [TEST_COLLECTION], "bbox": [10.0, 45.0, 12.0, 46.0]},
        minzoom=6,
        maxzoom=14,
        mosaic_options={
            "tilematrixset": "WebMercatorQuad",
            "quadkey_zoom": 9,
            "maximum_items_per_tile": 1,
            "name": "from-stac",
        },
    )
    assert mosaic.mosaic_def.quadkey_zoom == 9
    assert mosaic.mosaic_def.name == "from-stac"
    assert all(len(qk) == 9 for qk in mosaic.mosaic_def.tiles)
    assert all(len(assets) == 1 for assets in mosaic.mosaic_def.tiles.values())


def test_zooms_from_mosaic_options(stac_api):
    mosaic = MosaicBackend(
        stac_uri(stac_api.search_url),
        query={"collections": [TEST_COLLECTION], "ids": ["item-00"]},
        mosaic_options={"minzoom": 9, "maxzoom": 11},
    )
    assert (mosaic.mosaic_def.minzoom, mosaic.mosaic_def.maxzoom) == (9, 11)
    assert (mosaic.minzoom, mosaic.maxzoom) == (9, 11)


def test_zooms_are_required(stac_api):
    with pytest.raises(InvalidMosaicError, match="minzoom and maxzoom"):
        MosaicBackend(stac_uri(stac_api.search_url), query={"collections": [TEST_COLLECTION]})


def test_unknown_api_option_is_refused(stac_api):
    with pytest.raises(TypeError, match="max_item"):
        MosaicBackend(
            stac_uri(stac_api.search_url),
            minzoom=8,
            maxzoom=12,
            stac_api_options={"max_item": 3},
        )


def test_read_only(stac_api):
    mosaic = MosaicBackend(
        stac_uri(stac_api.search_url),
        query={"collections": [TEST_COLLECTION], "ids": ["item-00"]},
        minzoom=8,
        maxzoom=12,
    )
    with pytest.raises(ReadOnlyBackendError):
        mosaic.write(overwrite=True)
    with pytest.raises(ReadOnlyBackendError):
        mosaic.delete()


def test_no_items_is_not_found(stac_api):
    with pytest.raises(MosaicNotFoundError, match="returned no items"):
        MosaicBackend(
            stac_uri(stac_api.search_url),
            query={"collections": [TEST_COLLECTION], "ids": ["nope"]},
            minzoom=8,
            maxzoom=12,
        )


# ---------------------------------------------------------------------------- rendering
@pytest.mark.parametrize(("sort", "first"), [("asc", 0), ("desc", 1)])
def test_tile_pixels_follow_the_search_order(stac_api, sort, first):
    # (10.45, 45.1) lies where items 0 (cloud 5) and 1 (cloud 55) overlap.
    query = {
        "collections": [TEST_COLLECTION],
        "sortby": [{"field": "eo:cloud_cover", "direction": sort}],
    }
    with MosaicBackend(stac_uri(stac_api.search_url), query=query, minzoom=8, maxzoom=14) as mosaic:
        tile = pixel_tile(10.45, 45.1, 14)
        img, used = mosaic.tile(tile.x, tile.y, tile.z, assets="B01", threads=0)
        assert used == [stac_api.item_url(first)]
        assert img.array.mask.sum() == 0
        assert np.all(img.array.data == expected_value(first, "B01"))
        values = mosaic.point(10.45, 45.1, assets=["B01", "B02"])
        assert [name for name, _ in values] == [stac_api.item_url(i) for i in (first, 1 - first)]
        assert values[0][1].data.tolist() == [
            expected_value(first, "B01"),
            expected_value(first, "B02"),
        ]


def test_tile_expression_across_assets(stac_api):
    with MosaicBackend(
        stac_uri(stac_api.search_url),
        query={"collections": [TEST_COLLECTION]},
        minzoom=8,
        maxzoom=14,
    ) as mosaic:
        tile = pixel_tile(10.65, 45.65, 13)  # inside item 6 only
        img, used = mosaic.tile(
            tile.x, tile.y, tile.z, assets=["B01", "B02"], expression="b2-b1", threads=0
        )
        assert used == [stac_api.item_url(6)]
        assert np.all(img.array.data == 90)


def test_asset_accessor_with_plain_reader(stac_api):
    from rio_tiler.io import Reader

    with MosaicBackend(
        stac_uri(stac_api.search_url),
        query={"collections": [TEST_COLLECTION], "ids": ["item-04"]},
        minzoom=8,
        maxzoom=14,
        mosaic_options={"accessor": "B02"},
        reader=Reader,
    ) as mosaic:
        values = mosaic.point(11.8, 45.2)
        assert [(name, pt.data.tolist()) for name, pt in values] == [
            (stac_api.items[4]["assets"]["B02"]["href"], [104])
        ]


# ---------------------------------------------------------------------------- bad input
def test_unreachable_api():
    url = f"http://127.0.0.1:{free_port()}/search"
    with pytest.raises(StacApiUnreachableError, match=f"page 1 of the STAC search \\(POST {url}"):
        MosaicBackend(stac_uri(url), minzoom=8, maxzoom=12)


def test_client_error_carries_status_not_the_server_body(stac_api):
    with pytest.raises(StacApiError) as err:
        MosaicBackend(stac_uri(stac_api.search_url), query={"limit": -1}, minzoom=8, maxzoom=12)
    assert err.value.status == 400
    assert "HTTP 400" in str(err.value) and stac_api.search_url in str(err.value)
    # the upstream's body never comes back (an internal server's error page can hold anything)
    assert "greater than 0" not in str(err.value)


def test_not_found_endpoint(stac_api):
    url = stac_api.search_url.replace("/search", "/nowhere/search")
    with pytest.raises(StacApiError) as err:
        MosaicBackend(stac_uri(url), minzoom=8, maxzoom=12)
    assert err.value.status == 404
    assert url in str(err.value)


def test_missing_asset_names_the_item(stac_api):
    with pytest.raises(InvalidMosaicError, match=r"item 'item-03' has no asset 'B99'") as err:
        MosaicBackend(
            stac_uri(stac_api.search_url),
            query={"collections": [TEST_COLLECTION], "ids": ["item-03"]},
            minzoom=8,
            maxzoom=12,
            mosaic_options={"accessor": "B99"},
        )
    assert stac_api.search_url in str(err.value)


def test_failing_accessor_names_the_item(stac_api):
    with pytest.raises(InvalidMosaicError, match=r"accessor failed on STAC item 'item-\d\d'"):
        MosaicBackend(
            stac_uri(stac_api.search_url),
            query={"collections": [TEST_COLLECTION]},
            minzoom=8,
            maxzoom=12,
            mosaic_options={"accessor": lambda item: item["properties"]["missing"]},
        )


def test_server_error(stac_fixture_server):
    url = stac_fixture_server.search_url("status503")
    with pytest.raises(StacApiError) as err:
        MosaicBackend(stac_uri(url), minzoom=7, maxzoom=9)
    assert err.value.status == 503
    assert "HTTP 503" in str(err.value) and url in str(err.value)
    assert "the server says no" not in str(err.value)  # the upstream body is not echoed


def test_invalid_json(stac_fixture_server):
    url = stac_fixture_server.search_url("badjson")
    with pytest.raises(StacResponseError, match="returned invalid JSON") as err:
        MosaicBackend(stac_uri(url), minzoom=7, maxzoom=9)
    assert url in str(err.value)


def test_item_without_geometry_is_named(stac_fixture_server):
    url = stac_fixture_server.search_url("nogeom")
    name = stac_fixture_server.pages[0]["features"][3]["id"]
    with pytest.raises(InvalidMosaicError, match=f"'{name}' from {url} has no geometry"):
        MosaicBackend(stac_uri(url), minzoom=7, maxzoom=9)


def test_page_failing_mid_pagination_fails_the_search(stac_fixture_server):
    url = stac_fixture_server.search_url("fail2")
    with pytest.raises(StacApiError, match="page 2 .*HTTP 500") as err:
        MosaicBackend(stac_uri(url), minzoom=7, maxzoom=9)
    assert err.value.status == 500
    assert "database went away" not in str(err.value)


# ---------------------------------------------------------------------------- real pages
def fixture_ids(server) -> list[str]:
    ids = [item["id"] for page in server.pages for item in page["features"]]
    return list(dict.fromkeys(ids))  # the real pages repeat one item across the page boundary


@pytest.mark.parametrize("variant", ["post", "merge", "get", "nocontext"])
def test_real_pages_with_each_kind_of_next_link(stac_fixture_server, variant):
    server = stac_fixture_server
    start = len(server.requests)
    query = {"collections": ["sentinel-s2-l2a"], "limit": 10}
    items = search(server.search_url(variant), query)
    assert [item["id"] for item in items] == fixture_ids(server)
    assert len(items) == 19
    requests = server.requests[start:]
    assert requests[0][0] == "POST" and requests[0][3] == query
    if variant == "get":
        # Page 2 has no next link: two requests, the second a GET of the link's href.
        assert [(r[0], r[2].get("page")) for r in requests] == [("POST", None), ("GET", ["2"])]
    else:
        # Page 3 is empty: three requests, each carrying the whole query (merged or full body).
        assert [r[0] for r in requests] == ["POST"] * 3
        assert [r[3] for r in requests[1:]] == [{**query, "page": 2}, {**query, "page": 3}]


def test_real_pages_mosaic_with_max_items(stac_fixture_server):
    server = stac_fixture_server
    mosaic = MosaicBackend(
        stac_uri(server.search_url("nocontext")),
        query={"limit": 10},
        minzoom=7,
        maxzoom=9,
        stac_api_options={"max_items": 12},
    )
    self_links = {
        link["href"]
        for page in server.pages
        for item in page["features"]
        for link in item["links"]
        if link["rel"] == "self"
    }
    assets = index_assets(mosaic)
    assert len(assets) == 12
    assert assets <= self_links


@pytest.mark.parametrize("variant", ["noself", "nolinks"])
def test_default_accessor_fallbacks(stac_fixture_server, variant):
    server = stac_fixture_server
    mosaic = MosaicBackend(stac_uri(server.search_url(variant)), minzoom=7, maxzoom=9)
    items = [item for page in server.pages for item in page["features"]]
    if variant == "noself":
        root = "https://earth-search.aws.element84.com/v0"
        expected = {f"{root}/collections/{i['collection']}/items/{i['id']}" for i in items}
    else:
        expected = set(fixture_ids(server))
    assert index_assets(mosaic) == expected


def test_searches_are_cached_per_query(stac_fixture_server):
    server = stac_fixture_server
    url = stac_uri(server.search_url("nocontext"))
    start = len(server.requests)
    MosaicBackend(url, query={"limit": 10}, minzoom=7, maxzoom=9)
    after_first = len(server.requests)
    assert after_first - start == 3
    again = MosaicBackend(url, query={"limit": 10}, minzoom=7, maxzoom=9)
    assert len(server.requests) == after_first  # document and search both cached
    assert len(index_assets(again)) == 19
    MosaicBackend(url, query={"limit": 10, "collections": ["x"]}, minzoom=7, maxzoom=9)
    assert len(server.requests) == after_first + 3  # another query: another search
    # Same search, other mosaic options: the search is reused, the document is rebuilt.
    other = MosaicBackend(
        url, query={"limit": 10}, minzoom=7, maxzoom=9, mosaic_options={"quadkey_zoom": 8}
    )
    assert len(server.requests) == after_first + 3
    assert other.mosaic_def.quadkey_zoom == 8
