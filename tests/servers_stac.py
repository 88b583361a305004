"""pytest plugin: a real STAC API holding the 13 test items (`stac_api`: PostgreSQL + pgstac +
stac-fastapi-pgstac, see `tests/pgstac_stack.py`) and the two real `/search` pages replayed
(`stac_fixture_server`, see `tests/stac_pages.py`), all on 127.0.0.1.
"""

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.pgstac_stack import StacStack, start_stac_stack
from tests.stac_catalog import TEST_COLLECTION, write_test_catalog
from tests.stac_pages import FixturePagesServer


@dataclass
class StacApi:
    """The running test STAC API and what was loaded into it."""

    stack: StacStack
    collection: dict
    items: list[dict]

    @property
    def search_url(self) -> str:
        """`http://127.0.0.1:PORT/search`."""
        return self.stack.search_url

    def item_url(self, index: int) -> str:
        """URL of test item `index` as the API links it."""
        return f"{self.stack.root_url}/collections/{TEST_COLLECTION}/items/item-{index:02d}"


@pytest.fixture(scope="session")
def stac_api(tmp_path_factory) -> Iterator[StacApi]:
    """stac-fastapi-pgstac over PostgreSQL/PostGIS holding the 13 test items."""
    collection, items = write_test_catalog(tmp_path_factory.mktemp("stac_cogs"))
    stack = start_stac_stack([collection], items)
    try:
        yield StacApi(stack, collection, items)
    finally:
        stack.stop()


@pytest.fixture(scope="session")
def stac_fixture_server(shared_fixtures) -> Iterator[FixturePagesServer]:
    """The two real `/search` pages replayed on 127.0.0.1 (skips without the fixtures)."""
    server = FixturePagesServer(shared_fixtures).start()
    try:
        yield server
    finally:
        server.stop()
