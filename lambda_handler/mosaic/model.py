"""MosaicJSON document model (spec 0.0.3, reads 0.0.1 and 0.0.2)."""

import json
import re
from typing import Any

import morecantile
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from lambda_handler.errors import InvalidMosaicDocumentError, InvalidMosaicError

SUPPORTED_SPEC_VERSIONS = ("0.0.1", "0.0.2", "0.0.3")
CURRENT_SPEC_VERSION = "0.0.3"
# Dotted numbers ('1.0.0'), bounded: a 5,000-digit part cannot even be turned into an int.
MAX_VERSION_LENGTH = 64
_VERSION_RE = re.compile(r"\d{1,18}(?:\.\d{1,18}){0,9}")

WEB_MERCATOR_TMS = morecantile.tms.get("WebMercatorQuad")
_UNSET = object()


def format_validation_error(error: ValidationError) -> str:
    """One line per problem, naming the field: pydantic's default text is hard to read in a CLI."""
    problems = []
    for item in error.errors():
        location = ".".join(str(part) for part in item["loc"]) or "document"
        message = item["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
        problems.append(f"{location}: {message}")
    return "; ".join(problems)


class MosaicJSON(BaseModel):
    """A MosaicJSON document: a quadkey index of assets plus its metadata.

    Unknown top-level fields are kept (other tools add their own) and written back unchanged.
    """

    mosaicjson: str
    name: str | None = None
    description: str | None = None
    version: str = "1.0.0"
    attribution: str | None = None
    minzoom: int = Field(0, ge=0, le=30)
    maxzoom: int = Field(30, ge=0, le=30)
    quadkey_zoom: int | None = Field(None, ge=0, le=30)
    bounds: tuple[float, float, float, float] = (-180.0, -90.0, 180.0, 90.0)
    center: tuple[float, float, int] | None = None
    tiles: dict[str, list[str]] = Field(default_factory=dict)
    tilematrixset: morecantile.TileMatrixSet | None = None
    asset_type: str | None = None
    asset_prefix: str | None = None
    data_type: str | None = None
    colormap: dict[int, tuple[int, int, int, int]] | None = None
    layers: dict[str, Any] | None = None

    # Validated on assignment too (`mosaic.minzoom = -1` raises), as cogeo-mosaic's model is.
    model_config = ConfigDict(extra="allow", validate_assignment=True)

    # What the store says about the stored copy this document was read from or written to (a
    # digest of the stored bytes, a write token): changes with every write even when the
    # version does not (a replaced mosaic keeps '1.0.0'). Not part of the document.
    _store_revision: str | None = PrivateAttr(default=None)

    def __setattr__(self, name: str, value: Any) -> None:
        """Validated assignment that leaves the document unchanged when refused (pydantic
        assigns before running the whole-document checks)."""
        previous = self.__dict__.get(name, _UNSET)
        try:
            super().__setattr__(name, value)
        except ValidationError:
            if previous is not _UNSET:
                self.__dict__[name] = previous
            raise

    @field_validator("tiles", mode="before")
    @classmethod
    def _empty_tiles_list(cls, value: Any) -> Any:
        # cogeo-mosaic's dynamic-backend recipe builds an empty document with `tiles=[]`.
        return {} if isinstance(value, list | tuple) and not value else value

    @field_validator("mosaicjson")
    @classmethod
    def _check_spec_version(cls, value: str) -> str:
        if value not in SUPPORTED_SPEC_VERSIONS:
            raise ValueError(
                f"unsupported MosaicJSON spec version {value!r} "
                f"(supported: {', '.join(SUPPORTED_SPEC_VERSIONS)})"
            )
        return value

    @field_validator("version")
    @classmethod
    def _check_version(cls, value: str) -> str:
        if len(value) > MAX_VERSION_LENGTH or not _VERSION_RE.fullmatch(value):
            shown = value if len(value) <= 40 else f"{value[:20]}…({len(value)} characters)"
            raise ValueError(
                f"invalid document version {shown!r}: expected 1 to 10 dot-separated numbers of "
                f"at most 18 digits like '1.0.0', at most {MAX_VERSION_LENGTH} characters"
            )
        return value

    @field_validator("tilematrixset", mode="before")
    @classmethod
    def _check_tms(cls, value: Any) -> Any:
        if value is None:
            return value
        if isinstance(value, str):
            try:
                value = morecantile.tms.get(value)
            except Exception as err:
                raise ValueError(f"unknown TileMatrixSet {value!r}") from err
        tms = (
            value
            if isinstance(value, morecantile.TileMatrixSet)
            else morecantile.TileMatrixSet.model_validate(value)
        )
        if not tms.is_quadtree:
            raise ValueError(f"TileMatrixSet {tms.id!r} is not a quadtree: quadkeys need one")
        return tms

    @model_validator(mode="after")
    def _check_consistency(self) -> "MosaicJSON":
        if self.minzoom > self.maxzoom:
            raise ValueError(f"minzoom ({self.minzoom}) is greater than maxzoom ({self.maxzoom})")
        if self.quadkey_zoom is not None and not (
            self.minzoom <= self.quadkey_zoom <= self.maxzoom
        ):
            raise ValueError(
                f"quadkey_zoom ({self.quadkey_zoom}) must lie between minzoom ({self.minzoom}) "
                f"and maxzoom ({self.maxzoom})"
            )
        west, south, east, north = self.bounds
        if west > east or south > north:
            raise ValueError(
                f"bounds {list(self.bounds)} are not ordered as [west, south, east, north]"
            )
        zoom = self.index_zoom
        bad = [qk for qk in self.tiles if len(qk) != zoom or qk.strip("0123")]
        if bad:
            shown = ", ".join(repr(qk) for qk in bad[:5])
            raise ValueError(
                f"{len(bad)} invalid quadkey(s) ({shown}): quadkeys are strings of the digits "
                f"0-3 of length {zoom} (the quadkey zoom)"
            )
        if self.center is None:
            self.center = ((west + east) / 2, (south + north) / 2, self.minzoom)
        return self

    # ------------------------------------------------------------------ helpers
    @property
    def index_zoom(self) -> int:
        """The zoom of the quadkeys (quadkey_zoom, else minzoom as the spec says)."""
        return self.quadkey_zoom if self.quadkey_zoom is not None else self.minzoom

    @property
    def tms(self) -> morecantile.TileMatrixSet:
        """The TileMatrixSet of the index (WebMercatorQuad for documents that name none)."""
        return self.tilematrixset or WEB_MERCATOR_TMS

    def bump_version(self) -> None:
        """Increase the last number of the document version (1.0.0 -> 1.0.1)."""
        parts = [int(p) for p in self.version.split(".")]
        parts[-1] += 1
        version = ".".join(str(p) for p in parts)
        if not _VERSION_RE.fullmatch(version) or len(version) > MAX_VERSION_LENGTH:
            raise InvalidMosaicError(
                f"version {self.version!r} cannot be increased: its last number would exceed 18 "
                "digits (replace the mosaic with a smaller version)"
            )
        self.version = version

    @property
    def store_revision(self) -> str | None:
        """The stored copy's revision token (None when not read from or written to a store)."""
        return self._store_revision

    def with_store_revision(self, revision: str | None) -> "MosaicJSON":
        """Set the stored copy's revision token; returns the document itself."""
        self._store_revision = revision
        return self

    def metadata(self) -> dict[str, Any]:
        """Every top-level field except `tiles`, JSON-ready, without nulls."""
        return self.model_dump(exclude={"tiles"}, exclude_none=True, mode="json")

    def to_json(self, **kwargs: Any) -> str:
        """Serialize to JSON without null fields."""
        return self.model_dump_json(exclude_none=True, **kwargs)

    @classmethod
    def parse(cls, data: dict[str, Any] | str | bytes, source: str = "document") -> "MosaicJSON":
        """Validate a document, raising InvalidMosaicError with a message naming each problem."""
        if isinstance(data, bytes | str):
            try:
                data = json.loads(data)
            except (json.JSONDecodeError, UnicodeDecodeError) as err:
                raise InvalidMosaicError(f"{source} is not valid JSON: {err}") from err
        if not isinstance(data, dict):
            raise InvalidMosaicError(f"{source} is not a JSON object")
        if "mosaicjson" not in data:
            raise InvalidMosaicError(f"{source} is not a MosaicJSON document (no 'mosaicjson')")
        try:
            return cls.model_validate(data)
        except ValidationError as err:
            # Also a pydantic ValidationError: code written for cogeo-mosaic catches that.
            raise InvalidMosaicDocumentError.wrap(
                f"invalid MosaicJSON in {source}: {format_validation_error(err)}", err
            ) from err

    # Builder entry points live in builder.py; exposed here as users of cogeo-mosaic expect.
    @classmethod
    def from_features(
        cls, features: Any, minzoom: int, maxzoom: int, **kwargs: Any
    ) -> "MosaicJSON":
        """Build a mosaic from GeoJSON features (see `lambda_handler.mosaic.builder`)."""
        from lambda_handler.mosaic.builder import from_features

        return from_features(features, minzoom, maxzoom, **kwargs)

    @classmethod
    def from_urls(cls, urls: Any, **kwargs: Any) -> "MosaicJSON":
        """Build a mosaic from dataset URLs (see `lambda_handler.mosaic.builder`)."""
        from lambda_handler.mosaic.builder import from_urls

        return from_urls(urls, **kwargs)
