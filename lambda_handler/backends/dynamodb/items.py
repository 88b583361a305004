"""One mosaic's items in one DynamoDB table: addressing, single requests, queries, errors.

Reads are strongly consistent when asked (`MOSAIC_AWS_CONSISTENT_READS` for readers, always for
writers): an eventually consistent read could return an item older than the metadata it is
resolved against.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from lambda_handler.backends import aws
from lambda_handler.backends.dynamodb.records import (
    ITEM_PROJECTION,
    METADATA_QUADKEY,
    OVERVIEW_SUFFIX,
    expression_names,
    key_of,
)
from lambda_handler.errors import MosaicError, MosaicExistsError, MosaicNotFoundError
from lambda_handler.settings import aws_settings


def dynamodb_client(region: str) -> Any:
    """The process-wide DynamoDB client of a region."""
    # Enough pooled connections for the parallel batch writers and the lease renewer.
    return aws.client("dynamodb", region, pool_size=aws_settings().write_threads + 4)


class TableMissingError(MosaicNotFoundError):
    """The table itself does not exist (a write creates it, as cogeo-mosaic does)."""


class ConditionFailedError(Exception):
    """A conditional request's condition did not hold (the ClientError is the cause)."""


class MosaicTable:
    """The items of mosaic `mosaic_name` in table `table_name`, for the backend at `uri`."""

    def __init__(self, region: str, table_name: str, mosaic_name: str, uri: str):
        self.region = region
        self.table_name = table_name
        self.mosaic_name = mosaic_name
        self.uri = uri

    @property
    def client(self) -> Any:
        """The process-wide DynamoDB client of the table's region."""
        return dynamodb_client(self.region)

    @property
    def overview_partition(self) -> str:
        """The partition key of this mosaic's overview items."""
        return self.mosaic_name + OVERVIEW_SUFFIX

    def key(self, quadkey: str, partition: str | None = None) -> dict[str, Any]:
        """The table key of an item of this mosaic (or of another partition of it)."""
        return key_of(partition or self.mosaic_name, quadkey)

    # ------------------------------------------------------------------ errors
    def call(self, operation: str, **params: Any) -> dict[str, Any]:
        """Call a DynamoDB operation on this table (TableName filled in where it applies)."""
        if operation not in ("batch_get_item", "batch_write_item"):
            params["TableName"] = self.table_name
        return getattr(self.client, operation)(**params)

    def error(self, err: Exception, doing: str, default: type[MosaicError]) -> MosaicError:
        """The typed error of a failed request made while `doing` something."""
        if isinstance(err, ClientError) and aws.error_code(err) == "ResourceNotFoundException":
            return TableMissingError(
                f"DynamoDB table {self.table_name!r} not found in region {self.region} "
                f"(create it with DynamoDBBackend.create_table or deploy the stack)"
            )
        return aws.map_error(err, f"{doing} {self.uri}", default=default)

    @contextmanager
    def errors(self, doing: str, default: type[MosaicError] = MosaicError) -> Iterator[None]:
        """Map the AWS errors raised inside to typed errors (see `error`)."""
        try:
            yield
        except (ClientError, BotoCoreError) as err:
            raise self.error(err, doing, default) from err

    def not_found_error(self) -> MosaicNotFoundError:
        """The error of a mosaic without metadata item."""
        return MosaicNotFoundError(
            f"mosaic {self.mosaic_name!r} not found in DynamoDB table {self.table_name!r}"
        )

    def exists_error(self) -> MosaicExistsError:
        """The error of a create meeting an existing mosaic."""
        return MosaicExistsError(
            f"mosaic {self.mosaic_name!r} already exists in DynamoDB table {self.table_name!r} "
            "(use overwrite=True)"
        )

    # ------------------------------------------------------------------ single items
    def metadata_item(self, consistent: bool = True) -> dict[str, Any] | None:
        """The metadata item (None: no such mosaic)."""
        return self.call("get_item", Key=self.key(METADATA_QUADKEY), ConsistentRead=consistent).get(
            "Item"
        )

    def metadata_exists(self) -> bool:
        """Whether the metadata item exists (a consistent read of its key only)."""
        item = self.call(
            "get_item",
            Key=self.key(METADATA_QUADKEY),
            ConsistentRead=True,
            ProjectionExpression="#q",
            ExpressionAttributeNames=expression_names("#q"),
        ).get("Item")
        return bool(item)

    def put_if(
        self,
        item: dict[str, Any],
        condition: str,
        values: dict[str, Any] | None = None,
        return_old: bool = False,
    ) -> dict[str, Any]:
        """PutItem under a condition (ConditionFailedError when it does not hold)."""
        params: dict[str, Any] = {
            "Item": item,
            "ConditionExpression": condition,
            "ExpressionAttributeNames": expression_names(condition),
        }
        if values:
            params["ExpressionAttributeValues"] = values
        if return_old:
            params["ReturnValues"] = "ALL_OLD"
        try:
            return self.call("put_item", **params)
        except ClientError as err:
            if aws.error_code(err) == "ConditionalCheckFailedException":
                raise ConditionFailedError(str(err)) from err
            raise

    # ------------------------------------------------------------------ queries
    def query(
        self,
        condition: str,
        values: dict[str, Any],
        projection: str | None,
        partition: str | None = None,
        consistent: bool = False,
    ) -> Iterator[dict]:
        """Items of a partition (this mosaic's by default) matching a key condition, every
        page (LastEvaluatedKey)."""
        params: dict[str, Any] = {
            "KeyConditionExpression": condition,
            "ExpressionAttributeNames": expression_names(condition, projection),
            "ExpressionAttributeValues": {":m": {"S": partition or self.mosaic_name}, **values},
        }
        if projection:
            params["ProjectionExpression"] = projection
        if consistent:
            params["ConsistentRead"] = True
        with self.errors("querying"):
            while True:
                page = self.call("query", **params)
                yield from page.get("Items", ())
                last = page.get("LastEvaluatedKey")
                if not last:
                    return
                params["ExclusiveStartKey"] = last

    def raw_tiles(self, prefix: str, consistent: bool = False) -> dict[str, dict[str, Any]]:
        """Raw tile items whose quadkey starts with `prefix` ('' = all), in quadkey order."""
        if prefix:
            condition = "#m = :m AND begins_with(#q, :p)"
            values = {":p": {"S": prefix}}
        else:
            # Every quadkey is made of the digits 0-3; the metadata item "-1" sorts before "0".
            condition = "#m = :m AND #q BETWEEN :lo AND :hi"
            values = {":lo": {"S": "0"}, ":hi": {"S": "4"}}
        found: dict[str, dict[str, Any]] = {}
        items = self.query(condition, values, ITEM_PROJECTION, consistent=consistent)
        for item in items:
            quadkey = item["quadkey"]["S"]
            if quadkey[:1] in ("0", "1", "2", "3"):  # never the metadata item
                found[quadkey] = item
        return found

    def raw_partition(self, partition: str) -> dict[str, dict[str, Any]]:
        """Every item of a partition by sort key (consistent)."""
        items = self.query("#m = :m", {}, None, partition, consistent=True)
        return {item["quadkey"]["S"]: item for item in items}
