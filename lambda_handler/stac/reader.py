"""rio-tiler's STAC reader, fed with the items a search already returned."""

from typing import Any

import attr
import pystac
from rio_tiler.io import STACReader

from lambda_handler.stac.items import cached_item
from lambda_handler.url_policy import UrlNotAllowed, check_url


@attr.s
class SearchedItemReader(STACReader):
    """`rio_tiler.io.STACReader` that takes the item from the search cache when it is there.

    A STAC mosaic's assets are item URLs; the search that found them already returned each item,
    so fetching it again would cost one HTTP request per item per tile. An item no longer cached
    is fetched from its URL as usual.

    `allowed_asset_prefixes` (MOSAIC_API_ALLOWED_ASSET_PREFIXES) also applies to the hrefs of
    the item's assets: an item can point anywhere, and GDAL would fetch it.
    """

    allowed_asset_prefixes: list[str] = attr.ib(factory=list)

    def __attrs_post_init__(self) -> None:
        """Use the searched item for `input` when no item was passed."""
        if self.item is None and isinstance(self.input, str):
            found = cached_item(self.input)
            if found is not None:
                self.item = pystac.Item.from_dict(found, href=self.input)
        super().__attrs_post_init__()

    def _get_asset_info(self, asset: Any) -> Any:
        """rio-tiler's asset info, refused (AssetNotAllowedError) outside the allow-list."""
        info = super()._get_asset_info(asset)
        try:
            check_url(str(info["url"]), self.allowed_asset_prefixes, "asset",
                      "MOSAIC_API_ALLOWED_ASSET_PREFIXES")  # fmt: skip
        except UrlNotAllowed as err:
            from lambda_handler.reading import AssetNotAllowedError

            raise AssetNotAllowedError(str(info["url"]), str(err)) from err
        return info
