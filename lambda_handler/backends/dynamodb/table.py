"""Table administration: mosaic URIs, listing a table's mosaics page by page, creating a table."""

import base64
import binascii
import json
import re
import time
from typing import Any

from botocore.exceptions import ClientError

from lambda_handler.backends import aws
from lambda_handler.backends.base import validate_mosaic_name
from lambda_handler.backends.dynamodb.items import dynamodb_client
from lambda_handler.backends.dynamodb.records import METADATA_QUADKEY, key_of
from lambda_handler.errors import InvalidMosaicError, MosaicNotFoundError, MosaicWriteError

LIST_SCAN_CALLS = 4  # Scan requests one listing page may cost at most
LIST_SCAN_ITEMS = 1000  # items each of them may evaluate
_URI_RE = re.compile(
    r"^dynamodb://(?P<region>[a-z0-9-]*)/(?P<table>[A-Za-z0-9_.\-]+):(?P<name>.+)$"
)
_TABLE_RE = re.compile(r"^[A-Za-z0-9_.\-]{3,255}$")


def parse_dynamodb_uri(uri: str) -> tuple[str, str, str]:
    """(region, table, mosaic) of `dynamodb://{region}/{table}:{mosaic}`.

    An empty region (`dynamodb:///{table}:{mosaic}`) means `AWS_REGION`, else us-east-1.
    """
    match = _URI_RE.match(uri)
    if not match:
        raise InvalidMosaicError(
            f"invalid DynamoDB mosaic URI {uri!r}: expected dynamodb://{{region}}/{{table}}:{{mosaic}} "
            "or dynamodb:///{table}:{mosaic}"
        )
    table = match["table"]
    if not _TABLE_RE.match(table):
        raise InvalidMosaicError(f"invalid DynamoDB table name {table!r}: 3-255 of [A-Za-z0-9_.-]")
    return match["region"] or aws.default_region(), table, validate_mosaic_name(match["name"])


def table_of(table: str, region: str | None) -> tuple[str, str]:
    """(table, region) of `dynamodb://{region}/{table}` or a bare table name."""
    if table.startswith("dynamodb://"):
        region_part, _, table = table[len("dynamodb://") :].partition("/")
        region = region or region_part or None
        table = table.rstrip(":")
    return table, region or aws.default_region()


# ---------------------------------------------------------------------- listing
def encode_page_token(key: dict[str, Any]) -> str:
    """An opaque continuation token for the listing page after the item `key`."""
    text = json.dumps([key["mosaicId"]["S"], key["quadkey"]["S"]], separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_page_token(token: str) -> dict[str, Any]:
    """The table key a continuation token resumes after (InvalidMosaicError if malformed)."""
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        partition, sort = json.loads(text)
        if not (isinstance(partition, str) and isinstance(sort, str)):
            raise ValueError("not two strings")
        if not (0 < len(partition) <= 300 and 0 < len(sort) <= 300):
            raise ValueError("key out of range")
    except (binascii.Error, UnicodeDecodeError, ValueError, TypeError) as err:
        raise InvalidMosaicError(f"invalid page token {token[:100]!r}") from err
    return key_of(partition, sort)


def list_mosaics(table: str, region: str | None = None) -> list[str]:
    """Names of every mosaic of a table (`dynamodb://{region}/{table}` or a table name):
    a Scan of the whole table (the CLI); the HTTP API pages with `list_page`."""
    names: list[str] = []
    token = None
    while True:
        page, token = list_page(table, region, limit=1000, token=token)
        names.extend(page)
        if token is None:
            return sorted(names)


def list_page(
    table: str, region: str | None = None, limit: int = 100, token: str | None = None
) -> tuple[list[str], str | None]:
    """One page of mosaic names and the token of the next page (None at the end).

    Scan for metadata items, resuming after the mosaic a token names: at most
    `LIST_SCAN_CALLS` requests of `LIST_SCAN_ITEMS` evaluated items each, so a page costs
    the same on any table; a page may hold fewer than `limit` names (even none) with a
    token to continue. Names come in the table's scan order, not sorted."""
    table, region = table_of(table, region)
    params: dict[str, Any] = {
        "TableName": table,
        "FilterExpression": "#q = :meta",
        "ProjectionExpression": "#m",
        "ExpressionAttributeNames": {"#q": "quadkey", "#m": "mosaicId"},
        "ExpressionAttributeValues": {":meta": {"S": METADATA_QUADKEY}},
        "Limit": max(LIST_SCAN_ITEMS, limit),
    }
    if token:
        params["ExclusiveStartKey"] = decode_page_token(token)
    try:
        return _scan_page(dynamodb_client(region), params, limit)
    except ClientError as err:
        if aws.error_code(err) == "ResourceNotFoundException":
            raise MosaicNotFoundError(f"DynamoDB table {table!r} not found") from err
        if aws.error_code(err) == "ValidationException" and token:
            raise InvalidMosaicError(f"invalid page token {token!r}") from err
        raise aws.map_error(err, f"listing DynamoDB table {table!r}") from err


def _scan_page(client: Any, params: dict[str, Any], limit: int) -> tuple[list[str], str | None]:
    """Up to `limit` names from at most `LIST_SCAN_CALLS` Scan requests (see `list_page`)."""
    names: list[str] = []
    for _ in range(LIST_SCAN_CALLS):
        page = client.scan(**params)
        for item in page.get("Items", ()):
            names.append(item["mosaicId"]["S"])
            if len(names) == limit:
                more = item is not page["Items"][-1] or page.get("LastEvaluatedKey")
                key = key_of(names[-1], METADATA_QUADKEY)
                return names, encode_page_token(key) if more else None
        last = page.get("LastEvaluatedKey")
        if not last:
            return names, None
        params["ExclusiveStartKey"] = last
    # Budget spent: continue after the last item evaluated (a metadata item or not).
    return names, encode_page_token(params["ExclusiveStartKey"])


# ---------------------------------------------------------------------- creation
def create_table(table: str, region: str | None = None, timeout: float = 60.0) -> bool:
    """Create a mosaic table (on-demand billing) for local use and wait until it is ACTIVE.
    Returns False when it already exists. The deployed table comes from the CDK stack."""
    client = dynamodb_client(region or aws.default_region())
    try:
        client.create_table(
            TableName=table,
            AttributeDefinitions=[
                {"AttributeName": "mosaicId", "AttributeType": "S"},
                {"AttributeName": "quadkey", "AttributeType": "S"},
            ],
            KeySchema=[
                {"AttributeName": "mosaicId", "KeyType": "HASH"},
                {"AttributeName": "quadkey", "KeyType": "RANGE"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        created = True
    except ClientError as err:
        if aws.error_code(err) != "ResourceInUseException":
            raise aws.map_error(err, f"creating DynamoDB table {table!r}") from err
        created = False
    # boto3's waiter polls every 20 s; local servers are ready within milliseconds.
    deadline = time.monotonic() + timeout
    while client.describe_table(TableName=table)["Table"]["TableStatus"] != "ACTIVE":
        if time.monotonic() > deadline:
            raise MosaicWriteError(f"DynamoDB table {table!r} not ACTIVE after {timeout} s")
        time.sleep(0.1)
    return created
