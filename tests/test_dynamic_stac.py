"""Dynamic STAC backend: every tile, point and bbox is a search of a real STAC API
(stac-fastapi-pgstac over PostgreSQL/PostGIS); items are read with rio-tiler's STAC reader."""

import morecantile
import numpy as np
import pytest
import shapely
from rio_tiler.errors import NoAssetFoundError
from rio_tiler.io import STACReader

from lambda_handler.backends.dynamic_stac import DynamicStacBackend
from lambda_handler.errors import InvalidMosaicError, ReadOnlyBackendError
from lambda_handler.stac.client import StacApiError, StacApiUnreachableError
from tests.processes import free_port
from tests.stac_catalog import (
    TEST_CLOUD_COVER,
    TEST_COLLECTION,
    expected_value,
    items_intersecting,
)

WEB_MERCATOR = morecantile.tms.get("WebMercatorQuad")
QUERY = {"collections": [TEST_COLLECTION]}


def tile_box(tile: morecantile.Tile) -> shapely.Polygon:
    return shapely.box(*WEB_MERCATOR.bounds(tile))


def newest_first(ids: list[str]) -> list[str]:
    """pgstac's default order: datetime descending (the test items' datetimes rise with ids)."""
    return sorted(ids, reverse=True)


def test_documented_usage_works_as_written(stac_api):
    url = stac_api.search_url
    query = QUERY
    lon, lat = 10.2, 45.2  # inside item 0 only
    tile = WEB_MERCATOR.tile(lon, lat, 12)
    x, y, z = tile.x, tile.y, tile.z
    with DynamicStacBackend(
        url, query=query, stac_api_options={"max_items": 5}, minzoom=8, maxzoom=12
    ) as mosaic:
        assets = mosaic.assets_for_tile(x, y, z)
        img, used = mosaic.tile(x, y, z, assets="B01", tilesize=128, threads=0)
        values = mosaic.point(lon, lat, assets="B01")
    assert assets == [stac_api.item_url(0)]
    assert used == [stac_api.item_url(0)]
    assert img.data.shape == (1, 128, 128)
    assert img.array.mask.sum() == 0
    assert np.all(img.data == expected_value(0, "B01"))
    assert [(name, pt.data.tolist()) for name, pt in values] == [
        (stac_api.item_url(0), [expected_value(0, "B01")])
    ]
    assert (mosaic.minzoom, mosaic.maxzoom) == (8, 12)


def test_assets_for_tile_are_the_intersecting_items(stac_api):
    tile = WEB_MERCATOR.tile(10.8, 45.5, 9)
    expected = newest_first(items_intersecting(stac_api.items, tile_box(tile)))
    assert len(expected) > 5
    with DynamicStacBackend(stac_api.search_url, query=QUERY) as mosaic:
        found = mosaic.assets_for_tile(tile.x, tile.y, tile.z)
        reverse = mosaic.assets_for_tile(tile.x, tile.y, tile.z, reverse=True)
    base = stac_api.item_url(0).removesuffix("item-00")
    assert found == [base + i for i in expected]
    assert reverse == found[::-1]


def test_max_items_bounds_each_request(stac_api):
    tile = WEB_MERCATOR.tile(10.8, 45.5, 9)
    expected = newest_first(items_intersecting(stac_api.items, tile_box(tile)))
    with DynamicStacBackend(
        stac_api.search_url, query=QUERY, stac_api_options={"max_items": 3, "limit": 2}
    ) as mosaic:
        found = mosaic.assets_for_tile(tile.x, tile.y, tile.z)
    base = stac_api.item_url(0).removesuffix("item-00")
    assert found == [base + i for i in expected[:3]]


def test_sortby_is_honoured(stac_api):
    tile = WEB_MERCATOR.tile(10.8, 45.5, 9)
    ids = items_intersecting(stac_api.items, tile_box(tile))
    expected = sorted(ids, key=lambda i: TEST_CLOUD_COVER[int(i[-2:])])
    query = {**QUERY, "sortby": [{"field": "properties.eo:cloud_cover", "direction": "asc"}]}
    with DynamicStacBackend(
        stac_api.search_url, query=query, stac_api_options={"limit": 2}
    ) as mosaic:
        found = mosaic.assets_for_tile(tile.x, tile.y, tile.z)
    base = stac_api.item_url(0).removesuffix("item-00")
    assert found == [base + i for i in expected]


@pytest.mark.parametrize(("sort", "first"), [("asc", 0), ("desc", 1)])
def test_overlap_pixels_come_from_the_first_item_of_the_sort(stac_api, sort, first):
    # (10.45, 45.1): items 0 (cloud 5) and 1 (cloud 55) overlap.
    query = {**QUERY, "sortby": [{"field": "eo:cloud_cover", "direction": sort}]}
    tile = WEB_MERCATOR.tile(10.45, 45.1, 14)
    with DynamicStacBackend(stac_api.search_url, query=query) as mosaic:
        img, used = mosaic.tile(tile.x, tile.y, tile.z, assets="B02", threads=0)
        values = mosaic.point(10.45, 45.1, assets=["B01", "B02"])
    assert used == [stac_api.item_url(first)]
    assert np.all(img.data == expected_value(first, "B02"))
    assert [name for name, _ in values] == [stac_api.item_url(i) for i in (first, 1 - first)]
    assert [pt.data.tolist() for _, pt in values] == [
        [expected_value(i, "B01"), expected_value(i, "B02")] for i in (first, 1 - first)
    ]


def test_query_filter(stac_api):
    tile = WEB_MERCATOR.tile(10.8, 45.5, 9)
    ids = items_intersecting(stac_api.items, tile_box(tile))
    expected = newest_first([i for i in ids if TEST_CLOUD_COVER[int(i[-2:])] < 40])
    query = {**QUERY, "query": {"eo:cloud_cover": {"lt": 40}}}
    with DynamicStacBackend(stac_api.search_url, query=query) as mosaic:
        found = mosaic.assets_for_tile(tile.x, tile.y, tile.z)
    base = stac_api.item_url(0).removesuffix("item-00")
    assert found == [base + i for i in expected]
    assert 0 < len(expected) < len(ids)


def test_query_intersects_limits_every_search(stac_api):
    area = shapely.box(10.0, 45.0, 10.45, 45.45)  # items 0, 1, 5 (and 6 by a corner)
    tile = WEB_MERCATOR.tile(10.8, 45.5, 9)
    expected = newest_first(items_intersecting(stac_api.items, area.intersection(tile_box(tile))))
    query = {**QUERY, "intersects": shapely.geometry.mapping(area)}
    with DynamicStacBackend(stac_api.search_url, query=query) as mosaic:
        found = mosaic.assets_for_tile(tile.x, tile.y, tile.z)
        far = WEB_MERCATOR.tile(12.6, 45.1, 10)
        assert mosaic.assets_for_tile(far.x, far.y, far.z) == []
        assert mosaic.info().bounds == pytest.approx((10.0, 45.0, 10.45, 45.45))
    base = stac_api.item_url(0).removesuffix("item-00")
    assert found == [base + i for i in expected]
    assert len(found) < len(items_intersecting(stac_api.items, tile_box(tile)))


def test_multipolygon_gap_has_no_assets(stac_api):
    with DynamicStacBackend(stac_api.search_url, query=QUERY) as mosaic:
        assert mosaic.assets_for_point(12.6, 45.1) == [stac_api.item_url(10)]
        assert mosaic.assets_for_point(13.6, 45.7) == [stac_api.item_url(11)]
        assert mosaic.assets_for_point(13.1, 45.1) == []
        with pytest.raises(NoAssetFoundError):
            mosaic.point(13.1, 45.1, assets="B01")


def test_bbox_and_part(stac_api):
    with DynamicStacBackend(stac_api.search_url, query=QUERY) as mosaic:
        assets = mosaic.assets_for_bbox(10.05, 45.05, 10.35, 45.35)
        assert assets == [stac_api.item_url(0)]
        img, used = mosaic.part((10.05, 45.05, 10.35, 45.35), assets="B02", max_size=64)
        assert used == [stac_api.item_url(0)]
        assert np.all(img.data[~img.array.mask] == expected_value(0, "B02"))
        # A bbox across the antimeridian (west > east) finds the item stored across it.
        assert mosaic.assets_for_bbox(179.7, -16.1, -179.7, -15.9) == [stac_api.item_url(12)]
        assert mosaic.assets_for_point(-179.8, -16.0) == [stac_api.item_url(12)]


def test_expression_per_item(stac_api):
    tile = WEB_MERCATOR.tile(10.65, 45.65, 13)  # inside item 6 only
    with DynamicStacBackend(stac_api.search_url, query=QUERY) as mosaic:
        img, used = mosaic.tile(
            tile.x, tile.y, tile.z, assets=["B01", "B02"], expression="b2-b1", threads=0
        )
    assert used == [stac_api.item_url(6)]
    assert np.all(img.data == 90)


def test_items_fetched_by_url_with_the_plain_stac_reader(stac_api):
    # With rio-tiler's own reader each item is fetched from its self link: proves the links work.
    tile = WEB_MERCATOR.tile(11.5, 45.1, 13)  # inside item 3 only
    with DynamicStacBackend(stac_api.search_url, query=QUERY, reader=STACReader) as mosaic:
        img, used = mosaic.tile(tile.x, tile.y, tile.z, assets="B01", threads=0)
    assert used == [stac_api.item_url(3)]
    assert np.all(img.data == expected_value(3, "B01"))


def test_asset_accessor_with_a_plain_reader(stac_api):
    from rio_tiler.io import Reader

    with DynamicStacBackend(
        stac_api.search_url, query=QUERY, accessor="B02", reader=Reader
    ) as mosaic:
        values = mosaic.point(11.5, 45.1)
    assert [(name, pt.data.tolist()) for name, pt in values] == [
        (stac_api.items[3]["assets"]["B02"]["href"], [expected_value(3, "B02")])
    ]


def test_stac_prefix_is_accepted(stac_api):
    with DynamicStacBackend("stac+" + stac_api.search_url, query=QUERY) as mosaic:
        assert mosaic.assets_for_point(10.2, 45.2) == [stac_api.item_url(0)]


def test_read_only(stac_api):
    with (
        DynamicStacBackend(stac_api.search_url, query=QUERY) as mosaic,
        pytest.raises(ReadOnlyBackendError),
    ):
        mosaic.write()


# ---------------------------------------------------------------------------- caching
def test_searches_are_cached_per_geometry(stac_fixture_server):
    server = stac_fixture_server
    url = server.search_url("nocontext")
    with DynamicStacBackend(url, query={"limit": 10}) as mosaic:
        start = len(server.requests)
        first = mosaic.assets_for_tile(100, 200, 9)
        after_first = len(server.requests)
        assert after_first - start == 3  # two pages and the empty third
        assert len(first) == 19
        assert mosaic.assets_for_tile(100, 200, 9) == first
        assert len(server.requests) == after_first  # same tile: cached
        mosaic.assets_for_tile(101, 200, 9)
        assert len(server.requests) == after_first + 3  # another geometry: searched
        body = server.requests[-3][3]
        assert body["intersects"]["type"] == "Polygon"
        assert shapely.geometry.shape(body["intersects"]).equals(
            shapely.box(*WEB_MERCATOR.bounds(101, 200, 9))
        )
    # A new backend instance (the next request of a map view) reuses the cache too.
    with DynamicStacBackend(url, query={"limit": 10}) as again:
        again.assets_for_tile(100, 200, 9)
    assert len(server.requests) == after_first + 3


def test_point_search_is_a_tiny_polygon(stac_fixture_server):
    server = stac_fixture_server
    with DynamicStacBackend(server.search_url("post"), query={"limit": 10}) as mosaic:
        mosaic.assets_for_point(-109.5, 82.5)
    shape = shapely.geometry.shape(server.requests[-1][3]["intersects"])
    assert shape.geom_type == "Polygon"
    assert shape.contains(shapely.Point(-109.5, 82.5))
    assert shape.area < 1e-10


def test_old_style_sort_is_passed_through(stac_fixture_server):
    server = stac_fixture_server
    sort = [{"field": "eo:cloud_cover", "direction": "asc"}]
    with DynamicStacBackend(server.search_url("post"), query={"sort": sort}) as mosaic:
        mosaic.assets_for_point(-109.5, 82.5)
    assert server.requests[-1][3]["sort"] == sort


# ---------------------------------------------------------------------------- bad input
def test_unreachable_api():
    url = f"http://127.0.0.1:{free_port()}/search"
    with DynamicStacBackend(url) as mosaic, pytest.raises(StacApiUnreachableError, match=url):
        mosaic.assets_for_tile(0, 0, 1)


def test_page_failing_mid_pagination(stac_fixture_server):
    with (
        DynamicStacBackend(stac_fixture_server.search_url("fail2")) as mosaic,
        pytest.raises(StacApiError, match="page 2 .*HTTP 500") as err,
    ):
        mosaic.assets_for_tile(0, 0, 1)
    assert err.value.status == 500


def test_client_error_from_the_api(stac_api):
    with (
        DynamicStacBackend(stac_api.search_url, query={"limit": 0}) as mosaic,
        pytest.raises(StacApiError, match="HTTP 400") as err,
    ):
        mosaic.assets_for_point(10.2, 45.2)
    assert err.value.status == 400


def test_missing_asset_names_the_item(stac_api):
    with (
        DynamicStacBackend(stac_api.search_url, query=QUERY, accessor="B07") as mosaic,
        pytest.raises(InvalidMosaicError, match="item 'item-00' has no asset 'B07'"),
    ):
        mosaic.assets_for_point(10.2, 45.2)


def test_request_and_query_areas_touching_by_an_edge_search_the_shared_part():
    from lambda_handler.backends.dynamic_stac import _searchable

    mixed = shapely.GeometryCollection(
        [shapely.box(0, 0, 1, 1), shapely.LineString([(2, 2), (3, 3)])]
    )
    assert _searchable(mixed).equals(shapely.box(0, 0, 1, 1))
    assert _searchable(shapely.box(0, 0, 1, 1) & shapely.box(3, 3, 4, 4)) is None
