"""rio-tiler's STAC reader, fed with the items a search already returned."""

import attr
import pystac
from rio_tiler.io import STACReader

from lambda_handler.stac_client import cached_item


@attr.s
class SearchedItemReader(STACReader):
    """`rio_tiler.io.STACReader` that takes the item from the search cache when it is there.

    A STAC mosaic's assets are item URLs; the search that found them already returned each item,
    so fetching it again would cost one HTTP request per item per tile. An item no longer cached
    is fetched from its URL as usual.
    """

    def __attrs_post_init__(self) -> None:
        """Use the searched item for `input` when no item was passed."""
        if self.item is None and isinstance(self.input, str):
            found = cached_item(self.input)
            if found is not None:
                self.item = pystac.Item.from_dict(found, href=self.input)
        super().__attrs_post_init__()
