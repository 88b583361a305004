"""The STAC search client (`lambda_handler.stac.client`): paging, limits, filters and sorting
against a real STAC API (stac-fastapi-pgstac over PostgreSQL/PostGIS), and a next-link loop on
the replayed real search pages of `../shared/fixtures`."""

import pytest

from lambda_handler.stac.client import StacApiError, search
from tests.stac_catalog import TEST_CLOUD_COVER, TEST_COLLECTION

ALL_IDS = [f"item-{i:02d}" for i in range(13)]


def test_search_follows_post_next_links_through_several_pages(stac_api):
    items = search(stac_api.search_url, {"collections": [TEST_COLLECTION]}, limit=4)
    # 13 items in pages of 4: four pages, every item exactly once.
    assert sorted(item["id"] for item in items) == ALL_IDS
    assert len(items) == 13


def test_search_without_limit_uses_one_default_page(stac_api):
    items = search(stac_api.search_url, {"collections": [TEST_COLLECTION]})
    assert len(items) == 13


def test_max_items_caps_the_total(stac_api):
    items = search(stac_api.search_url, {"collections": [TEST_COLLECTION]}, max_items=5, limit=2)
    assert len(items) == 5
    assert len({item["id"] for item in items}) == 5


def test_query_filter_on_cloud_cover(stac_api):
    query = {"collections": [TEST_COLLECTION], "query": {"eo:cloud_cover": {"lt": 30}}}
    items = search(stac_api.search_url, query, limit=2)
    expected = sorted(f"item-{i:02d}" for i, cc in enumerate(TEST_CLOUD_COVER) if cc < 30)
    assert sorted(item["id"] for item in items) == expected


@pytest.mark.parametrize("direction", ["asc", "desc"])
def test_sortby_orders_items_across_pages(stac_api, direction):
    query = {
        "collections": [TEST_COLLECTION],
        "sortby": [{"field": "properties.eo:cloud_cover", "direction": direction}],
    }
    items = search(stac_api.search_url, query, limit=3)
    covers = [item["properties"]["eo:cloud_cover"] for item in items]
    assert covers == sorted(TEST_CLOUD_COVER, reverse=direction == "desc")


def test_sortby_text_form_is_sent_as_post_sortby(stac_api):
    items = search(
        stac_api.search_url, {"collections": [TEST_COLLECTION], "sortby": "-eo:cloud_cover"}
    )
    covers = [item["properties"]["eo:cloud_cover"] for item in items]
    assert covers == sorted(TEST_CLOUD_COVER, reverse=True)


def test_next_link_loop_is_an_error(stac_fixture_server):
    with pytest.raises(StacApiError, match="loops"):
        search(stac_fixture_server.search_url("loop"))
