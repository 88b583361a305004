"""DynamoDB backend: many mosaics in one table (`dynamodb://{region}/{table}:{mosaic}`),
in cogeo-mosaic's layout, so a table written by either tool reads in the other.

Where things are:
- `records`: the item layout, slot encoding (assets or the OVERSIZE marker), the metadata item;
- `generations`: generation tokens, resolving an item for a reader, the write plan (undo log);
- `overviews`: low-zoom overview items and when readers may trust them;
- `items`: one mosaic's items in one table (single requests, queries, error mapping);
- `batch_io`: BatchGetItem / BatchWriteItem with retries, parallel requests;
- `lease`: the writer lease (one writer per mosaic, heartbeat, takeover after a crash);
- `commit`: stage, flip (the one conditional metadata put), promote, undo;
- `writes`: create, overwrite, update and delete; `backend`: `DynamoDBBackend` and its reads;
- `table`: URIs, paginated listing of a table's mosaics, table creation.
"""

from lambda_handler.backends.dynamodb.backend import DynamoDBBackend
from lambda_handler.backends.dynamodb.items import dynamodb_client
from lambda_handler.backends.dynamodb.lease import Lease
from lambda_handler.backends.dynamodb.records import (
    LOCK_SUFFIX,
    OVERVIEW_SUFFIX,
    SLOT_LIMIT,
    base_assets,
    metadata_fingerprint,
    tile_item_size,
)
from lambda_handler.backends.dynamodb.table import parse_dynamodb_uri

__all__ = [
    "LOCK_SUFFIX",
    "OVERVIEW_SUFFIX",
    "SLOT_LIMIT",
    "DynamoDBBackend",
    "Lease",
    "base_assets",
    "dynamodb_client",
    "metadata_fingerprint",
    "parse_dynamodb_uri",
    "tile_item_size",
]
