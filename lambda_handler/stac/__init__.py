"""STAC API search → MosaicJSON, in modules of one job each.

- `client`: HTTP requests to a STAC API search endpoint: paging, redirects, errors, the
  process-wide search cache.
- `items`: what the project takes from an item: its URL, an asset href (accessors), its
  geometry check, and the cache of searched items the reader uses.
- `reader`: rio-tiler's STAC item reader fed with the searched items.
- `seasons`: the `seasons` filter on item datetimes (no dependencies: the API models use it).
- `mosaic`: search results → a MosaicJSON document.

The static backend (`backends/stac.py`), the dynamic one (`backends/dynamic_stac.py`) and
`POST /mosaics` with `stac_api` are built on these. Nothing is imported here: the API models
import `seasons` at startup, and must not pull in httpx or the builder.
"""
