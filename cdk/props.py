"""Typed props of the `MosaicTiler` construct: one dataclass per concern, every field with a
default. These defaults are the only ones: `cdk/config.py` overrides them with what the context
and `MOSAIC_CDK_*` variables set, and `cdk.json` sets no option; tests build props directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cdk.bundling import BundleSpec

MOSAIC_STORES = ("dynamodb", "s3")
REMOVAL_POLICIES = ("retain", "destroy", "snapshot")
ARCHITECTURES = ("x86_64", "arm64")
URL_AUTH_TYPES = ("AWS_IAM", "NONE")
PRICE_CLASSES = ("PriceClass_100", "PriceClass_200", "PriceClass_All")


@dataclass
class TableProps:
    """The DynamoDB mosaic table (`mosaicId`/`quadkey`, on-demand)."""

    table_name: str | None = None  # None: CloudFormation names it
    removal_policy: str = "retain"  # retain | destroy | snapshot
    point_in_time_recovery: bool = True


@dataclass
class FunctionProps:
    """One Lambda function's sizing.

    `reserved_concurrency` caps both cost and blast radius: at most that many invokes run at once
    (more are throttled: 429 through API Gateway). None leaves the function on the account's
    unreserved pool (Lambda keeps 100 executions unreserved on a standard account; a new account
    whose concurrency quota is 10 can reserve none and must use None).

    `snap_start` publishes a version with Lambda SnapStart (Python 3.12+): the initialised
    process (app built, GDAL/PROJ loaded, one tile rendered: `lambda_handler.snapstart`) is
    snapshotted once per version and restored on each cold start, so a new execution environment
    skips init. Lambda bills the caching of the snapshot (while the version exists) and each
    restore, by memory size and duration.

    `provisioned_concurrency` keeps that many initialised environments of the alias ready at all
    times (no cold start up to that concurrency). It is billed per GB-second whether requests
    come or not: for the tiler's 1.5 GB, one environment costs about 0.0000041667 USD/GB-s x 1.5
    GB x 2,592,000 s = ~16 USD a month on x86_64 in us-east-1 (invokes are then billed at a lower
    duration rate). Lambda refuses it together with SnapStart on one version: turn `snap_start`
    off for a function that gets it.

    Either option publishes a version and an alias (`live`) that API Gateway and the Function
    URL call; with both off they call the function's `$LATEST`.
    """

    memory_size: int = 1536
    timeout_seconds: int = 29  # the HTTP API answers 503 after 30 s anyway
    reserved_concurrency: int | None = None
    environment: dict[str, str] = field(default_factory=dict)
    snap_start: bool = False
    provisioned_concurrency: int | None = None  # off by default: billed when idle

    @property
    def published(self) -> bool:
        """Whether callers go through a published version and alias."""
        return self.snap_start or bool(self.provisioned_concurrency)

    def validate(self, name: str) -> None:
        """Raise ValueError on options Lambda would refuse at deploy time."""
        if self.provisioned_concurrency is not None and self.provisioned_concurrency < 1:
            raise ValueError(
                f"{name}_provisioned_concurrency must be a positive number (or none to turn it off)"
            )
        if self.snap_start and self.provisioned_concurrency:
            raise ValueError(
                f"{name}: Lambda cannot use SnapStart and provisioned concurrency on one version; "
                f"set {name}_snap_start=false to use {name}_provisioned_concurrency"
            )
        if (
            self.reserved_concurrency is not None
            and self.provisioned_concurrency
            and self.provisioned_concurrency > self.reserved_concurrency
        ):
            raise ValueError(
                f"{name}_provisioned_concurrency ({self.provisioned_concurrency}) is over "
                f"{name}_reserved_concurrency ({self.reserved_concurrency})"
            )


@dataclass
class BatchProps:
    """The batch function, its Function URL and the exports bucket."""

    function: FunctionProps = field(
        default_factory=lambda: FunctionProps(
            memory_size=3008, timeout_seconds=900, reserved_concurrency=10, snap_start=True
        )
    )
    url_auth: str = "AWS_IAM"  # AWS_IAM | NONE
    exports_expiry_days: int = 1
    presigned_url_seconds: int = 3600
    max_tile_size: int = 8192


@dataclass
class StoreProps:
    """Where mosaic ids live, and what else the functions may read.

    - `mosaic_store`: `dynamodb` (the table, default) or `s3` (`s3://bucket/{prefix}{id}.json.gz`).
    - `mosaics_bucket`: an existing bucket for S3-stored mosaics; empty with `mosaic_store=s3`:
      the stack creates one. When set, the `?url=s3://bucket/prefix…` form is allowed too.
    - `stac_api_urls`: STAC API search URLs (`https://host/…/search`) that STAC-built mosaics
      (POST /mosaics with `stac_api`) may search: their API root joins the asset allow-list,
      which the app applies to `stac_api` and to the links the API returns.
    - `data_buckets`: buckets holding the COGs (read-only grants, and the asset allow-list).
    - `asset_prefixes`: more asset URL prefixes the tiler may read (e.g. a STAC catalogue's
      public `https://` COGs); the data buckets' `s3://bucket/` are always in.
    """

    mosaic_store: str = "dynamodb"
    mosaics_bucket: str | None = None
    mosaics_prefix: str = "mosaics/"
    stac_api_urls: list[str] = field(default_factory=list)
    data_buckets: list[str] = field(default_factory=list)
    asset_prefixes: list[str] = field(default_factory=list)

    @property
    def uses_s3(self) -> bool:
        """Whether the functions use an S3 mosaics bucket (created or existing)."""
        return self.mosaic_store == "s3" or bool(self.mosaics_bucket)

    def validate(self) -> None:
        """Raise ValueError on an unknown store, a non-https STAC API or a malformed bucket."""
        if self.mosaic_store not in MOSAIC_STORES:
            raise ValueError(f"mosaic_store must be one of {list(MOSAIC_STORES)}")
        for url in self.stac_api_urls:
            if not url.startswith("https://"):
                raise ValueError(f"stac_api_urls: {url!r} is not an https:// URL")
        for name in self.data_buckets + [self.mosaics_bucket or "x"]:
            if not name or "/" in name or ":" in name:
                raise ValueError(f"{name!r} is not a bucket name (no s3://, no key)")


@dataclass
class CdnProps:
    """The CloudFront distribution in front of the HTTP API.

    `document_max_ttl` caps how long the edge keeps TileJSON, WMTS, metadata and the other
    small documents (whatever the origin's `max-age`): a mosaic update reaches them within that
    time, and the tile URLs they hand out carry the mosaic version, so tiles of the new version
    are new cache keys. `tile_max_ttl` caps tiles and static files.
    """

    enabled: bool = True
    domain_name: str | None = None  # custom domain (needs certificate_arn, in us-east-1)
    certificate_arn: str | None = None
    price_class: str = "PriceClass_100"
    document_max_ttl: int = 60
    tile_max_ttl: int = 86_400
    default_ttl: int = 3600  # when the origin sends no Cache-Control

    def validate(self) -> None:
        """Raise ValueError on inconsistent options (called by `MosaicTilerProps`)."""
        if bool(self.domain_name) != bool(self.certificate_arn):
            raise ValueError("cdn_domain_name and cdn_certificate_arn go together")
        if self.price_class not in PRICE_CLASSES:
            raise ValueError(f"cdn_price_class must be one of {list(PRICE_CLASSES)}")


@dataclass
class MonitoringProps:
    """Access logs, alarms, dashboard.

    Alarms notify `alarm_topic_arn` (an existing SNS topic) or a topic the stack creates when
    `alarm_email` is set; with neither they only change state (visible on the dashboard).
    """

    alarm_topic_arn: str | None = None
    alarm_email: str | None = None
    error_rate_percent: float = 5.0  # API 5xx answers, percent of requests over 5 minutes
    duration_fraction: float = 0.9  # alarm when the slowest invoke reaches this share of timeout
    dashboard: bool = True
    api_throttle_rate: int = 200  # requests/second across the stage (cost cap; 429 beyond)
    api_throttle_burst: int = 400


@dataclass
class MosaicTilerProps:
    """Everything `MosaicTiler` (and so the stack) can be told; every field has a default."""

    table: TableProps = field(default_factory=TableProps)
    tiler: FunctionProps = field(
        default_factory=lambda: FunctionProps(reserved_concurrency=50, snap_start=True)
    )
    writer: FunctionProps = field(
        default_factory=lambda: FunctionProps(memory_size=1024, reserved_concurrency=5)
    )
    batch: BatchProps = field(default_factory=BatchProps)
    store: StoreProps = field(default_factory=StoreProps)
    cdn: CdnProps = field(default_factory=CdnProps)
    monitoring: MonitoringProps = field(default_factory=MonitoringProps)
    architecture: str = "x86_64"  # x86_64 | arm64
    log_retention_days: int = 30
    log_level: str = "INFO"
    cors_origins: list[str] = field(default_factory=lambda: ["*"])
    write_cors_origins: list[str] = field(default_factory=list)  # none: no browser writes
    # Writes too large for API Gateway's 30 s run as jobs (202 + status URL): the writer
    # invokes itself asynchronously and may then run Lambda's 900 s. Off: such writes fail.
    writer_async_jobs: bool = True
    bundle: BundleSpec | None = None  # None: the default spec for `architecture`

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {list(ARCHITECTURES)}")
        if self.table.removal_policy not in REMOVAL_POLICIES:
            raise ValueError(f"removal_policy must be one of {list(REMOVAL_POLICIES)}")
        if self.batch.url_auth not in URL_AUTH_TYPES:
            raise ValueError(f"batch url_auth must be one of {list(URL_AUTH_TYPES)}")
        self.cdn.validate()
        for name, function in (
            ("tiler", self.tiler),
            ("writer", self.writer),
            ("batch", self.batch.function),
        ):
            function.validate(name)
        if self.cdn.domain_name and not self.cdn.enabled:
            raise ValueError("cdn_domain_name needs the CDN (cdn_enabled=true)")
        self.store.validate()

    @property
    def data_buckets(self) -> list[str]:
        """The COG buckets (shortcut)."""
        return self.store.data_buckets

    def bundle_spec(self) -> BundleSpec:
        """The asset spec (its architecture follows the functions')."""
        return self.bundle or BundleSpec(architecture=self.architecture)
