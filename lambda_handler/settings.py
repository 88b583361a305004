"""Settings: every environment variable the package reads is declared here."""

import os
from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_threads() -> int:
    # Decoding is CPU-bound: more threads than cores slows tiles down (DESIGN.md § 5).
    return max(1, min(os.cpu_count() or 1, 8))


class CacheSettings(BaseSettings):
    """In-process cache of mosaic metadata and quadkey lookups."""

    ttl: float = Field(300.0, ge=0, description="Seconds an entry lives.")
    maxsize: int = Field(1024, ge=0, description="Entries kept at most, per cache.")
    disable: bool = False

    model_config = SettingsConfigDict(env_prefix="MOSAIC_CACHE_")

    @property
    def enabled(self) -> bool:
        """Whether anything is cached."""
        return not self.disable and self.ttl > 0 and self.maxsize > 0


class BuildSettings(BaseSettings):
    """Defaults of the MosaicJSON builder."""

    footprint_threads: int = Field(16, ge=1, description="Threads reading dataset footprints.")

    model_config = SettingsConfigDict(env_prefix="MOSAIC_BUILD_")


class ReadSettings(BaseSettings):
    """How tiles and points are read."""

    threads: int = Field(default_factory=_default_threads, ge=0)
    http_timeout: float = Field(10.0, gt=0, description="Timeout of HTTP(S) mosaic reads.")

    model_config = SettingsConfigDict(env_prefix="MOSAIC_READ_")


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
