"""What an export is given, as typed objects: where tiles come from (`ExportSource`), what each
tile is (`ExportTiles`), where the COG goes (`ExportOutput`) and how the run behaves
(`ExportRun`). `export_mosaic` takes them; the CLI's `export` command builds them."""

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lambda_handler.export.plan import ExportError
from lambda_handler.export.progress import ProgressSink
from lambda_handler.tile_pipeline import TileOptions

# Signs a request: (method, url, headers) -> headers (SigV4 for a batch Function URL).
Signer = Callable[[str, str, dict[str, str]], dict[str, str]]

DEFAULT_ENDPOINT_CONCURRENCY = 50  # well under a Lambda account's default 1,000


@dataclass(frozen=True)
class ExportSource:
    """Where tiles come from: a backend `uri` (rendered in local worker processes) or a tiler
    `endpoint` serving `mosaic_id` (a deployed batch Function URL or any tiler), whose
    requests are signed by `sign` and time out after `request_timeout` seconds."""

    uri: str | None = None
    endpoint: str | None = None
    mosaic_id: str | None = None
    sign: Signer | None = None
    request_timeout: float = 60.0

    def __post_init__(self) -> None:
        if (self.uri is None) == (self.endpoint is None):
            raise ExportError("give either a backend URI (local rendering) or an endpoint")
        if self.endpoint is not None and not self.mosaic_id:
            raise ExportError("an endpoint export needs the mosaic id")

    @property
    def is_local(self) -> bool:
        """Whether tiles render in this machine's worker processes."""
        return self.uri is not None

    def identity(self) -> dict[str, str]:
        """What the tiles depend on (part of the tile store's fingerprint)."""
        if self.uri is not None:
            return {"uri": self.uri}
        return {"endpoint": str(self.endpoint), "mosaic_id": str(self.mosaic_id)}


@dataclass(frozen=True)
class ExportTiles:
    """What each tile is: the tile route's options, and the tile scale (1 = 256 px tiles,
    2 = 512 px…: fewer, larger requests for the same output)."""

    options: TileOptions = field(default_factory=TileOptions)
    scale: int = 1


@dataclass(frozen=True)
class ExportOutput:
    """The COG written: its path, rio-cogeo profile, and whether the rendered tiles
    (`{path}.tiles/`) are kept after assembly."""

    path: Path
    cog_profile: str = "deflate"
    keep_tiles: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))


@dataclass(frozen=True)
class ExportRun:
    """How the run behaves.

    Attributes:
        concurrency: worker processes (local; default the CPU count) or requests in flight
            (endpoint; default 50).
        max_attempts/backoff_base: attempts per tile on transient errors, and the first
            backoff in seconds (doubled per attempt, full jitter).
        seed: shuffle seed of the tile order (tests; None is random).
        allow_partial: assemble even if some tiles failed (left as nodata).
        progress: progress callbacks (None: silent).
        on_request: called before every endpoint request (tests, metering).
    """

    concurrency: int | None = None
    max_attempts: int = 6
    backoff_base: float = 0.5
    seed: int | None = None
    allow_partial: bool = False
    progress: ProgressSink | None = None
    on_request: Callable[[], None] | None = None
