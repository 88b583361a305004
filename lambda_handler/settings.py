"""Settings: every environment variable the package reads is declared here.

Every class is `defer_build=True`: pydantic builds a class's validator when it is first
instantiated, so a Lambda cold start pays only for the two classes it uses (Api, Lambda).
"""

import os
from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def env_name(settings_class: type[BaseSettings], field: str) -> str:
    """The environment variable of `field` of `settings_class` (e.g. `MOSAIC_API_PUBLIC_URL`).

    Code that configures the package through the environment (the CDK stack) derives the names
    here, so renaming a field cannot leave a variable behind that nothing reads.
    """
    if field not in settings_class.model_fields:
        raise KeyError(f"{settings_class.__name__} has no field {field!r}")
    return (settings_class.model_config.get("env_prefix", "") + field).upper()


def _io_threads() -> int:
    # Deployed, each asset open waits on S3 round trips (20-50 ms each, several per open):
    # 4 readers per core overlap that wait; decoding still shares the cores
    # (benchmarks/bench_tiles_deployed.py, issue 13).
    return max(4, min(4 * (os.cpu_count() or 1), 32))


class CacheSettings(BaseSettings):
    """In-process cache of mosaic metadata and quadkey lookups."""

    ttl: float = Field(300.0, ge=0, description="Seconds an entry lives.")
    maxsize: int = Field(1024, ge=0, description="Entries kept at most, per cache.")
    disable: bool = False

    model_config = SettingsConfigDict(env_prefix="MOSAIC_CACHE_", defer_build=True)

    @property
    def enabled(self) -> bool:
        """Whether anything is cached."""
        return not self.disable and self.ttl > 0 and self.maxsize > 0


class BuildSettings(BaseSettings):
    """Defaults of the MosaicJSON builder."""

    footprint_threads: int = Field(16, ge=1, description="Threads reading dataset footprints.")

    model_config = SettingsConfigDict(env_prefix="MOSAIC_BUILD_", defer_build=True)


class ReadSettings(BaseSettings):
    """How mosaic documents are read over HTTP(S) (the tile readers' threads are ApiSettings')."""

    http_timeout: float = Field(10.0, gt=0, description="Timeout of HTTP(S) mosaic reads.")

    model_config = SettingsConfigDict(env_prefix="MOSAIC_READ_", defer_build=True)


class WriteSettings(BaseSettings):
    """How concurrent writers of one mosaic are arbitrated (every read-write store)."""

    update_attempts: int = Field(
        20,
        ge=1,
        description="Attempts of an update whose conditional write lost a race (re-read, "
        "re-merge, retry) before it is refused with a conflict error.",
    )
    lock_timeout: float = Field(
        60.0,
        gt=0,
        description="Seconds a writer waits for another writer's lock (SQLite busy timeout, "
        "file lock) before it is refused with a conflict error.",
    )

    model_config = SettingsConfigDict(env_prefix="MOSAIC_WRITE_", defer_build=True)


@lru_cache
def write_settings() -> WriteSettings:
    """Cached WriteSettings."""
    return WriteSettings()


@lru_cache
def cache_settings() -> CacheSettings:
    """Cached CacheSettings."""
    return CacheSettings()


@lru_cache
def build_settings() -> BuildSettings:
    """Cached BuildSettings."""
    return BuildSettings()


@lru_cache
def read_settings() -> ReadSettings:
    """Cached ReadSettings."""
    return ReadSettings()


class CloudStorageSettings(BaseSettings):
    """Google Cloud Storage and Azure Blob mosaic stores (`gs://`, `az://`).

    Endpoints and credentials come from each service's standard variables
    (`STORAGE_EMULATOR_HOST`, application default credentials, `AZURE_STORAGE_CONNECTION_STRING`,
    `DefaultAzureCredential`'s variables); these are the package's own knobs.
    """

    gcs_anonymous: bool = Field(
        False, description="Read gs:// mosaics without credentials (public buckets)."
    )
    gcs_project: str | None = Field(None, description="Project of the GCS client.")
    timeout: float = Field(30.0, gt=0, description="Seconds a GCS/Azure request may take.")

    model_config = SettingsConfigDict(env_prefix="MOSAIC_CLOUD_", defer_build=True)


@lru_cache
def cloud_storage_settings() -> CloudStorageSettings:
    """Cached CloudStorageSettings."""
    return CloudStorageSettings()


class AwsSettings(BaseSettings):
    """AWS clients (DynamoDB and S3 backends): retries, timeouts, write parallelism.

    Endpoint, region and credentials are not here: they come from the standard AWS environment
    (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_DYNAMODB`, `AWS_REGION`, `AWS_PROFILE`, ...).
    """

    retry_mode: str = Field(
        "standard",
        pattern="^(standard|adaptive)$",
        description="botocore retry mode (throttling and 5xx answers are retried).",
    )
    max_attempts: int = Field(5, ge=1, description="botocore attempts per request, first included.")
    connect_timeout: float = Field(5.0, gt=0, description="Seconds to open a connection.")
    read_timeout: float = Field(30.0, gt=0, description="Seconds to wait for an answer.")
    write_threads: int = Field(8, ge=1, description="Parallel DynamoDB batch writes.")
    unprocessed_attempts: int = Field(
        8, ge=1, description="Attempts of a DynamoDB batch whose items come back unprocessed."
    )
    write_lock_seconds: float = Field(
        30.0,
        gt=0,
        description="Lease of a DynamoDB mosaic writer's lock, renewed by a heartbeat while "
        "writing: a writer that died blocks others at most this long.",
    )
    consistent_reads: bool = Field(
        True,
        description="Strongly consistent DynamoDB tile reads (an eventually consistent read may "
        "return an item older than the metadata it is resolved with).",
    )

    model_config = SettingsConfigDict(env_prefix="MOSAIC_AWS_", defer_build=True)


@lru_cache
def aws_settings() -> AwsSettings:
    """Cached AwsSettings."""
    return AwsSettings()


class ApiSettings(BaseSettings):
    """The HTTP API (local server and Lambda): where mosaics live, who may write, headers."""

    title: str = "lambda-mosaic-tiler"
    mosaic_uri_template: str = Field(
        "sqlite:///./mosaics.db:{mosaic_id}",
        description="Backend URI of a mosaic id; must contain '{mosaic_id}'.",
    )
    allowed_url_prefixes: list[str] = Field(
        default_factory=list,
        description="Backend URI prefixes accepted by the raw `?url=` form (empty: disabled).",
    )
    api_key: str | None = Field(None, description="Key required by write endpoints.")
    allow_anonymous_writes: bool = Field(
        False, description="Open writes without a key (local use only; ignored when a key is set)."
    )
    cors_origins: list[str] = Field(default_factory=lambda: ["*"])
    cache_control: str | None = Field(
        "public, max-age=3600", description="Cache-Control of tiles and mosaic metadata."
    )
    threads: int = Field(
        default_factory=_io_threads,
        ge=1,
        description="Asset readers per tile (sized for S3 round trips, not only for cores).",
    )
    max_tile_size: int = Field(2048, ge=64, description="Largest tile edge, in pixels.")
    default_page_size: int = Field(100, ge=1)
    max_page_size: int = Field(1000, ge=1)
    gzip_minimum_size: int = Field(500, ge=0, description="Smallest text response gzipped.")
    root_path: str = ""
    # ---- security and limits (README "Security and limits")
    allowed_asset_prefixes: list[str] = Field(
        default_factory=list,
        description="Asset URL prefixes a mosaic may name, compared as parsed URLs (scheme, "
        "host, port, path segments), checked at write and before every read; STAC API URLs "
        "and their links too. Empty: any asset except the always-refused forms (local use).",
    )
    write_cors_origins: list[str] = Field(
        default_factory=list, description="Origins allowed to call the write routes (CORS)."
    )
    public_url: str | None = Field(
        None,
        description="Base URL of public links (TileJSON, WMTS, map page): the Host header "
        "is then ignored.",
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Host headers trusted for public links when public_url is not set; "
        "others are replaced by the server's own address.",
    )
    request_timeout: float = Field(
        25.0, gt=0, description="Seconds before a request answers 504 (API Gateway: 30 s)."
    )
    max_body_bytes: int = Field(
        5 * 1024 * 1024, ge=1024, description="Largest request body (413 beyond)."
    )
    max_quadkey_zoom: int = Field(16, ge=0, le=30, description="Highest quadkey_zoom of a write.")
    max_zoom_span: int = Field(
        16, ge=0, le=30, description="Largest maxzoom - minzoom (and quadkey_zoom - minzoom)."
    )
    max_quadkeys: int = Field(
        500_000, ge=1, description="Most quadkeys a written mosaic index may hold."
    )
    max_items: int = Field(
        10_000, ge=1, description="Most datasets (URLs, features, STAC items) per write."
    )
    max_expression_length: int = Field(
        1024, ge=16, description="Longest band-math expression (characters)."
    )
    asset_http_timeout: int = Field(10, ge=1, description="GDAL_HTTP_TIMEOUT of asset reads.")
    asset_http_connect_timeout: int = Field(
        5, ge=1, description="GDAL_HTTP_CONNECTTIMEOUT of asset reads."
    )
    asset_http_max_retry: int = Field(1, ge=0, description="GDAL_HTTP_MAX_RETRY of asset reads.")
    asset_http_retry_delay: float = Field(
        0.5, ge=0, description="GDAL_HTTP_RETRY_DELAY of asset reads."
    )

    # ---- asynchronous writes (lambda_handler/jobs.py)
    sync_write_max_quadkeys: int | None = Field(
        10_000,
        ge=0,
        description="Writes touching more quadkeys run as jobs (202 + status URL) instead of "
        "within the request; None: always within the request.",
    )
    job_function: str | None = Field(
        None,
        description="Lambda function (name or ARN) invoked asynchronously to run jobs "
        "(default: the function itself).",
    )
    job_ttl_seconds: int = Field(
        7 * 86400, ge=60, description="How long job records are kept (DynamoDB TTL attribute)."
    )

    model_config = SettingsConfigDict(env_prefix="MOSAIC_API_", defer_build=True)

    def asset_gdal_options(self) -> dict[str, str]:
        """GDAL configuration of asset reads: bounded HTTP waits, no side-car probing."""
        return {
            "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
            "GDAL_HTTP_TIMEOUT": str(self.asset_http_timeout),
            "GDAL_HTTP_CONNECTTIMEOUT": str(self.asset_http_connect_timeout),
            "GDAL_HTTP_MAX_RETRY": str(self.asset_http_max_retry),
            "GDAL_HTTP_RETRY_DELAY": str(self.asset_http_retry_delay),
        }

    def model_post_init(self, context: object) -> None:
        """Reject a template without the id placeholder (every id would share one mosaic)."""
        if "{mosaic_id}" not in self.mosaic_uri_template:
            raise ValueError(
                f"MOSAIC_API_MOSAIC_URI_TEMPLATE {self.mosaic_uri_template!r} must contain "
                "'{mosaic_id}'"
            )


class StacSettings(BaseSettings):
    """STAC API searches (the static and dynamic STAC backends)."""

    timeout: float = Field(30.0, gt=0, description="Seconds per STAC API request.")
    default_limit: int = Field(
        500, ge=1, description="Page size when neither the query nor the options set one."
    )
    max_pages: int = Field(10_000, ge=1, description="Pages followed at most before failing.")
    item_cache_size: int = Field(
        5000, ge=0, description="Searched items kept for the STAC reader (saves one GET per item)."
    )

    model_config = SettingsConfigDict(env_prefix="MOSAIC_STAC_", defer_build=True)


@lru_cache
def stac_settings() -> StacSettings:
    """Cached StacSettings."""
    return StacSettings()


class LambdaSettings(BaseSettings):
    """The Lambda functions: GDAL defaults, the batch function's limits and its exports bucket.

    The GDAL values are defaults: a GDAL variable already in the environment wins. They are
    applied when running in Lambda (`AWS_LAMBDA_FUNCTION_NAME` set), before rasterio is imported.
    """

    gdal_disable_readdir_on_open: str = Field(
        "EMPTY_DIR", description="No directory listing when opening a COG (no sidecar probes)."
    )
    gdal_http_merge_consecutive_ranges: str = Field("YES", description="One request per run.")
    gdal_http_multiplex: str = Field("YES", description="HTTP/2 multiplexing of range requests.")
    gdal_http_version: str = Field("2", description="HTTP version GDAL asks for.")
    gdal_cachemax: str = Field("200", description="GDAL block cache (MB, or a percentage).")
    gdal_ingested_bytes_at_open: int = Field(32768, ge=0, description="Header bytes per open.")
    gdal_http_max_retry: int = Field(3, ge=0, description="Retries of a failed HTTP request.")
    gdal_http_retry_delay: float = Field(0.5, ge=0, description="Seconds between retries.")
    gdal_http_timeout: int = Field(20, ge=1, description="Seconds per HTTP request (API).")
    vsi_cache: str = Field("TRUE", description="Per-file cache of the /vsicurl/ readers.")
    vsi_cache_size: int = Field(50_000_000, ge=0, description="Bytes of each /vsi cache.")
    cpl_vsil_curl_cache_size: int = Field(200_000_000, ge=0, description="Bytes of curl cache.")
    cpl_vsil_curl_allowed_extensions: str = Field(
        ".tif,.TIF,.tiff,.TIFF",
        description="Extensions GDAL's HTTP readers accept (saves probing); '' allows any.",
    )
    proj_data: str | None = Field(
        None, description="PROJ database directory (default: the one shipped in the asset)."
    )
    warm_up: str = Field(
        "auto",
        pattern="^(auto|tile|imports|off)$",
        description="Init's warm-up: `tile` builds the tile routes, imports the tile path, "
        "builds the store's boto3 client and renders one tile from a COG shipped in the asset "
        "(no network); `imports` all but the tile; `off` only the app; `auto`: `tile` under "
        "SnapStart or provisioned concurrency (paid once, ahead of requests), else `imports`.",
    )
    log_level: str = Field(
        "INFO",
        pattern="^(?i:debug|info|warning|error|critical)$",
        description="Level of the functions' JSON logs (one line per request at INFO).",
    )
    # The batch function (Function URL: no 30 s cap, 900 s Lambda timeout).
    batch_max_tile_size: int = Field(8192, ge=64, description="Largest batch tile edge (px).")
    batch_gdal_http_timeout: int = Field(120, ge=1, description="GDAL HTTP timeout (batch).")
    batch_read_http_timeout: float = Field(120.0, gt=0, description="Mosaic HTTP reads (batch).")
    batch_request_timeout: float = Field(
        840.0, gt=0, description="Deadline of a batch request (504 past it; Lambda: 900 s)."
    )
    response_limit_bytes: int = Field(
        6_291_456, ge=1024, description="Lambda's response payload limit (6 MB)."
    )
    exports_bucket: str | None = Field(
        None, description="Bucket receiving batch responses over the response limit."
    )
    exports_prefix: str = Field("exports/", description="Key prefix of exported responses.")
    presigned_url_seconds: int = Field(
        3600, ge=1, le=604_800, description="Lifetime of the exported response's presigned URL."
    )

    model_config = SettingsConfigDict(env_prefix="MOSAIC_LAMBDA_", defer_build=True)

    def gdal_environment(self, batch: bool = False) -> dict[str, str]:
        """GDAL configuration variables (the batch function gets the longer HTTP timeout)."""
        env = {
            "GDAL_DISABLE_READDIR_ON_OPEN": self.gdal_disable_readdir_on_open,
            "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": self.gdal_http_merge_consecutive_ranges,
            "GDAL_HTTP_MULTIPLEX": self.gdal_http_multiplex,
            "GDAL_HTTP_VERSION": self.gdal_http_version,
            "GDAL_CACHEMAX": self.gdal_cachemax,
            "GDAL_INGESTED_BYTES_AT_OPEN": str(self.gdal_ingested_bytes_at_open),
            "GDAL_HTTP_MAX_RETRY": str(self.gdal_http_max_retry),
            "GDAL_HTTP_RETRY_DELAY": str(self.gdal_http_retry_delay),
            "GDAL_HTTP_TIMEOUT": str(
                self.batch_gdal_http_timeout if batch else self.gdal_http_timeout
            ),
            "VSI_CACHE": self.vsi_cache,
            "VSI_CACHE_SIZE": str(self.vsi_cache_size),
            "CPL_VSIL_CURL_CACHE_SIZE": str(self.cpl_vsil_curl_cache_size),
        }
        if self.cpl_vsil_curl_allowed_extensions:
            env["CPL_VSIL_CURL_ALLOWED_EXTENSIONS"] = self.cpl_vsil_curl_allowed_extensions
        if self.proj_data:
            env["PROJ_DATA"] = self.proj_data
        return env
