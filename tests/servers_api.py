"""pytest plugin: the API's test store and a real uvicorn server running the app.

The store is an SQLite file holding mosaics of the generated scenes (and, when the shared
fixtures folder exists, of its `mosaic_value_*.tif`); the server runs in its own process on a
free port of 127.0.0.1 with the same settings (MOSAIC_API_* environment variables).
"""

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from lambda_handler.backends import MosaicBackend
from lambda_handler.mosaic.builder import dataset_footprint, from_features, from_urls
from lambda_handler.settings import ApiSettings
from tests.processes import LOOPBACK, ServerProcess, free_port, serving

API_KEY = "test-api-key"
SHARED_FIXTURES = Path(__file__).resolve().parent.parent.parent / "shared" / "fixtures"
VALUE_FILES = ("mosaic_value_1.tif", "mosaic_value_2.tif")


@dataclass
class ApiStore:
    """Where the test mosaics live and the settings serving them."""

    directory: Path
    db: Path
    settings: ApiSettings
    scene_paths: list[str]

    def uri(self, mosaic_id: str) -> str:
        """Backend URI of a mosaic id."""
        return self.settings.mosaic_uri_template.replace("{mosaic_id}", mosaic_id)

    def env(self) -> dict[str, str]:
        """The settings as MOSAIC_API_* environment variables."""
        import json

        return {
            "MOSAIC_API_MOSAIC_URI_TEMPLATE": self.settings.mosaic_uri_template,
            "MOSAIC_API_API_KEY": self.settings.api_key or "",
            "MOSAIC_API_ALLOWED_URL_PREFIXES": json.dumps(self.settings.allowed_url_prefixes),
            "MOSAIC_API_CACHE_CONTROL": self.settings.cache_control or "",
            "MOSAIC_API_CORS_ORIGINS": json.dumps(self.settings.cors_origins),
            "MOSAIC_API_WRITE_CORS_ORIGINS": json.dumps(self.settings.write_cors_origins),
        }


def _footprint(path: str) -> dict:
    return dataset_footprint(path)["geometry"]


def _write(uri: str, urls: list[str], **options) -> None:
    backend = MosaicBackend(uri, mosaic_def=from_urls(urls, **options))
    try:
        backend.write(overwrite=True)
    finally:
        backend.close()


@pytest.fixture(scope="session")
def api_store(tmp_path_factory, sample_cogs, sample_cogs_uint16) -> ApiStore:
    """An SQLite store with mosaics `scenes` (uint8), `scenes16` (uint16), `scene-a` (one
    scene), `gap` (scenes a and d, z8-12), `broken` (an asset that does not exist) and, when
    the shared fixtures exist, `values` / `value1` / `value2`."""
    directory = tmp_path_factory.mktemp("api-store")
    db = directory / "mosaics.db"
    settings = ApiSettings(
        mosaic_uri_template=f"sqlite:///{db}:{{mosaic_id}}",
        api_key=API_KEY,
        allowed_url_prefixes=[f"sqlite:///{db}:", f"file://{directory}/"],
        cache_control="public, max-age=60",
        cors_origins=["http://example.test"],
        write_cors_origins=["http://writer.test"],
    )
    store = ApiStore(directory, db, settings, list(sample_cogs))
    _write(store.uri("scenes"), sample_cogs, name="scenes")
    _write(store.uri("scenes16"), sample_cogs_uint16, name="scenes16")
    _write(store.uri("scene-a"), sample_cogs[:1], name="scene-a", minzoom=8, maxzoom=9)
    # Scenes a and d leave a gap between them: tiles there have candidates but no data.
    _write(store.uri("gap"), [sample_cogs[0], sample_cogs[3]], minzoom=8, maxzoom=12)
    broken = from_features(
        [
            {
                "type": "Feature",
                "geometry": _footprint(sample_cogs[0]),
                "properties": {"path": str(directory / "missing.tif")},
            }
        ],
        8,
        9,
    )
    MosaicBackend(store.uri("broken"), mosaic_def=broken).write(overwrite=True)
    if all((SHARED_FIXTURES / name).is_file() for name in VALUE_FILES):
        values = [str(SHARED_FIXTURES / name) for name in VALUE_FILES]
        _write(store.uri("values"), values, minzoom=6, maxzoom=9)
        _write(store.uri("value1"), values[:1], minzoom=6, maxzoom=9)
        _write(store.uri("value2"), values[1:], minzoom=6, maxzoom=9)
    # A file-backed copy for the ?url= form.
    document = MosaicBackend(store.uri("scenes")).to_document()
    (directory / "scenes.json").write_text(document.to_json())
    return store


@contextmanager
def uvicorn_server(
    factory: str, env: dict[str, str], log: Path, cwd: Path | None = None
) -> Iterator[str]:
    """Run `uvicorn factory --factory` in its own process on 127.0.0.1 (free port) until the
    block ends; yields its base URL once `/healthz` answers."""
    port = free_port()
    command = [
        sys.executable, "-m", "uvicorn", factory, "--factory",
        "--host", LOOPBACK, "--port", str(port), "--log-level", "warning",
    ]  # fmt: skip
    base = f"http://{LOOPBACK}:{port}"
    server = ServerProcess("uvicorn", command, log, cwd=cwd, env=env)
    with serving(server, base + "/healthz", status=200):
        yield base


@pytest.fixture(scope="session")
def api_server(api_store, tmp_path_factory) -> Iterator[str]:
    """Base URL of a uvicorn server (own process, 127.0.0.1, free port) running the app."""
    log = tmp_path_factory.mktemp("api-server") / "uvicorn.log"
    with uvicorn_server(
        "lambda_handler.app:create_app", {**os.environ, **api_store.env()}, log
    ) as base:
        yield base


@pytest.fixture(scope="module", params=["asgi", "uvicorn"])
def client(request, api_store):
    """An HTTP client of the app: in process (ASGI) or over a socket (uvicorn)."""
    if request.param == "asgi":
        from fastapi.testclient import TestClient

        from lambda_handler.app import create_app

        with TestClient(create_app(api_store.settings)) as test_client:
            yield test_client
    else:
        with httpx.Client(base_url=request.getfixturevalue("api_server"), timeout=60) as http:
            yield http
